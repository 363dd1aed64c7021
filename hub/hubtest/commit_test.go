package hubtest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestPreupload(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	lfsData := randomBytes(1, 1000)
	oid := e.upload(aliceTok, "alice/m", lfsData)
	r := e.commitLines(aliceTok, "alice/m", "main", "",
		header("seed", ""),
		fileLine("config.json", []byte(`{"a":1}`)),
		fileLine(".gitignore", []byte("*.log\nbuild/\n!keep.log\n")),
		lfsLine("model.safetensors", oid, int64(len(lfsData))))
	if r.StatusCode != 200 {
		t.Fatalf("seed commit: %d %s", r.StatusCode, r.body)
	}
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	text := b64([]byte("hello"))
	binary := b64([]byte("ab\x00cd"))
	type file struct {
		path, sample string
		size         int64
	}
	type want struct {
		mode   string
		ignore bool
		oid    string
	}
	tests := []struct {
		name string
		body map[string]any
		f    file
		want want
	}{
		{"small text", nil, file{"a.txt", text, 5}, want{"regular", false, ""}},
		{"empty file is regular", nil, file{"w.safetensors", "", 0}, want{"regular", false, ""}},
		{".gitattributes pattern", nil, file{"sub/w.safetensors", text, 5}, want{"lfs", false, ""}},
		{"over 10 MiB", nil, file{"big.txt", text, 10<<20 + 1}, want{"lfs", false, ""}},
		{"exactly 10 MiB", nil, file{"big.txt", text, 10 << 20}, want{"regular", false, ""}},
		{"binary sample", nil, file{"data.dat", binary, 5}, want{"lfs", false, ""}},
		{"existing regular file has its blob oid", nil, file{"config.json", text, 7}, want{"regular", false, blobOID([]byte(`{"a":1}`))}},
		{"existing LFS file has its sha256", nil, file{"model.safetensors", binary, 1000}, want{"lfs", false, oid}},
		{"repo .gitignore", nil, file{"x/debug.log", text, 5}, want{"regular", true, ""}},
		{"repo .gitignore negation", nil, file{"keep.log", text, 5}, want{"regular", false, ""}},
		{"repo .gitignore directory", nil, file{"build/out/a.txt", text, 5}, want{"regular", true, ""}},
		{"gitIgnore in the body wins", map[string]any{"gitIgnore": "*.txt"}, file{"x/debug.log", text, 5}, want{"regular", false, ""}},
		{"gitIgnore in the body", map[string]any{"gitIgnore": "*.txt"}, file{"a.txt", text, 5}, want{"regular", true, ""}},
		{"gitAttributes in the body", map[string]any{"gitAttributes": "*.txt filter=lfs diff=lfs merge=lfs -text\n"}, file{"a.txt", text, 5}, want{"lfs", false, ""}},
		{"gitAttributes in the body replaces the repo's", map[string]any{"gitAttributes": ""}, file{"w.safetensors", text, 5}, want{"regular", false, ""}},
		{"unset filter", map[string]any{"gitAttributes": "*.bin filter=lfs\nsmall.bin -filter\n"}, file{"small.bin", text, 5}, want{"regular", false, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"files": []map[string]any{{"path": tt.f.path, "sample": tt.f.sample, "size": tt.f.size}}}
			for k, v := range tt.body {
				body[k] = v
			}
			var out struct {
				Files []struct {
					Path         string
					UploadMode   string
					ShouldIgnore *bool
					OID          string `json:"oid"`
				}
				CommitOid string
			}
			e.api("POST", "/api/models/alice/m/preupload/main", aliceTok, body, 200).json(t, &out)
			if len(out.Files) != 1 || out.CommitOid == "" {
				t.Fatalf("answer %+v", out)
			}
			f := out.Files[0]
			if f.Path != tt.f.path || f.UploadMode != tt.want.mode || f.ShouldIgnore == nil || *f.ShouldIgnore != tt.want.ignore || f.OID != tt.want.oid {
				t.Errorf("got {%s %s ignore=%v oid=%q}, want %+v", f.Path, f.UploadMode, *f.ShouldIgnore, f.OID, tt.want)
			}
		})
	}
	errs := []struct {
		name  string
		path  string
		token string
		body  any
		want  int
		code  string
	}{
		{"too many files", "/api/models/alice/m/preupload/main", aliceTok, map[string]any{"files": make([]map[string]any, 257)}, 413, ""},
		{"invalid path", "/api/models/alice/m/preupload/main", aliceTok, map[string]any{"files": []map[string]any{{"path": "../x", "sample": "", "size": 1}}}, 422, ""},
		{"bad sample", "/api/models/alice/m/preupload/main", aliceTok, map[string]any{"files": []map[string]any{{"path": "x", "sample": "!!", "size": 1}}}, 400, ""},
		{"unknown revision", "/api/models/alice/m/preupload/nope", aliceTok, map[string]any{"files": []map[string]any{}}, 404, "RevisionNotFound"},
		{"unknown repo", "/api/models/alice/nope/preupload/main", aliceTok, map[string]any{"files": []map[string]any{}}, 404, "RepoNotFound"},
		{"read token", "/api/models/alice/m/preupload/main", readerTok, map[string]any{"files": []map[string]any{}}, 403, ""},
		{"not JSON", "/api/models/alice/m/preupload/main", aliceTok, "nope", 400, ""},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			r := e.api("POST", tt.path, tt.token, tt.body, tt.want)
			if r.Header.Get("X-Error-Code") != tt.code {
				t.Errorf("X-Error-Code %q, want %q", r.Header.Get("X-Error-Code"), tt.code)
			}
		})
	}
	// 256 files is the limit, not above.
	files := make([]map[string]any, 256)
	for i := range files {
		files[i] = map[string]any{"path": fmt.Sprintf("f%d", i), "sample": "", "size": 0}
	}
	e.api("POST", "/api/models/alice/m/preupload/main", aliceTok, map[string]any{"files": files}, 200)
}

func TestCommit(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(2, 3000)
	oid := e.upload(aliceTok, "alice/m", data)
	head0 := e.head(aliceTok, "alice/m", "main")
	r := e.commitLines(aliceTok, "alice/m", "main", "",
		map[string]any{"key": "header", "value": map[string]any{"summary": "First", "description": "Body text", "parentCommit": head0[:7]}},
		fileLine("dir/a.txt", []byte("A")),
		fileLine("dir/sub/b.txt", []byte("B")),
		lfsLine("w/model.bin", oid, int64(len(data))))
	if r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	var out struct {
		Success        bool
		CommitOid      string
		CommitURL      string
		HookOutput     *string
		PullRequestURL *string
	}
	r.json(t, &out)
	if !out.Success || !isHex(out.CommitOid, 40, 40) || out.CommitURL != e.s.URL()+"/alice/m/commit/"+out.CommitOid || out.HookOutput == nil || out.PullRequestURL != nil {
		t.Fatalf("commit answer %s", r.body)
	}
	head1 := out.CommitOid
	var commits []struct {
		ID, Title, Message, Date string
		Authors                  []struct{ User string }
	}
	e.api("GET", "/api/models/alice/m/commits/main", aliceTok, nil, 200).json(t, &commits)
	if commits[0].ID != head1 || commits[0].Title != "First" || commits[0].Message != "First\n\nBody text" || commits[0].Authors[0].User != "alice" || commits[1].ID != head0 {
		t.Errorf("history %+v", commits)
	}

	ndjson := func(lines ...string) string { return strings.Join(lines, "\n") }
	hdr := func(parent string) string {
		if parent == "" {
			return `{"key":"header","value":{"summary":"s"}}`
		}
		return `{"key":"header","value":{"summary":"s","parentCommit":"` + parent + `"}}`
	}
	missing := strings.Repeat("ab", 32)
	tests := []struct {
		name  string
		token string
		rev   string
		query string
		body  string
		want  int
		code  string
		msg   string
	}{
		{"stale parentCommit", aliceTok, "main", "", ndjson(hdr(head0)), 412, "", "The branch was updated since you opened this page"},
		{"short parentCommit", aliceTok, "main", "", ndjson(hdr(head1[:5]), `{"key":"file","value":{"path":"c.txt","content":"Qw==","encoding":"base64"}}`), 200, "", ""},
		{"parentCommit not hex", aliceTok, "main", "", ndjson(hdr("xyz12")), 400, "", "parentCommit"},
		{"parentCommit too short", aliceTok, "main", "", ndjson(hdr("abcd")), 400, "", "parentCommit"},
		{"unknown revision", aliceTok, "nope", "", ndjson(hdr("")), 404, "RevisionNotFound", ""},
		{"unknown repo", aliceTok, "main", "", ndjson(hdr("")), 404, "RepoNotFound", ""},
		{"unknown LFS object", aliceTok, "main", "", ndjson(hdr(""), `{"key":"lfsFile","value":{"path":"x.bin","algo":"sha256","oid":"`+missing+`","size":5}}`), 400, "", "LFS pointer pointed to a file that does not exist"},
		{"LFS size mismatch", aliceTok, "main", "", ndjson(hdr(""), `{"key":"lfsFile","value":{"path":"x.bin","algo":"sha256","oid":"`+oid+`","size":5}}`), 400, "", "does not exist"},
		{"LFS bad oid", aliceTok, "main", "", ndjson(hdr(""), `{"key":"lfsFile","value":{"path":"x.bin","oid":"abc","size":5}}`), 400, "", "not a sha256"},
		{"LFS copy without size", aliceTok, "main", "", ndjson(hdr(""), `{"key":"lfsFile","value":{"path":"copy.bin","algo":"sha256","oid":"`+oid+`"}}`), 200, "", ""},
		{"delete a missing file", aliceTok, "main", "", ndjson(hdr(""), `{"key":"deletedFile","value":{"path":"nope.txt"}}`), 404, "EntryNotFound", "doesn't exist"},
		{"delete a missing folder", aliceTok, "main", "", ndjson(hdr(""), `{"key":"deletedFolder","value":{"path":"nope/"}}`), 404, "EntryNotFound", ""},
		{"invalid path ..", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"../x","content":""}}`), 422, "", "Invalid path"},
		{"invalid path backslash", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"..\\ddd","content":""}}`), 422, "", "Invalid path"},
		{"invalid path .git", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"a/.git/config","content":""}}`), 422, "", ""},
		{"file over a folder", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"dir","content":""}}`), 422, "", "cannot be a folder"},
		{"folder over a file", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"dir/a.txt/x","content":""}}`), 422, "", ""},
		{"header not first", aliceTok, "main", "", ndjson(`{"key":"file","value":{"path":"a","content":""}}`, hdr("")), 400, "", "header"},
		{"two headers", aliceTok, "main", "", ndjson(hdr(""), hdr("")), 400, "", "second header"},
		{"no header", aliceTok, "main", "", "", 400, "", "no header"},
		{"empty summary", aliceTok, "main", "", `{"key":"header","value":{"summary":" "}}`, 400, "", "summary"},
		{"unknown key", aliceTok, "main", "", ndjson(hdr(""), `{"key":"copyFile","value":{"path":"a"}}`), 400, "", "unknown key"},
		{"bad JSON", aliceTok, "main", "", ndjson(hdr(""), `{"key":`), 400, "", "invalid JSON"},
		{"bad base64", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"a","content":"!!"}}`), 400, "", "base64"},
		{"regular file over 10 MiB", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"a","content":"`+base64.StdEncoding.EncodeToString(make([]byte, 10<<20+1))+`"}}`), 400, "", "larger than 10 MiB"},
		{"utf-8 encoding", aliceTok, "main", "", ndjson(hdr(""), `{"key":"file","value":{"path":"u.txt","content":"héllo","encoding":"utf-8"}}`), 200, "", ""},
		{"trailing newline and blank lines", aliceTok, "main", "", hdr("") + "\n\n" + `{"key":"deletedFile","value":{"path":"u.txt"}}` + "\n", 200, "", ""},
		{"commit to a tag", aliceTok, "v1", "", ndjson(hdr("")), 400, "", "not a branch"},
		{"PR against a tag", aliceTok, "v1", "?create_pr=1", ndjson(hdr("")), 404, "RevisionNotFound", ""},
		{"read token", readerTok, "main", "", ndjson(hdr("")), 403, "", "write token"},
		{"anonymous", "", "main", "", ndjson(hdr("")), 401, "", ""},
		{"delete a folder", aliceTok, "main", "", ndjson(hdr(""), `{"key":"deletedFolder","value":{"path":"dir/sub/"}}`), 200, "", ""},
	}
	e.api("POST", "/api/models/alice/m/tag/main", aliceTok, map[string]any{"tag": "v1"}, 200)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := "alice/m"
			if tt.name == "unknown repo" {
				repo = "alice/none"
			}
			r := e.do("POST", "/api/models/"+repo+"/commit/"+tt.rev+tt.query, tt.token, strings.NewReader(tt.body), "Content-Type", "application/x-ndjson")
			if r.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.want, r.body)
			}
			if r.Header.Get("X-Error-Code") != tt.code {
				t.Errorf("X-Error-Code %q, want %q", r.Header.Get("X-Error-Code"), tt.code)
			}
			if tt.msg != "" && !strings.Contains(string(r.body), tt.msg) {
				t.Errorf("body %s does not mention %q", r.body, tt.msg)
			}
		})
	}
	// State after the table: c.txt, copy.bin added; u.txt added then deleted; dir/sub removed.
	var tree []struct{ Path, Type string }
	e.api("GET", "/api/models/alice/m/tree/main?recursive=true", aliceTok, nil, 200)
	all := e.listAll("/api/models/alice/m/tree/main?recursive=true")
	for _, x := range all {
		tree = append(tree, struct{ Path, Type string }{x["path"].(string), x["type"].(string)})
	}
	want := "file .gitattributes,file c.txt,file copy.bin,directory dir,file dir/a.txt,directory w,file w/model.bin"
	var got []string
	for _, x := range tree {
		got = append(got, x.Type+" "+x.Path)
	}
	if strings.Join(got, ",") != want {
		t.Errorf("tree\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	// The LFS copy points at the same object.
	var info struct {
		Siblings []struct {
			Rfilename string
			LFS       *struct{ SHA256 string }
		}
	}
	e.api("GET", "/api/models/alice/m?blobs=true", aliceTok, nil, 200).json(t, &info)
	for _, s := range info.Siblings {
		if s.Rfilename == "copy.bin" && (s.LFS == nil || s.LFS.SHA256 != oid) {
			t.Errorf("copy.bin: %+v", s)
		}
	}
}

// listAll follows Link headers and returns every entry of a paginated listing.
func (e *env) listAll(url string) []map[string]any {
	e.t.Helper()
	var all []map[string]any
	for pages := 0; url != ""; pages++ {
		if pages > 1000 {
			e.t.Fatal("pagination does not end")
		}
		r := e.do("GET", url, aliceTok, nil)
		if r.StatusCode != 200 {
			e.t.Fatalf("GET %s: %d %s", url, r.StatusCode, r.body)
		}
		var page []map[string]any
		r.json(e.t, &page)
		all = append(all, page...)
		url = ""
		if l := r.Header.Get("Link"); l != "" {
			if !strings.HasSuffix(l, `>; rel="next"`) || !strings.HasPrefix(l, "<") {
				e.t.Fatalf("Link %q", l)
			}
			url = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
		}
	}
	return all
}

func TestPullRequests(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	head0 := e.head(aliceTok, "alice/m", "main")
	e.commitLines(aliceTok, "alice/m", "main", "", header("move main", ""), fileLine("a.txt", []byte("1")))
	// A PR with parentCommit branches from that commit, even though main moved.
	r := e.commitLines(bobTok, "alice/m", "main", "?create_pr=1", header("PR one", head0), fileLine("b.txt", []byte("2")))
	if r.StatusCode != 200 {
		t.Fatalf("PR: %d %s", r.StatusCode, r.body)
	}
	var out struct{ CommitOid, PullRequestURL string }
	r.json(t, &out)
	if out.PullRequestURL != e.s.URL()+"/alice/m/discussions/1" {
		t.Errorf("pullRequestUrl %q", out.PullRequestURL)
	}
	// The PR ref holds b.txt but not a.txt.
	if r := e.do("GET", "/alice/m/resolve/refs%2Fpr%2F1/b.txt", "", nil); r.StatusCode != 200 || string(r.body) != "2" {
		t.Errorf("resolve refs/pr/1: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("GET", "/alice/m/resolve/refs%2Fpr%2F1/a.txt", "", nil); r.StatusCode != 404 {
		t.Errorf("a.txt on the PR: %d", r.StatusCode)
	}
	// Committing to refs/pr/1 moves the PR; a second PR gets number 2.
	if r := e.commitLines(aliceTok, "alice/m", "refs%2Fpr%2F1", "", header("update PR", out.CommitOid), fileLine("c.txt", []byte("3"))); r.StatusCode != 200 {
		t.Fatalf("commit to refs/pr/1: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("GET", "/alice/m/resolve/refs/pr/1/c.txt", "", nil); r.StatusCode != 200 || string(r.body) != "3" {
		t.Errorf("resolve raw refs/pr/1: %d %s", r.StatusCode, r.body)
	}
	r = e.commitLines(aliceTok, "alice/m", "main", "?create_pr=1", header("PR two", ""))
	r.json(t, &out)
	if !strings.HasSuffix(out.PullRequestURL, "/discussions/2") {
		t.Errorf("second PR %q", out.PullRequestURL)
	}
	// parentCommit that is not in the branch's history.
	if r := e.commitLines(aliceTok, "alice/m", "main", "?create_pr=1", header("PR three", "deadbeef")); r.StatusCode != 412 {
		t.Errorf("PR from an unknown parent: %d", r.StatusCode)
	}
}

func TestConcurrentCommits(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	head := e.head(aliceTok, "alice/m", "main")
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"key":"header","value":{"summary":"c%d","parentCommit":"%s"}}`+"\n", i, head)
			fmt.Fprintf(&b, `{"key":"file","value":{"path":"f%d.txt","content":"eA=="}}`, i)
			r := e.do("POST", "/api/models/alice/m/commit/main", aliceTok, &b)
			codes[i] = r.StatusCode
		}()
	}
	wg.Wait()
	ok, stale := 0, 0
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 412:
			stale++
		}
	}
	if ok != 1 || stale != n-1 {
		t.Errorf("codes %v: want exactly one 200 and %d 412", codes, n-1)
	}
	if got := e.s.Stats().Commits; got != 1 {
		t.Errorf("stats commits %d", got)
	}
}
