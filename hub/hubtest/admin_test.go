package hubtest

import (
	"strings"
	"testing"
)

func TestListModels(t *testing.T) {
	e := newEnv(t, testOptions()) // PageSize 2: listings paginate
	for _, r := range []struct {
		tok, name string
		private   bool
		tags      string
	}{
		{aliceTok, "llama-lora", false, "tags: [lora, peft]\nlibrary_name: peft\n"},
		{aliceTok, "llama-merged", false, "tags: [merged]\nlibrary_name: transformers\npipeline_tag: text-generation\n"},
		{aliceTok, "secret", true, "tags: [lora]\n"},
		{bobTok, "other-llama", false, "tags: [lora]\n"},
	} {
		e.createRepo(r.tok, "", r.name, r.private)
		ns := map[string]string{aliceTok: "alice", bobTok: "bob"}[r.tok]
		if res := e.commitLines(r.tok, ns+"/"+r.name, "main", "", header("card", ""), fileLine("README.md", []byte("---\n"+r.tags+"---\n"))); res.StatusCode != 200 {
			t.Fatalf("commit: %d %s", res.StatusCode, res.body)
		}
	}
	// list follows the Link header like huggingface_hub's paginate.
	list := func(tok, query string) []string {
		t.Helper()
		var ids []string
		u := "/api/models?" + query
		for pages := 0; u != ""; pages++ {
			if pages > 10 {
				t.Fatal("endless pagination")
			}
			r := e.api("GET", u, tok, nil, 200)
			var items []struct {
				ID string `json:"id"`
			}
			r.json(t, &items)
			for _, it := range items {
				ids = append(ids, it.ID)
			}
			u = ""
			if l := r.Header.Get("Link"); l != "" {
				u = strings.TrimSuffix(strings.TrimPrefix(strings.Split(l, ";")[0], "<"), ">")
			}
		}
		return ids
	}
	for _, tc := range []struct {
		tok, query, want string
	}{
		{"", "", "alice/llama-lora alice/llama-merged bob/other-llama"},
		{aliceTok, "", "alice/llama-lora alice/llama-merged alice/secret bob/other-llama"},
		{bobTok, "", "alice/llama-lora alice/llama-merged bob/other-llama"},
		{"", "author=alice", "alice/llama-lora alice/llama-merged"},
		{"", "search=LLAMA-", "alice/llama-lora alice/llama-merged"},
		{"", "filter=lora", "alice/llama-lora bob/other-llama"},
		{"", "filter=lora&filter=peft", "alice/llama-lora"},
		{"", "filter=transformers", "alice/llama-merged"},
		{"", "pipeline_tag=text-generation", "alice/llama-merged"},
		{"", "sort=id&direction=-1", "bob/other-llama alice/llama-merged alice/llama-lora"},
		{"", "limit=1&search=merged", "alice/llama-merged"},
	} {
		if got := strings.Join(list(tc.tok, tc.query), " "); got != tc.want {
			t.Errorf("list_models(%s) as %q = %q, want %q", tc.query, tc.tok, got, tc.want)
		}
	}
	e.api("GET", "/api/models?limit=0", "", nil, 400)
	e.api("GET", "/api/models?sort=nope", "", nil, 400)
}

func TestRepoSettingsMoveAndSquash(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "r", false)
	e.api("PUT", "/api/models/alice/r/settings", bobTok, map[string]any{"private": true}, 403)
	e.api("PUT", "/api/models/alice/r/settings", aliceTok, map[string]any{"gated": "bogus"}, 400)
	e.api("PUT", "/api/models/alice/r/settings", aliceTok, map[string]any{"private": true, "gated": "manual"}, 200)
	var info struct {
		Private bool `json:"private"`
		Gated   any  `json:"gated"`
	}
	e.api("GET", "/api/models/alice/r", aliceTok, nil, 200).json(t, &info)
	if !info.Private || info.Gated != "manual" {
		t.Fatalf("after settings: %+v", info)
	}
	e.api("GET", "/api/models/alice/r", bobTok, nil, 404)
	// Gated but public: everyone sees the repo, only owners get its files.
	e.api("PUT", "/api/models/alice/r/settings", aliceTok, map[string]any{"private": false}, 200)
	e.api("GET", "/api/models/alice/r", bobTok, nil, 200)
	for _, tc := range []struct {
		tok  string
		want int
	}{{"", 401}, {bobTok, 403}, {aliceTok, 200}} {
		r := e.do("GET", "/alice/r/resolve/main/.gitattributes", tc.tok, nil)
		if r.StatusCode != tc.want || (tc.want != 200 && r.Header.Get("X-Error-Code") != "GatedRepo") {
			t.Errorf("resolve of a gated repo as %q: %d %s; want %d GatedRepo", tc.tok, r.StatusCode, r.Header.Get("X-Error-Code"), tc.want)
		}
	}
	if r := e.do("POST", "/alice/r.git/info/lfs/objects/batch", bobTok, strings.NewReader(`{"operation":"download","objects":[]}`), "Content-Type", lfsMediaType); r.StatusCode != 403 {
		t.Errorf("download batch on a gated repo: %d", r.StatusCode)
	}
	e.api("PUT", "/api/models/alice/r/settings", aliceTok, map[string]any{"private": false, "gated": false}, 200)
	e.api("GET", "/api/models/alice/r", bobTok, nil, 200).json(t, &info)
	if info.Private || info.Gated != false {
		t.Fatalf("after settings back: %+v", info)
	}

	// Three commits, an LFS file; then move and squash.
	data := randomBytes(21, 100<<10)
	oid := e.upload(aliceTok, "alice/r", data)
	for i, l := range []any{fileLine("a.txt", []byte("a")), fileLine("b.txt", []byte("b")), lfsLine("w.bin", oid, int64(len(data)))} {
		if r := e.commitLines(aliceTok, "alice/r", "main", "", header("c"+string(rune('1'+i)), ""), l); r.StatusCode != 200 {
			t.Fatalf("commit %d: %d %s", i, r.StatusCode, r.body)
		}
	}
	e.api("POST", "/api/repos/move", bobTok, map[string]any{"fromRepo": "alice/r", "toRepo": "bob/r", "type": "model"}, 403)
	e.createRepo(aliceTok, "", "taken", false)
	e.api("POST", "/api/repos/move", aliceTok, map[string]any{"fromRepo": "alice/r", "toRepo": "alice/taken", "type": "model"}, 409)
	e.api("POST", "/api/repos/move", aliceTok, map[string]any{"fromRepo": "alice/r", "toRepo": "alice/moved", "type": "model"}, 200)
	e.api("GET", "/api/models/alice/r", aliceTok, nil, 404)
	if r := e.do("GET", "/alice/moved/resolve/main/a.txt", aliceTok, nil); r.StatusCode != 200 || string(r.body) != "a" {
		t.Fatalf("moved repo file: %d %q", r.StatusCode, r.body)
	}
	// The LFS object's grant moved with it.
	if r := e.commitLines(aliceTok, "alice/moved", "main", "", header("again", ""), lfsLine("w2.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("commit reusing the object after the move: %d %s", r.StatusCode, r.body)
	}

	var sq struct {
		CommitID string `json:"commitId"`
	}
	e.api("POST", "/api/models/alice/moved/super-squash/main", bobTok, map[string]any{"message": "x"}, 403)
	e.api("POST", "/api/models/alice/moved/super-squash/nope", aliceTok, map[string]any{"message": "x"}, 404)
	e.api("POST", "/api/models/alice/moved/super-squash/main", aliceTok, map[string]any{"message": "squashed"}, 200).json(t, &sq)
	var commits []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	e.api("GET", "/api/models/alice/moved/commits/main?limit=10", aliceTok, nil, 200).json(t, &commits)
	if len(commits) != 1 || commits[0].Title != "squashed" || commits[0].ID != sq.CommitID {
		t.Fatalf("history after squash: %+v (squash answered %s)", commits, sq.CommitID)
	}
	if r := e.do("GET", "/alice/moved/resolve/main/b.txt", aliceTok, nil); r.StatusCode != 200 || string(r.body) != "b" {
		t.Fatalf("file after squash: %d %q", r.StatusCode, r.body)
	}
}

type discussionJSON struct {
	Num                int      `json:"num"`
	Title              string   `json:"title"`
	Status             string   `json:"status"`
	IsPullRequest      bool     `json:"isPullRequest"`
	FilesWithConflicts []string `json:"filesWithConflicts"`
	Changes            struct {
		Base          string `json:"base"`
		MergeCommitID string `json:"mergeCommitId"`
	} `json:"changes"`
	Events []struct {
		Type   string         `json:"type"`
		Author map[string]any `json:"author"`
		Data   map[string]any `json:"data"`
	} `json:"events"`
	Author struct {
		Name string `json:"name"`
	} `json:"author"`
	Repo struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"repo"`
}

// A commit with create_pr=1 is listed as a pull request, commented, merged; another is closed.
func TestPullRequestLifecycle(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "r", false)
	base := "/api/models/alice/r/discussions"
	r := e.commitLines(bobTok, "alice/r", "main", "?create_pr=1", header("Add weights", ""), fileLine("w.txt", []byte("bob")))
	if r.StatusCode != 200 {
		t.Fatalf("create_pr commit: %d %s", r.StatusCode, r.body)
	}
	r = e.commitLines(bobTok, "alice/r", "main", "?create_pr=1", header("Other change", ""), fileLine("x.txt", []byte("x")))
	if r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	e.api("POST", base, aliceTok, map[string]any{"title": "A question", "description": "why?"}, 200)

	var page struct {
		Discussions []discussionJSON `json:"discussions"`
		Count       int              `json:"count"`
		Start       int              `json:"start"`
	}
	e.api("GET", base+"?type=pull_request", "", nil, 200).json(t, &page)
	if page.Count != 2 || len(page.Discussions) != 2 || page.Discussions[0].Num != 2 || !page.Discussions[1].IsPullRequest ||
		page.Discussions[1].Title != "Add weights" || page.Discussions[1].Author.Name != "bob" || page.Discussions[1].Repo.Name != "alice/r" {
		t.Fatalf("PR listing: %+v", page)
	}
	e.api("GET", base+"?type=discussion", "", nil, 200).json(t, &page)
	if page.Count != 1 || page.Discussions[0].Num != 3 {
		t.Fatalf("discussion listing: %+v", page)
	}

	e.api("POST", base+"/1/comment", aliceTok, map[string]any{"comment": "Looks good"}, 200)
	var d discussionJSON
	e.api("GET", base+"/1", "", nil, 200).json(t, &d)
	if d.Status != "open" || d.Changes.Base != "refs/heads/main" || len(d.FilesWithConflicts) != 0 || len(d.Events) != 2 ||
		d.Events[0].Type != "commit" || d.Events[1].Type != "comment" || d.Events[1].Data["latest"].(map[string]any)["raw"] != "Looks good" {
		t.Fatalf("details: %+v", d)
	}
	e.api("POST", base+"/1/merge", bobTok, map[string]any{}, 403) // bob may not write to main
	var merged struct {
		NewStatus struct {
			Data map[string]any `json:"data"`
		} `json:"newStatus"`
	}
	e.api("POST", base+"/1/merge", aliceTok, map[string]any{"comment": "thanks"}, 200).json(t, &merged)
	if merged.NewStatus.Data["status"] != "merged" {
		t.Fatalf("merge answer: %+v", merged)
	}
	if r := e.do("GET", "/alice/r/resolve/main/w.txt", "", nil); r.StatusCode != 200 || string(r.body) != "bob" {
		t.Fatalf("main after merge: %d %q", r.StatusCode, r.body)
	}
	e.api("GET", base+"/1", "", nil, 200).json(t, &d)
	if d.Status != "merged" || d.Changes.MergeCommitID != e.head("", "alice/r", "main") {
		t.Fatalf("after merge: %+v", d)
	}
	e.api("POST", base+"/1/merge", aliceTok, map[string]any{}, 400)

	// PR 2 is closed by its author, then reopened and closed by the owner; a stranger may not.
	e.api("POST", base+"/2/status", carolTok, map[string]any{"status": "closed"}, 403)
	e.api("POST", base+"/2/status", bobTok, map[string]any{"status": "closed", "comment": "never mind"}, 200)
	e.api("POST", base+"/2/status", aliceTok, map[string]any{"status": "open"}, 200)
	e.api("POST", base+"/2/status", aliceTok, map[string]any{"status": "closed"}, 200)
	e.api("GET", base+"?status=closed", "", nil, 200).json(t, &page)
	if page.Count != 1 || page.Discussions[0].Num != 2 {
		t.Fatalf("closed listing: %+v", page)
	}
	e.api("GET", base+"/9", "", nil, 404)
}

// Merging a PR whose file was also changed on the base since the PR started is refused as a conflict.
func TestPullRequestConflict(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "r", false)
	if r := e.commitLines(aliceTok, "alice/r", "main", "", header("a", ""), fileLine("a.txt", []byte("1"))); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	if r := e.commitLines(bobTok, "alice/r", "main", "?create_pr=1", header("pr", ""), fileLine("a.txt", []byte("pr"))); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	if r := e.commitLines(aliceTok, "alice/r", "main", "", header("b", ""), fileLine("a.txt", []byte("main"))); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	var d discussionJSON
	e.api("GET", "/api/models/alice/r/discussions/1", "", nil, 200).json(t, &d)
	if len(d.FilesWithConflicts) != 1 || d.FilesWithConflicts[0] != "a.txt" {
		t.Fatalf("conflicts %v", d.FilesWithConflicts)
	}
	e.api("POST", "/api/models/alice/r/discussions/1/merge", aliceTok, map[string]any{}, 409)
}

func TestMergedFilesTable(t *testing.T) {
	mk := func(kv ...string) *commit {
		c := &commit{Files: map[string]fileEntry{}}
		for i := 0; i+1 < len(kv); i += 2 {
			c.Files[kv[i]] = fileEntry{OID: kv[i+1]}
		}
		return c
	}
	for _, tc := range []struct {
		name            string
		fork, base, pr  *commit
		want, conflicts string
	}{
		{"pr adds", mk("a", "1"), mk("a", "1"), mk("a", "1", "b", "2"), "a=1 b=2", ""},
		{"both add others", mk("a", "1"), mk("a", "1", "c", "3"), mk("a", "1", "b", "2"), "a=1 b=2 c=3", ""},
		{"pr deletes", mk("a", "1", "b", "2"), mk("a", "1", "b", "2"), mk("a", "1"), "a=1", ""},
		{"same change both", mk("a", "1"), mk("a", "2"), mk("a", "2"), "a=2", ""},
		{"conflict", mk("a", "1"), mk("a", "2"), mk("a", "3"), "", "a"},
		{"delete vs change", mk("a", "1"), mk(), mk("a", "3"), "", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, conflicts := mergedFiles(tc.pr, tc.base, tc.fork)
			if got := strings.Join(conflicts, ","); got != tc.conflicts {
				t.Fatalf("conflicts %q, want %q", got, tc.conflicts)
			}
			if tc.conflicts != "" {
				return
			}
			var parts []string
			for _, p := range []string{"a", "b", "c"} {
				if e, ok := files[p]; ok {
					parts = append(parts, p+"="+e.OID)
				}
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Errorf("files %q, want %q", got, tc.want)
			}
		})
	}
}
