package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNextLink(t *testing.T) {
	tests := []struct {
		values []string
		want   string
	}{
		{[]string{`<https://h/api/models/a/b/tree/main?cursor=abc>; rel="next"`}, "https://h/api/models/a/b/tree/main?cursor=abc"},
		{[]string{`<https://h/p1>; rel="prev", <https://h/p3>; rel="next"`}, "https://h/p3"},
		{[]string{`<https://h/p1>; rel="prev"`, `<https://h/p3>; rel=next`}, "https://h/p3"},
		{[]string{`</relative?cursor=1>; rel="next"`}, "/relative?cursor=1"},
		{[]string{`<https://h/x>; title="a, b; c"; rel="next"`}, "https://h/x"},
		{[]string{`<https://h/x>; rel="prev next"`}, "https://h/x"},
		{[]string{`<https://h/x>; rel="nextish"`}, ""},
		{[]string{`garbage, <https://h/x>; rel="next"`}, "https://h/x"},
		{[]string{`<unterminated; rel="next"`}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := nextLink(tc.values); got != tc.want {
			t.Errorf("nextLink(%q) = %q, want %q", tc.values, got, tc.want)
		}
	}
}

func FuzzNextLink(f *testing.F) {
	f.Add(`<https://h/p1>; rel="prev", <https://h/p3>; rel="next"`)
	f.Add(`<a>; title="x,y;z"; rel=next`)
	f.Add(`<<>>;;,,rel="`)
	f.Fuzz(func(t *testing.T, v string) {
		got := nextLink([]string{v})
		if got != "" && !strings.Contains(v, "<"+got+">") {
			t.Fatalf("nextLink(%q) = %q, not a <target> of the input", v, got)
		}
	})
}

func TestDecodeTreePage(t *testing.T) {
	sha1 := strings.Repeat("a", 40)
	sha256 := strings.Repeat("b", 64)
	good := `[{"type":"file","oid":"` + sha1 + `","size":3,"path":"a.txt"},
		{"type":"directory","oid":"` + sha1 + `","size":0,"path":"sub"},
		{"type":"file","oid":"` + sha1 + `","size":9,"path":"sub/m.bin","lfs":{"oid":"` + sha256 + `","size":9,"pointerSize":130}}]`
	page, err := decodeTreePage([]byte(good))
	if err != nil || len(page) != 3 {
		t.Fatalf("%v %v", page, err)
	}
	if page[0].ETag() != sha1 || page[2].ETag() != sha256 || !page[2].IsLFS() || page[0].IsLFS() {
		t.Errorf("etags: %q %q", page[0].ETag(), page[2].ETag())
	}
	for _, bad := range []string{
		`{}`,
		`[{"type":"symlink","path":"x"}]`,
		`[{"type":"file","oid":"` + sha1 + `","size":3,"path":"../etc/passwd"}]`,
		`[{"type":"file","oid":"` + sha1 + `","size":3,"path":"/abs/../x"}]`,
		`[{"type":"file","oid":"short","size":3,"path":"a"}]`,
		`[{"type":"file","oid":"` + sha1 + `","size":-3,"path":"a"}]`,
		`[{"type":"file","oid":"` + sha1 + `","size":3,"path":"a","lfs":{"oid":"zz","size":3}}]`,
	} {
		if _, err := decodeTreePage([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// FuzzDecodeTreePage: no panic; every accepted file entry has a safe path and a well-formed etag.
func FuzzDecodeTreePage(f *testing.F) {
	f.Add([]byte(`[{"type":"file","oid":"` + strings.Repeat("a", 40) + `","size":3,"path":"a.txt"}]`))
	f.Add([]byte(`[{"type":"file","oid":"` + strings.Repeat("a", 40) + `","size":9,"path":"m.bin","lfs":{"oid":"` + strings.Repeat("b", 64) + `","size":9}}]`))
	f.Add([]byte(`[{"type":"directory","path":".."}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeTreePage(body)
		if err != nil {
			return
		}
		for _, e := range page {
			if e.Type != "file" {
				continue
			}
			if _, err := cleanRepoPath(e.Path); err != nil {
				t.Fatalf("accepted unsafe path %q: %v", e.Path, err)
			}
			if et := e.ETag(); !isHex(et, 40) && !isHex(et, 64) {
				t.Fatalf("accepted etag %q", et)
			}
		}
	})
}

func TestEscaping(t *testing.T) {
	seg := map[string]string{"main": "main", "refs/pr/1": "refs%2Fpr%2F1", "my branch": "my%20branch", "v1.0": "v1.0", "a+b&c": "a%2Bb%26c"}
	for in, want := range seg {
		if got := escapeSegment(in); got != want {
			t.Errorf("escapeSegment(%q) = %q, want %q", in, got, want)
		}
	}
	if got := escapePath("dir a/b#c.bin"); got != "dir%20a/b%23c.bin" {
		t.Errorf("escapePath = %q", got)
	}
}

func TestCleanRepoPath(t *testing.T) {
	good := map[string]string{"a": "a", "/a/b": "a/b", "./a": "a", "././x/y.bin": "x/y.bin", `w\x`: "w/x"}
	for in, want := range good {
		if got, err := cleanRepoPath(in); err != nil || got != want {
			t.Errorf("cleanRepoPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/../b", "a//b", ".git/config", "x/.git", ".cache/huggingface/x", "dir/"} {
		if got, err := cleanRepoPath(bad); err == nil {
			t.Errorf("cleanRepoPath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestValidRepoID(t *testing.T) {
	for _, ok := range []string{"org/name", "a-b/c_d.e", "user/Model-7B"} {
		if err := validRepoID(ok); err != nil {
			t.Errorf("validRepoID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "name", "a/b/c", "../x", "a/..", "a/b c", "a/b?x", "/b"} {
		if err := validRepoID(bad); err == nil {
			t.Errorf("validRepoID(%q) accepted", bad)
		}
	}
}

func TestCreateRepoConflictWithoutURL(t *testing.T) {
	tests := []struct {
		name    string
		bodies  []string // answered in turn, all 409
		existOK bool
		wantErr bool
		tries   int
	}{
		{"409 with url", []string{`{"url":"https://h/x/y","error":"exists"}`}, true, false, 1},
		{"409 without url (racing creates)", []string{`{"error":"A repository with this name already exists"}`}, true, false, 1},
		{"409 without ExistOK", []string{`{"error":"exists"}`}, false, true, 1},
		{"conflicting operation is retried", []string{`{"error":"Cannot create repo: another conflicting operation is in progress"}`, `{"error":"exists"}`}, true, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body := tc.bodies[min(n, len(tc.bodies)-1)]
				n++
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusConflict)
				w.Write([]byte(body))
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, "hf_x", nil)
			u, created, err := c.CreateRepo(context.Background(), "x/y", CreateRepoOptions{ExistOK: tc.existOK})
			if (err != nil) != tc.wantErr || created || n != tc.tries {
				t.Fatalf("url %q created %v err %v after %d tries", u, created, err, n)
			}
			if err == nil && u == "" {
				t.Error("empty url")
			}
			if tc.wantErr && !errors.Is(err, ErrConflict) {
				t.Errorf("err %v, want ErrConflict", err)
			}
		})
	}
}
