package hubtest

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzParseCommit(f *testing.F) {
	seeds := []string{
		`{"key": "header", "value": {"summary": "Upload", "description": "", "parentCommit": "abcdef1"}}` + "\n" +
			`{"key": "file", "value": {"content": "aGVsbG8=", "path": "a/b.txt", "encoding": "base64"}}` + "\n" +
			`{"key": "lfsFile", "value": {"path": "m.safetensors", "algo": "sha256", "oid": "` + strings.Repeat("ab", 32) + `", "size": 12}}` + "\n",
		`{"key":"header","value":{"summary":"x"}}` + "\n" + `{"key":"deletedFile","value":{"path":"x"}}` + "\n" + `{"key":"deletedFolder","value":{"path":"d/"}}`,
		`{"key":"header","value":{"summary":"x"}}` + "\n" + `{"key":"lfsFile","value":{"path":"c","oid":"` + strings.Repeat("0", 64) + `"}}`,
		`{"key":"file","value":{"path":"a","content":""}}`,
		`{"key":"header","value":null}`,
		`{"key":"header","value":{"summary":"x"}}` + "\n" + `{"key":"file","value":{"path":"../a","content":"!!"}}`,
		"\n\n",
		`{"key":"header","value":{"summary":"x","parentCommit":"zz"}}`,
		`{"key":"header","value":{"summary":"u"}}` + "\n" + `{"key":"file","value":{"path":"u","content":"h\u00e9","encoding":"utf-8"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		stored := map[string][]byte{}
		put := func(b []byte) (string, error) {
			oid := blobOID(b)
			stored[oid] = append([]byte(nil), b...)
			return oid, nil
		}
		req, err := parseCommit(bytes.NewReader(data), put)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status < 400 || he.status > 599 || he.msg == "" {
				t.Fatalf("error %v is not an httpError with a 4xx/5xx status", err)
			}
			return
		}
		if strings.TrimSpace(req.Summary) == "" {
			t.Fatal("accepted an empty summary")
		}
		if req.ParentCommit != "" && !isHex(req.ParentCommit, 5, 40) {
			t.Fatalf("accepted parentCommit %q", req.ParentCommit)
		}
		for _, op := range req.Ops {
			if err := validateRepoPath(op.Path); err != nil {
				t.Fatalf("accepted path %q: %v", op.Path, err)
			}
			switch op.Kind {
			case "file":
				if b, ok := stored[op.BlobOID]; !ok || int64(len(b)) != op.Size || len(b) > MaxRegularFileSize {
					t.Fatalf("file %q: blob %s not stored with size %d", op.Path, op.BlobOID, op.Size)
				}
			case "lfsFile":
				if !isHex(op.LFSOID, 64, 64) || op.Size < 0 {
					t.Fatalf("lfsFile %+v", op)
				}
			case "deletedFile", "deletedFolder":
			default:
				t.Fatalf("op kind %q", op.Kind)
			}
		}
	})
}

func FuzzBatchRequest(f *testing.F) {
	oid := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"operation":"upload","transfers":["basic","multipart"],"objects":[{"oid":"` + oid + `","size":1}],"hash_algo":"sha256","ref":{"name":"main"}}`,
		`{"operation":"download","objects":[{"oid":"` + oid + `","size":0}],"hash_algo":"sha_256","ref":null}`,
		`{"operation":"upload","objects":[{"oid":"x","size":-1}],"ref":{"name":"refs/heads/dev"}}`,
		`{"operation":"upload","objects":[],"hash_algo":"md5"}`,
		`{"operation":"delete"}`,
		`{"objects":null}`,
		`[]`,
		`{"operation":"upload","objects":[{"oid":"` + oid + `","size":1e30}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, herr := decodeBatchRequest(data)
		if herr != nil {
			if herr.status < 400 || herr.status > 499 {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		if req.Operation != "upload" && req.Operation != "download" {
			t.Fatalf("operation %q", req.Operation)
		}
		if len(req.Objects) > MaxBatchObjects {
			t.Fatalf("%d objects", len(req.Objects))
		}
		if req.Ref != nil && strings.HasPrefix(req.Ref.Name, "refs/heads/") {
			t.Fatalf("ref %q not shortened", req.Ref.Name)
		}
	})
}

func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{"part-5xx=0.1,part-reset=0.05,rate-limit=0.05,commit-lost=0.1", "seed=3", "", ",,", "x=1", "part-5xx=1e-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFaults(s)
		if err != nil {
			return
		}
		back, err := ParseFaults(fl.String())
		if err != nil || back != fl {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, fl, fl.String(), back, err)
		}
	})
}

func FuzzGitPatterns(f *testing.F) {
	f.Add("*.log\n!keep.log\nbuild/\n/root\n**/x\n", "*.bin filter=lfs\na.bin -filter\n", "a/b/keep.log")
	f.Add("[", "[ filter=lfs", "[")
	f.Add("\\", "a/**/b filter=lfs", "a/x/y/b")
	f.Fuzz(func(t *testing.T, ignore, attrs, p string) {
		ig := parseGitignore(ignore)
		at := parseGitattributes(attrs)
		a, b := ig.ignored(p), at.isLFS(p)
		if a != ig.ignored(p) || b != at.isLFS(p) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(treeCursor{Commit: strings.Repeat("a", 40), Offset: 2}))
	f.Add("e30")
	f.Add("!!")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := decodeCursor(s)
		if err != nil {
			return
		}
		back, err := decodeCursor(encodeCursor(tc))
		if err != nil || back != tc || tc.Offset < 0 || !isHex(tc.Commit, 40, 40) {
			t.Fatalf("%q -> %+v -> %+v %v", s, tc, back, err)
		}
	})
}

// FuzzRoute feeds arbitrary methods and paths to the router: it must not panic, and a matched repository
// route must carry a valid repository name.
func FuzzRoute(f *testing.F) {
	for _, p := range []string{
		"/api/models/a/b/tree/refs/pr/1/x/y", "/api/models/a/b/tree/refs%2Fpr%2F1/x%2Fy", "/datasets/a/b/resolve/main/x",
		"/a/b.git/info/lfs/objects/batch", "/api/complete_multipart?uploadId=..%2F..", "/api/spaces/a/b/revision/v1",
		"/a/b/resolve/main/", "/%zz", "/api/models/a/b/branch/x/y", "//", "/api/models/../../x",
	} {
		f.Add("GET", p)
	}
	s, err := NewServer(Options{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, method, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		switch method {
		case "GET", "HEAD", "POST", "PUT", "DELETE":
		default:
			return
		}
		r, err := httpRequest(method, target)
		if err != nil {
			return
		}
		rt := s.route(r)
		if rt.h != nil && rt.key.NS != "" && (!validNamespace(rt.key.NS) || !validRepoName(rt.key.Name)) {
			t.Fatalf("%s %s routed to repo %+v", method, target, rt.key)
		}
	})
}

// httpRequest builds a server-side request, reporting bad targets as errors instead of panicking.
func httpRequest(method, target string) (r *http.Request, err error) {
	defer func() {
		if recover() != nil {
			r, err = nil, errors.New("bad target")
		}
	}()
	return httptest.NewRequest(method, target, nil), nil
}
