package hubtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestUploadFlow runs the whole publish protocol with plain HTTP calls: preupload, batch, basic PUT and
// multipart parts, completion, commit, then downloads (with Range), tree, paths-info, info and commits.
func TestUploadFlow(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "flow", false)
	small := randomBytes(10, 100<<10)                        // basic (below the 256 KiB threshold)
	big := randomBytes(11, 4*(64<<10)+12345)                 // multipart: 5 parts of 64 KiB, the last one short
	cfg := []byte(`{"model_type":"llama","hidden_size":64}`) // regular
	files := map[string][]byte{"small.safetensors": small, "model.safetensors": big, "config.json": cfg}

	// 1. Preupload.
	var pre struct {
		Files []struct {
			Path, UploadMode string
			ShouldIgnore     bool
		}
	}
	var pf []map[string]any
	for _, p := range []string{"small.safetensors", "model.safetensors", "config.json"} {
		b := files[p]
		pf = append(pf, map[string]any{"path": p, "sample": base64.StdEncoding.EncodeToString(b[:min(512, len(b))]), "size": len(b)})
	}
	e.api("POST", "/api/models/alice/flow/preupload/main", aliceTok, map[string]any{"files": pf}, 200).json(t, &pre)
	modes := map[string]string{}
	for _, f := range pre.Files {
		modes[f.Path] = f.UploadMode
	}
	if modes["small.safetensors"] != "lfs" || modes["model.safetensors"] != "lfs" || modes["config.json"] != "regular" {
		t.Fatalf("modes %v", modes)
	}

	// 2. Batch: one basic, one multipart.
	smallOID, bigOID := sha256hex(small), sha256hex(big)
	a := e.batch(aliceTok, "alice/flow", "upload", obj(smallOID, len(small)), obj(bigOID, len(big)))
	if a.Transfer != "multipart" || len(a.Objects) != 2 {
		t.Fatalf("batch answer %+v", a)
	}
	basic, multi := a.Objects[0].Actions["upload"], a.Objects[1].Actions["upload"]
	if !strings.HasPrefix(basic.Href, e.s.StorageURL()+"/") || basic.Header["chunk_size"] != "" {
		t.Errorf("basic action %+v, want a storage URL without chunk_size", basic)
	}
	if !strings.HasPrefix(multi.Href, e.s.URL()+"/api/complete_multipart?") {
		t.Errorf("completion href %q is not on the API host", multi.Href)
	}
	if e.s.URL() == e.s.StorageURL() {
		t.Fatal("storage must listen on its own host:port")
	}
	if multi.Header["chunk_size"] != strconv.Itoa(64<<10) {
		t.Errorf("chunk_size %q", multi.Header["chunk_size"])
	}
	for n := 1; n <= 5; n++ {
		if u := multi.Header[fmt.Sprintf("%05d", n)]; !strings.HasPrefix(u, e.s.StorageURL()+"/") {
			t.Errorf("part %d URL %q", n, u)
		}
	}
	if len(multi.Header) != 6 {
		t.Errorf("want chunk_size + 5 part URLs, got %v", multi.Header)
	}

	// 3. Transfers: the basic PUT, then the parts in reverse order, then the completion.
	if r := e.do("PUT", basic.Href, "", bytes.NewReader(small)); r.StatusCode != 200 || r.Header.Get("ETag") == "" {
		t.Fatalf("basic PUT: %d %s", r.StatusCode, r.body)
	}
	etags := make([]string, 6)
	for n := 5; n >= 1; n-- {
		lo, hi := (n-1)*(64<<10), min(n*(64<<10), len(big))
		r := e.do("PUT", multi.Header[fmt.Sprintf("%05d", n)], "", bytes.NewReader(big[lo:hi]))
		if r.StatusCode != 200 {
			t.Fatalf("part %d: %d %s", n, r.StatusCode, r.body)
		}
		etags[n] = r.Header.Get("ETag")
		md5q, _ := md5File(writeTemp(t, big[lo:hi]))
		if etags[n] != string(md5q) {
			t.Errorf("part %d ETag %s, want quoted MD5 %s", n, etags[n], md5q)
		}
	}
	if _, ok := e.s.HasObject(bigOID); ok {
		t.Fatal("object stored before completion")
	}
	var parts []map[string]any
	for n := 1; n <= 5; n++ {
		parts = append(parts, map[string]any{"partNumber": n, "etag": etags[n]})
	}
	cb, _ := json.Marshal(map[string]any{"oid": bigOID, "parts": parts})
	if r := e.do("POST", multi.Href, "", bytes.NewReader(cb), "Content-Type", lfsMediaType, "Accept", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete: %d %s", r.StatusCode, r.body)
	}
	if size, ok := e.s.HasObject(bigOID); !ok || size != int64(len(big)) {
		t.Fatalf("object after completion: %d %v", size, ok)
	}
	st := e.s.Stats()
	if st.Objects[bigOID] != int64(len(big))+int64(len(cb)) || st.Objects[smallOID] != int64(len(small)) || st.ObjectsStored != 2 {
		t.Errorf("stats objects %v stored %d", st.Objects, st.ObjectsStored)
	}
	for n := 1; n <= 5; n++ {
		if st.Parts[partKey(bigOID, n)] != 1 || st.PartsStored[partKey(bigOID, n)] != 1 {
			t.Errorf("part %d counted %d/%d times", n, st.Parts[partKey(bigOID, n)], st.PartsStored[partKey(bigOID, n)])
		}
	}
	// A second batch for stored objects has no actions.
	a = e.batch(aliceTok, "alice/flow", "upload", obj(smallOID, len(small)), obj(bigOID, len(big)))
	for _, o := range a.Objects {
		if o.Actions != nil || o.Error != nil {
			t.Errorf("stored object %s: %+v", o.OID, o)
		}
	}

	// 4. Commit.
	r := e.commitLines(aliceTok, "alice/flow", "main", "", header("Upload model", ""),
		fileLine("config.json", cfg), lfsLine("small.safetensors", smallOID, int64(len(small))),
		lfsLine("model.safetensors", bigOID, int64(len(big))))
	if r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	var co struct{ CommitOid string }
	r.json(t, &co)
	// A preupload now reports the oids, so a client would skip every file.
	e.api("POST", "/api/models/alice/flow/preupload/main", aliceTok, map[string]any{"files": pf}, 200)

	// 5. Resolve: regular file served with its blob id; LFS redirected to the storage host.
	r = e.do("HEAD", "/alice/flow/resolve/main/config.json", "", nil)
	if r.StatusCode != 200 || r.Header.Get("X-Repo-Commit") != co.CommitOid || r.Header.Get("ETag") != `"`+blobOID(cfg)+`"` ||
		r.Header.Get("Content-Length") != strconv.Itoa(len(cfg)) || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD regular: %d %v", r.StatusCode, r.Header)
	}
	r = e.do("GET", "/alice/flow/resolve/main/config.json", "", nil, "Range", "bytes=2-5")
	if r.StatusCode != 206 || string(r.body) != string(cfg[2:6]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 2-5/%d", len(cfg)) {
		t.Errorf("range regular: %d %q %v", r.StatusCode, r.body, r.Header)
	}
	r = e.do("HEAD", "/alice/flow/resolve/main/model.safetensors", aliceTok, nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != 302 || !strings.HasPrefix(loc, e.s.StorageURL()+"/") || r.Header.Get("X-Linked-Etag") != `"`+bigOID+`"` ||
		r.Header.Get("X-Linked-Size") != strconv.Itoa(len(big)) || r.Header.Get("X-Repo-Commit") != co.CommitOid {
		t.Errorf("HEAD LFS: %d %v", r.StatusCode, r.Header)
	}
	// Following the redirect without the token works, with ranges; with the token it is a leak.
	r = e.do("GET", loc, "", nil)
	if r.StatusCode != 200 || !bytes.Equal(r.body, big) {
		t.Errorf("download: %d, %d bytes", r.StatusCode, len(r.body))
	}
	r = e.do("GET", loc, "", nil, "Range", fmt.Sprintf("bytes=%d-", len(big)-10))
	if r.StatusCode != 206 || !bytes.Equal(r.body, big[len(big)-10:]) {
		t.Errorf("ranged download: %d %d", r.StatusCode, len(r.body))
	}
	r = e.do("GET", loc, "", nil, "Range", fmt.Sprintf("bytes=%d-", len(big)+10))
	if r.StatusCode != 416 {
		t.Errorf("unsatisfiable range: %d", r.StatusCode)
	}
	if r := e.do("GET", loc, aliceTok, nil); r.StatusCode != 400 || r.Header.Get("X-Error-Message") != leakMessage {
		t.Errorf("download with a token: %d %q", r.StatusCode, r.Header.Get("X-Error-Message"))
	}
	// Go's client keeps Authorization on a redirect to the same host name on another port: the server sees it.
	leaky := &http.Client{}
	req, _ := http.NewRequest("GET", e.s.URL()+"/alice/flow/resolve/main/model.safetensors", nil)
	req.Header.Set("Authorization", "Bearer "+aliceTok)
	if res, err := leaky.Do(req); err != nil || res.StatusCode != 400 {
		t.Errorf("naive redirect following: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if got := e.s.Stats().TokenLeaks; got != 2 {
		t.Errorf("token_leaks %d, want 2", got)
	}
	// The raw route gives the pointer file.
	r = e.do("GET", "/alice/flow/raw/main/model.safetensors", "", nil)
	if r.StatusCode != 200 || string(r.body) != string(lfsPointer(bigOID, int64(len(big)))) {
		t.Errorf("raw pointer: %d %q", r.StatusCode, r.body)
	}
	// The download action of the batch API.
	a = e.batch(aliceTok, "alice/flow", "download", obj(bigOID, len(big)), obj(strings.Repeat("0", 64), 1))
	if d := a.Objects[0].Actions["download"]; !strings.HasPrefix(d.Href, e.s.StorageURL()) || a.Objects[1].Error == nil || a.Objects[1].Error.Code != 404 {
		t.Errorf("download batch %+v", a)
	} else if r := e.do("GET", d.Href, "", nil); !bytes.Equal(r.body, big) {
		t.Errorf("download action body differs")
	}

	// 6. Info, tree, paths-info, commits.
	var info struct {
		ID, SHA  string
		Private  bool
		Siblings []struct {
			Rfilename string
			Size      int64
			BlobID    string
			LFS       *struct {
				Size        int64
				SHA256      string
				PointerSize int64
			}
		}
	}
	e.api("GET", "/api/models/alice/flow?blobs=true", "", nil, 200).json(t, &info)
	if info.ID != "alice/flow" || info.SHA != co.CommitOid || len(info.Siblings) != 4 {
		t.Fatalf("info %+v", info)
	}
	for _, s := range info.Siblings {
		if s.Rfilename == "model.safetensors" && (s.LFS == nil || s.LFS.SHA256 != bigOID || s.LFS.Size != int64(len(big)) ||
			s.LFS.PointerSize != int64(len(lfsPointer(bigOID, int64(len(big))))) || s.BlobID != blobOID(lfsPointer(bigOID, int64(len(big))))) {
			t.Errorf("sibling %+v", s)
		}
		if s.Rfilename == "config.json" && (s.LFS != nil || s.Size != int64(len(cfg)) || s.BlobID != blobOID(cfg)) {
			t.Errorf("sibling %+v", s)
		}
	}
	var lean struct{ Siblings []map[string]any }
	e.api("GET", "/api/models/alice/flow/revision/main", "", nil, 200).json(t, &lean)
	if len(lean.Siblings[0]) != 1 {
		t.Errorf("without blobs=true siblings carry only rfilename: %v", lean.Siblings[0])
	}
	all := e.listAll("/api/models/alice/flow/tree/main")
	if len(all) != 4 {
		t.Errorf("tree: %d entries", len(all))
	}
	var pi []map[string]any
	form := url.Values{"paths": {"config.json", "model.safetensors", "missing"}, "expand": {"True"}}
	r = e.do("POST", "/api/models/alice/flow/paths-info/main", "", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	r.json(t, &pi)
	if len(pi) != 2 || pi[1]["lfs"] == nil || pi[0]["lastCommit"].(map[string]any)["id"] != co.CommitOid {
		t.Errorf("paths-info form: %s", r.body)
	}
	var pj []map[string]any
	e.api("POST", "/api/models/alice/flow/paths-info/main", "", map[string]any{"paths": []string{"config.json"}}, 200).json(t, &pj)
	if len(pj) != 1 || pj[0]["oid"] != blobOID(cfg) || pj[0]["lastCommit"] != nil {
		t.Errorf("paths-info JSON: %v", pj)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := t.TempDir() + "/f"
	if err := writeAtomic(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTreeAndCommitsPagination(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	var paths []string
	for i := range 5 {
		p := fmt.Sprintf("d%d/f.txt", i%2)
		if i >= 2 {
			p = fmt.Sprintf("d%d/sub/f%d.txt", i%2, i)
		}
		paths = append(paths, p)
		e.commitLines(aliceTok, "alice/m", "main", "", header(fmt.Sprintf("c%d", i), ""), fileLine(p, []byte{byte(i)}))
	}
	var commits []map[string]any
	r := e.api("GET", "/api/models/alice/m/commits/main", aliceTok, nil, 200)
	r.json(t, &commits)
	if r.Header.Get("X-Total-Count") != "6" || len(commits) != 2 || commits[0]["title"] != "c4" || r.Header.Get("Link") == "" {
		t.Errorf("commits page 1: %v %v", r.Header, commits)
	}
	all := e.listAll("/api/models/alice/m/commits/main")
	if len(all) != 6 || all[5]["title"] != "initial commit" {
		t.Errorf("all commits: %d", len(all))
	}
	tests := []struct {
		url  string
		want []string
	}{
		{"/api/models/alice/m/tree/main", []string{".gitattributes", "d0", "d1"}},
		{"/api/models/alice/m/tree/main/d0", []string{"d0/f.txt", "d0/sub"}},
		{"/api/models/alice/m/tree/main/d0%2Fsub", []string{"d0/sub/f2.txt", "d0/sub/f4.txt"}},
		{"/api/models/alice/m/tree/main/d0/sub", []string{"d0/sub/f2.txt", "d0/sub/f4.txt"}},
		{"/api/models/alice/m/tree/main?recursive=true", []string{".gitattributes", "d0", "d0/f.txt", "d0/sub", "d0/sub/f2.txt", "d0/sub/f4.txt", "d1", "d1/f.txt", "d1/sub", "d1/sub/f3.txt"}},
		{"/api/models/alice/m/tree/refs%2Fheads%2Fmain/d1?recursive=1&expand=true", []string{"d1/f.txt", "d1/sub", "d1/sub/f3.txt"}},
	}
	for _, tt := range tests {
		var got []string
		for _, x := range e.listAll(tt.url) {
			got = append(got, x["path"].(string))
			if strings.Contains(tt.url, "expand=true") {
				lc, _ := x["lastCommit"].(map[string]any)
				if lc == nil || lc["id"] == "" || lc["title"] == "" {
					t.Errorf("%s: %v lacks lastCommit", tt.url, x)
				}
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s:\n got %v\nwant %v", tt.url, got, tt.want)
		}
	}
	// lastCommit is the commit that last changed the entry.
	var pi []map[string]any
	e.api("POST", "/api/models/alice/m/paths-info/main", aliceTok, map[string]any{"paths": []string{"d1/f.txt", "d0"}, "expand": true}, 200).json(t, &pi)
	if pi[0]["lastCommit"].(map[string]any)["title"] != "c1" || pi[1]["lastCommit"].(map[string]any)["title"] != "c4" || pi[1]["type"] != "directory" {
		t.Errorf("lastCommit: %v", pi)
	}
	// Directory oids are git tree ids.
	if cm := e.commitOf(t, "alice/m", "main"); pi[1]["oid"] != cm.trees["d0"] {
		t.Errorf("directory oid %v, want %s", pi[1]["oid"], cm.trees["d0"])
	}
	// A cursor pins its commit: pages stay consistent when the branch moves between them.
	r = e.api("GET", "/api/models/alice/m/tree/main?recursive=true", aliceTok, nil, 200)
	next := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Link"), "<"), `>; rel="next"`)
	e.commitLines(aliceTok, "alice/m", "main", "", header("move", ""), map[string]any{"key": "deletedFolder", "value": map[string]any{"path": "d0"}})
	var page []map[string]any
	e.api("GET", strings.TrimPrefix(next, e.s.URL()), aliceTok, nil, 200).json(t, &page)
	if len(page) != 2 || page[0]["path"] != "d0/f.txt" {
		t.Errorf("page 2 after the branch moved: %v", page)
	}
	errs := []struct {
		url  string
		want int
		code string
	}{
		{"/api/models/alice/m/tree/main/nope", 404, "EntryNotFound"},
		{"/api/models/alice/m/tree/main/.gitattributes", 404, "EntryNotFound"},
		{"/api/models/alice/m/tree/nope", 404, "RevisionNotFound"},
		{"/api/models/alice/m/tree/refs%252Fpr%252F2", 404, "RevisionNotFound"},
		{"/api/models/alice/m/tree/main?cursor=garbage", 400, ""},
		{"/api/models/alice/m/tree/main?cursor=" + encodeCursor(treeCursor{Commit: strings.Repeat("a", 40)}), 400, ""},
		{"/api/models/alice/m/commits/main?p=x", 400, ""},
		{"/api/models/alice/m/commits/nope", 404, "RevisionNotFound"},
		{"/api/models/alice/m/revision/nope", 404, "RevisionNotFound"},
		{"/alice/m/resolve/main/nope.txt", 404, "EntryNotFound"},
		{"/alice/m/resolve/nope/a.txt", 404, "RevisionNotFound"},
		{"/alice/none/resolve/main/a.txt", 404, "RepoNotFound"},
	}
	for _, tt := range errs {
		r := e.do("GET", tt.url, aliceTok, nil)
		if r.StatusCode != tt.want || r.Header.Get("X-Error-Code") != tt.code {
			t.Errorf("%s: %d %q, want %d %q", tt.url, r.StatusCode, r.Header.Get("X-Error-Code"), tt.want, tt.code)
		}
	}
	// EntryNotFound on resolve still names the commit.
	if r := e.do("HEAD", "/alice/m/resolve/main/nope.txt", "", nil); r.Header.Get("X-Repo-Commit") == "" {
		t.Error("EntryNotFound without X-Repo-Commit")
	}
	// A full commit id is a revision.
	old := all[5]["id"].(string)
	if r := e.do("GET", "/alice/m/resolve/"+old+"/.gitattributes", "", nil); r.StatusCode != 200 || r.Header.Get("X-Repo-Commit") != old {
		t.Errorf("resolve by commit id: %d", r.StatusCode)
	}
	// Info expand= returns only the named fields.
	var sub map[string]any
	e.api("GET", "/api/models/alice/m?expand=xetEnabled", aliceTok, nil, 200).json(t, &sub)
	if len(sub) != 3 || sub["xetEnabled"] != false || sub["id"] != "alice/m" {
		t.Errorf("expand answer %v", sub)
	}
}

// commitOf returns the commit a revision resolves to, from the server's state.
func (e *env) commitOf(t *testing.T, repo, rev string) *commit {
	ns, name, _ := strings.Cut(repo, "/")
	h, err := e.s.store.repo(repoKey{"model", ns, name})
	if err != nil || h == nil {
		t.Fatalf("repo %s: %v", repo, err)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	res, _, _ := h.resolve(rev)
	c, err := h.commit(res.id)
	if err != nil || c == nil {
		t.Fatalf("commit of %s: %v", rev, err)
	}
	c.index()
	return c
}

func TestBatchRequests(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	e.api("POST", "/api/repos/create", aliceTok, map[string]any{"name": "d", "type": "dataset"}, 200)
	stored := randomBytes(20, 10)
	storedOID := e.upload(aliceTok, "alice/m", stored)
	newOID := sha256hex([]byte("new"))
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+aliceTok))
	tests := []struct {
		name   string
		path   string
		auth   string
		ctype  string
		body   string
		want   int
		check  func(t *testing.T, a batchAnswer)
		errMsg string
	}{
		{"bearer, sha256, short ref", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","transfers":["basic","multipart"],"objects":[{"oid":"` + newOID + `","size":3}],"hash_algo":"sha256","ref":{"name":"main"}}`, 200,
			func(t *testing.T, a batchAnswer) {
				if a.Transfer != "basic" || a.Objects[0].Actions["upload"].Href == "" {
					t.Errorf("%+v", a)
				}
			}, ""},
		{"basic auth, sha_256, long ref, charset", "/alice/m.git/info/lfs/objects/batch", basicAuth, lfsMediaType + "; charset=utf-8",
			`{"operation":"upload","objects":[{"oid":"` + newOID + `","size":3}],"hash_algo":"sha_256","ref":{"name":"refs/heads/main"}}`, 200, nil, ""},
		{"no hash_algo, null ref, plain JSON", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, "application/json",
			`{"operation":"upload","objects":[{"oid":"` + newOID + `","size":3}],"ref":null}`, 200, nil, ""},
		{"no ref, no content type", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, "",
			`{"operation":"upload","objects":[{"oid":"` + newOID + `","size":3}]}`, 200, nil, ""},
		{"stored object has no actions", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[{"oid":"` + storedOID + `","size":10}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				if a.Objects[0].Actions != nil || a.Objects[0].Error != nil || a.Objects[0].Size != 10 {
					t.Errorf("%+v", a.Objects[0])
				}
			}, ""},
		{"stored object with another size", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[{"oid":"` + storedOID + `","size":11}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				if a.Objects[0].Error == nil || a.Objects[0].Error.Code != 422 {
					t.Errorf("%+v", a.Objects[0])
				}
			}, ""},
		{"bad oid and size are per-object errors", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[{"oid":"xyz","size":3},{"oid":"` + strings.ToUpper(newOID) + `","size":3},{"oid":"` + newOID + `","size":-1}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				for _, o := range a.Objects {
					if o.Error == nil || o.Error.Code != 422 || o.Actions != nil || o.OID == "" {
						t.Errorf("%+v", o)
					}
				}
			}, ""},
		{"basic only: no multipart even for big objects", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","transfers":["basic"],"objects":[{"oid":"` + newOID + `","size":100000000}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				if a.Transfer != "basic" || a.Objects[0].Actions["upload"].Header["chunk_size"] != "" {
					t.Errorf("%+v", a)
				}
			}, ""},
		{"multipart: chunk_size keeps ≤ 10000 parts", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","transfers":["basic","multipart"],"objects":[{"oid":"` + newOID + `","size":1000000000}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				h := a.Objects[0].Actions["upload"].Header
				if a.Transfer != "multipart" || h["chunk_size"] != "100000" || len(h) != 10001 || h["10000"] == "" {
					t.Errorf("transfer %s, chunk_size %s, %d keys", a.Transfer, h["chunk_size"], len(h))
				}
			}, ""},
		{"dataset prefix", "/datasets/alice/d.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[{"oid":"` + newOID + `","size":3}]}`, 200, nil, ""},
		{"download of a missing object", "/alice/m.git/info/lfs/objects/batch", "", lfsMediaType,
			`{"operation":"download","objects":[{"oid":"` + newOID + `","size":3}]}`, 200,
			func(t *testing.T, a batchAnswer) {
				if a.Objects[0].Error == nil || a.Objects[0].Error.Code != 404 {
					t.Errorf("%+v", a.Objects[0])
				}
			}, ""},
		{"unknown hash algo", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[],"hash_algo":"md5"}`, 409, nil, "Unsupported hash algorithm"},
		{"unknown operation", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"delete","objects":[]}`, 422, nil, "operation"},
		{"bad JSON", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType, `{`, 400, nil, ""},
		{"wrong content type", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, "text/plain", `{}`, 415, nil, ""},
		{"too many objects", "/alice/m.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[` + strings.TrimSuffix(strings.Repeat(`{"oid":"`+newOID+`","size":3},`, 1001), ",") + `]}`, 413, nil, ""},
		{"upload needs a token", "/alice/m.git/info/lfs/objects/batch", "", lfsMediaType,
			`{"operation":"upload","objects":[]}`, 401, nil, ""},
		{"upload needs a write token", "/alice/m.git/info/lfs/objects/batch", "Bearer " + readerTok, lfsMediaType,
			`{"operation":"upload","objects":[]}`, 403, nil, ""},
		{"bad Basic password", "/alice/m.git/info/lfs/objects/batch", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:nope")), lfsMediaType,
			`{"operation":"upload","objects":[]}`, 401, nil, ""},
		{"unknown repo", "/alice/none.git/info/lfs/objects/batch", "Bearer " + aliceTok, lfsMediaType,
			`{"operation":"upload","objects":[]}`, 404, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := []string{"Accept", lfsMediaType}
			if tt.auth != "" {
				hdr = append(hdr, "Authorization", tt.auth)
			}
			if tt.ctype != "" {
				hdr = append(hdr, "Content-Type", tt.ctype)
			}
			r := e.do("POST", tt.path, "", strings.NewReader(tt.body), hdr...)
			if r.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.want, r.body)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, lfsMediaType) {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.want != 200 {
				var eb struct{ Message, Error string }
				r.json(t, &eb)
				if eb.Message == "" || !strings.Contains(eb.Message, tt.errMsg) {
					t.Errorf("error body %s, want a message with %q", r.body, tt.errMsg)
				}
				return
			}
			var a batchAnswer
			r.json(t, &a)
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func TestVerifyAction(t *testing.T) {
	opts := testOptions()
	opts.VerifyAction = true
	e := newEnv(t, opts)
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(5, 1000)
	oid := sha256hex(data)
	a := e.batch(aliceTok, "alice/m", "upload", obj(oid, len(data)))
	v, ok := a.Objects[0].Actions["verify"]
	if !ok || !strings.HasPrefix(v.Href, e.s.URL()+"/alice/m.git/info/lfs/objects/verify") {
		t.Fatalf("verify action %+v", a.Objects[0].Actions)
	}
	body := func(size int) io.Reader {
		b, _ := json.Marshal(map[string]any{"oid": oid, "size": size})
		return bytes.NewReader(b)
	}
	if r := e.do("POST", v.Href, aliceTok, body(len(data)), "Content-Type", "application/json"); r.StatusCode != 404 {
		t.Errorf("verify before upload: %d", r.StatusCode)
	}
	e.upload(aliceTok, "alice/m", data)
	if r := e.do("POST", v.Href, aliceTok, body(len(data)), "Content-Type", "application/json"); r.StatusCode != 200 {
		t.Errorf("verify after upload: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("POST", v.Href, aliceTok, body(1), "Content-Type", "application/json"); r.StatusCode != 422 {
		t.Errorf("verify with a wrong size: %d", r.StatusCode)
	}
}
