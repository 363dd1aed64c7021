package hubtest

import (
	"net/http"
	"strings"
	"testing"
)

func TestWhoami(t *testing.T) {
	e := newEnv(t, testOptions())
	tests := []struct {
		name     string
		auth     string
		want     int
		user     string
		role     string
		orgs     int
		errorMsg string
	}{
		{"anonymous", "", 401, "", "", 0, ""},
		{"unknown token", "Bearer hf_nope", 401, "", "", 0, "Invalid credentials in Authorization header"},
		{"basic auth is not for the API", "Basic YTpiCg==", 401, "", "", 0, "Invalid credentials in Authorization header"},
		{"write token", "Bearer " + aliceTok, 200, "alice", "write", 0, ""},
		{"read token", "Bearer " + readerTok, 200, "reader", "read", 0, ""},
		{"org member", "bearer " + carolTok, 200, "carol", "write", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("GET", "/api/whoami-v2", "", nil, "Authorization", tt.auth)
			if r.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.want, r.body)
			}
			if r.Header.Get("X-Request-Id") == "" || r.Header.Get("RateLimit") == "" || r.Header.Get("RateLimit-Policy") == "" {
				t.Errorf("missing X-Request-Id/RateLimit headers: %v", r.Header)
			}
			if tt.errorMsg != "" && r.Header.Get("X-Error-Message") != tt.errorMsg {
				t.Errorf("X-Error-Message %q, want %q", r.Header.Get("X-Error-Message"), tt.errorMsg)
			}
			if tt.want != 200 {
				var body struct{ Error string }
				r.json(t, &body)
				if body.Error == "" {
					t.Errorf("error body without \"error\": %s", r.body)
				}
				return
			}
			var w struct {
				Type string
				Name string
				Orgs []struct{ Name, Type string }
				Auth struct {
					Type        string
					AccessToken struct{ DisplayName, Role string }
				}
			}
			r.json(t, &w)
			if w.Type != "user" || w.Name != tt.user || w.Auth.Type != "access_token" || w.Auth.AccessToken.Role != tt.role || len(w.Orgs) != tt.orgs {
				t.Errorf("whoami = %+v", w)
			}
		})
	}
}

func TestCreateDeleteRepo(t *testing.T) {
	e := newEnv(t, testOptions())
	tests := []struct {
		name  string
		token string
		body  map[string]any
		want  int
	}{
		{"create", aliceTok, map[string]any{"name": "m1", "organization": "alice", "private": false}, 200},
		{"exists", aliceTok, map[string]any{"name": "m1", "organization": "alice"}, 409},
		{"null organization means own namespace", aliceTok, map[string]any{"name": "m2", "organization": nil}, 200},
		{"name with namespace", aliceTok, map[string]any{"name": "alice/m3"}, 200},
		{"visibility private", aliceTok, map[string]any{"name": "p1", "visibility": "private"}, 200},
		{"dataset", aliceTok, map[string]any{"name": "d1", "type": "dataset"}, 200},
		{"space needs sdk", aliceTok, map[string]any{"name": "s1", "type": "space"}, 400},
		{"space", aliceTok, map[string]any{"name": "s1", "type": "space", "sdk": "static", "visibility": "protected"}, 200},
		{"protected is for spaces", aliceTok, map[string]any{"name": "x1", "visibility": "protected"}, 400},
		{"bad visibility", aliceTok, map[string]any{"name": "x1", "visibility": "secret"}, 400},
		{"bad type", aliceTok, map[string]any{"name": "x1", "type": "bucket"}, 400},
		{"bad name", aliceTok, map[string]any{"name": "a..b"}, 400},
		{"bad name chars", aliceTok, map[string]any{"name": "a b"}, 400},
		{"other namespace", aliceTok, map[string]any{"name": "x1", "organization": "bob"}, 403},
		{"org member", carolTok, map[string]any{"name": "x1", "organization": "acme"}, 200},
		{"read token", readerTok, map[string]any{"name": "x1"}, 403},
		{"anonymous", "", map[string]any{"name": "x1", "organization": "alice"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.api("POST", "/api/repos/create", tt.token, tt.body, tt.want)
			var out struct{ URL, Name, ID, Error string }
			r.json(t, &out)
			switch tt.want {
			case 200:
				if !strings.HasPrefix(out.URL, e.s.URL()+"/") || out.ID == "" || !strings.Contains(out.Name, "/") {
					t.Errorf("create answer %s", r.body)
				}
			case 409:
				if out.URL != e.s.URL()+"/alice/m1" || out.Error == "" {
					t.Errorf("409 answer %s, want url and error", r.body)
				}
			default:
				if out.Error == "" || r.Header.Get("X-Error-Message") == "" {
					t.Errorf("error answer %s without message", r.body)
				}
			}
		})
	}
	// Dataset and space URLs carry their prefix.
	e.api("GET", "/api/datasets/alice/d1", aliceTok, nil, 200)
	e.api("GET", "/api/spaces/alice/s1", aliceTok, nil, 200)
	e.api("GET", "/api/models/alice/d1", aliceTok, nil, 404)

	// Delete.
	del := []struct {
		name  string
		token string
		body  map[string]any
		want  int
	}{
		{"other user's public repo", bobTok, map[string]any{"name": "m1", "organization": "alice"}, 403},
		{"other user's private repo is invisible", bobTok, map[string]any{"name": "p1", "organization": "alice"}, 404},
		{"read token", readerTok, map[string]any{"name": "m1", "organization": "alice"}, 403},
		{"delete", aliceTok, map[string]any{"name": "m1", "organization": "alice"}, 200},
		{"again", aliceTok, map[string]any{"name": "m1", "organization": "alice"}, 404},
		{"dataset", aliceTok, map[string]any{"name": "d1", "organization": "alice", "type": "dataset"}, 200},
	}
	for _, tt := range del {
		t.Run("delete/"+tt.name, func(t *testing.T) {
			r := e.api("DELETE", "/api/repos/delete", tt.token, tt.body, tt.want)
			if tt.want == 404 && r.Header.Get("X-Error-Code") != "RepoNotFound" {
				t.Errorf("X-Error-Code %q", r.Header.Get("X-Error-Code"))
			}
		})
	}
	e.api("GET", "/api/models/alice/m1", aliceTok, nil, 404)
	// A deleted repository can be created again, fresh.
	e.createRepo(aliceTok, "alice", "m1", false)
	var commits []map[string]any
	e.api("GET", "/api/models/alice/m1/commits/main", aliceTok, nil, 200).json(t, &commits)
	if len(commits) != 1 || commits[0]["title"] != "initial commit" {
		t.Errorf("recreated repo history %v", commits)
	}
}

func TestPrivateRepoInvisible(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "secret", true)
	e.createRepo(carolTok, "acme", "orgsecret", true)
	paths := []string{
		"/api/models/alice/secret",
		"/api/models/alice/secret/revision/main",
		"/api/models/alice/secret/refs",
		"/api/models/alice/secret/tree/main",
		"/api/models/alice/secret/commits/main",
		"/alice/secret/resolve/main/.gitattributes",
	}
	for _, p := range paths {
		for _, tok := range []string{"", bobTok, readerTok} {
			r := e.do("GET", p, tok, nil)
			if r.StatusCode != 404 || r.Header.Get("X-Error-Code") != "RepoNotFound" {
				t.Errorf("GET %s as %q: %d %q, want 404 RepoNotFound", p, tok, r.StatusCode, r.Header.Get("X-Error-Code"))
			}
		}
		if r := e.do("GET", p, aliceTok, nil); r.StatusCode != 200 {
			t.Errorf("GET %s as owner: %d %s", p, r.StatusCode, r.body)
		}
	}
	// Org members see the org's private repos; others do not.
	e.api("GET", "/api/models/acme/orgsecret", carolTok, nil, 200)
	e.api("GET", "/api/models/acme/orgsecret", aliceTok, nil, 404)
	// Writes to someone else's private repo are 404 too, not 403 (no existence leak).
	r := e.commitLines(bobTok, "alice/secret", "main", "", header("x", ""))
	if r.StatusCode != 404 {
		t.Errorf("commit to an invisible repo: %d", r.StatusCode)
	}
	// Writes to someone else's public repo are refused with 403; opening a PR is allowed.
	e.createRepo(aliceTok, "alice", "public", false)
	if r := e.commitLines(bobTok, "alice/public", "main", "", header("x", "")); r.StatusCode != 403 {
		t.Errorf("commit to another user's repo: %d", r.StatusCode)
	}
	if r := e.commitLines(bobTok, "alice/public", "main", "?create_pr=1", header("x", "")); r.StatusCode != 200 {
		t.Errorf("PR to another user's public repo: %d %s", r.StatusCode, r.body)
	}
	if r := e.commitLines(readerTok, "alice/public", "main", "?create_pr=1", header("x", "")); r.StatusCode != 403 {
		t.Errorf("PR with a read token: %d", r.StatusCode)
	}
}

func TestBranchesTagsRefs(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	base := "/api/models/alice/m"
	mainHead := e.head(aliceTok, "alice/m", "main")
	r := e.commitLines(aliceTok, "alice/m", "main", "", header("add a", ""), fileLine("a.txt", []byte("a")))
	var c struct{ CommitOid string }
	r.json(t, &c)

	steps := []struct {
		name   string
		method string
		path   string
		token  string
		body   any
		want   int
	}{
		{"branch from main", "POST", "/branch/dev", aliceTok, nil, 200},
		{"branch exists", "POST", "/branch/dev", aliceTok, nil, 409},
		{"main exists", "POST", "/branch/main", aliceTok, map[string]any{}, 409},
		{"overwrite", "POST", "/branch/dev", aliceTok, map[string]any{"overwrite": true, "startingPoint": mainHead}, 200},
		{"branch from commit", "POST", "/branch/old", aliceTok, map[string]any{"startingPoint": mainHead}, 200},
		{"unknown starting point", "POST", "/branch/x", aliceTok, map[string]any{"startingPoint": "nope"}, 404},
		{"empty branch", "POST", "/branch/empty", aliceTok, map[string]any{"emptyBranch": true}, 200},
		{"PR name is not a branch", "POST", "/branch/refs%2Fpr%2F5", aliceTok, nil, 400},
		{"invalid name", "POST", "/branch/a..b", aliceTok, nil, 400},
		{"read token", "POST", "/branch/y", readerTok, nil, 403},
		{"other user", "POST", "/branch/y", bobTok, nil, 403},
		{"tag main", "POST", "/tag/main", aliceTok, map[string]any{"tag": "v1", "message": "first"}, 200},
		{"tag exists", "POST", "/tag/main", aliceTok, map[string]any{"tag": "v1"}, 409},
		{"tag an unknown revision", "POST", "/tag/nope", aliceTok, map[string]any{"tag": "v2"}, 404},
		{"tag a commit", "POST", "/tag/" + mainHead, aliceTok, map[string]any{"tag": "v0"}, 200},
		{"bad tag name", "POST", "/tag/main", aliceTok, map[string]any{"tag": "a b"}, 400},
		{"branch named like a tag", "POST", "/branch/v1", aliceTok, map[string]any{"startingPoint": "v0"}, 200},
		{"delete main", "DELETE", "/branch/main", aliceTok, nil, 403},
		{"delete missing branch", "DELETE", "/branch/nope", aliceTok, nil, 404},
		{"delete branch", "DELETE", "/branch/old", aliceTok, nil, 200},
		{"delete missing tag", "DELETE", "/tag/nope", aliceTok, nil, 404},
		{"delete tag", "DELETE", "/tag/v0", aliceTok, nil, 200},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := e.api(s.method, base+s.path, s.token, s.body, s.want)
			if s.want == 404 && r.Header.Get("X-Error-Code") != "RevisionNotFound" {
				t.Errorf("X-Error-Code %q, want RevisionNotFound", r.Header.Get("X-Error-Code"))
			}
		})
	}
	var refs struct {
		Branches     []gitRef
		Tags         []gitRef
		Converts     []gitRef
		PullRequests []gitRef
	}
	e.api("GET", base+"/refs", readerTok, nil, 200).json(t, &refs)
	got := map[string]string{}
	for _, b := range append(refs.Branches, refs.Tags...) {
		got[b.Ref] = b.TargetCommit
	}
	want := map[string]string{
		"refs/heads/main": c.CommitOid, "refs/heads/dev": mainHead, "refs/heads/v1": mainHead,
		"refs/tags/v1": c.CommitOid,
	}
	if len(got) != len(want)+1 { // + refs/heads/empty
		t.Errorf("refs %v, want %v + empty", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s -> %s, want %s", k, got[k], v)
		}
	}
	if refs.PullRequests != nil || refs.Converts == nil {
		t.Errorf("pullRequests must be absent without include_prs, converts present: %+v", refs)
	}
	// The empty branch has no files.
	var tree []map[string]any
	e.api("GET", base+"/tree/empty", aliceTok, nil, 200).json(t, &tree)
	if len(tree) != 0 {
		t.Errorf("empty branch tree %v", tree)
	}
	// A tag resolves for downloads; a branch wins over a tag of the same name.
	if r := e.do("GET", "/alice/m/resolve/refs%2Ftags%2Fv1/a.txt", "", nil); r.StatusCode != 200 || string(r.body) != "a" {
		t.Errorf("resolve via tag: %d %q", r.StatusCode, r.body)
	}
	if r := e.do("GET", "/alice/m/resolve/v1/a.txt", "", nil); r.StatusCode != 404 || r.Header.Get("X-Error-Code") != "EntryNotFound" {
		t.Errorf("branch v1 (at the initial commit) must win over tag v1: %d", r.StatusCode)
	}
	// PRs appear with include_prs=1.
	e.commitLines(aliceTok, "alice/m", "main", "?create_pr=1", header("pr", ""))
	e.api("GET", base+"/refs?include_prs=1", aliceTok, nil, 200).json(t, &refs)
	if len(refs.PullRequests) != 1 || refs.PullRequests[0].Ref != "refs/pr/1" {
		t.Errorf("pullRequests %+v", refs.PullRequests)
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/nothing/here", 404},
		{"GET", "/api/repos/create", 405},
		{"PUT", "/api/models/alice/m/commit/main", 405},
		{"GET", "/api/models/alice/m/unknown", 404},
		{"GET", "/api/models/al..ice/m", 404},
		{"GET", "/api/whoami-v2/extra", 404},
		{"GET", "/alice/m.git/info/lfs/objects/batch", 405},
	}
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, aliceTok, nil)
		if r.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, r.StatusCode, tt.want)
		}
		if r.Header.Get("X-Request-Id") == "" || r.Header.Get("X-Error-Message") == "" {
			t.Errorf("%s %s: missing X-Request-Id or X-Error-Message", tt.method, tt.path)
		}
	}
	// The client's trace id is echoed in X-Request-Id.
	r := e.do("GET", "/api/models/alice/m", "", nil, "X-Amzn-Trace-Id", "trace-123")
	if !strings.HasSuffix(r.Header.Get("X-Request-Id"), ";trace-123") {
		t.Errorf("X-Request-Id %q does not echo the trace id", r.Header.Get("X-Request-Id"))
	}
	if r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	_ = http.StatusOK
}
