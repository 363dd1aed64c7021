package hubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestartPersistence closes a server and starts a new one on the same data directory: repositories,
// refs, commits, objects and an unfinished multipart upload (with its stored parts) are all still there.
func TestRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.DataDir = dir
	a, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ea := &env{t: t, s: a, hc: noRedirectClient()}
	ea.createRepo(aliceTok, "alice", "keep", true)
	model := randomBytes(100, 300<<10)
	oid := ea.upload(aliceTok, "alice/keep", model)
	r := ea.commitLines(aliceTok, "alice/keep", "main", "", header("weights", ""),
		lfsLine("model.safetensors", oid, int64(len(model))), fileLine("README.md", []byte("# keep")))
	var co struct{ CommitOid string }
	r.json(t, &co)
	ea.api("POST", "/api/models/alice/keep/tag/main", aliceTok, map[string]any{"tag": "v1"}, 200)
	ea.api("POST", "/api/models/alice/keep/branch/dev", aliceTok, nil, 200)
	ea.commitLines(aliceTok, "alice/keep", "main", "?create_pr=1", header("pr", ""))
	// An upload in flight: parts 1 and 2 stored before the restart.
	second := randomBytes(101, 4*(64<<10)+5)
	oid2 := sha256hex(second)
	ans := ea.batch(aliceTok, "alice/keep", "upload", obj(oid2, len(second)))
	up := ans.Objects[0].Actions["upload"]
	chunk := 64 << 10
	etags := map[int]string{}
	for n := 1; n <= 2; n++ {
		r := ea.do("PUT", up.Header[partName(n)], "", bytes.NewReader(second[(n-1)*chunk:n*chunk]))
		etags[n] = r.Header.Get("ETag")
	}
	var refsA, infoA json.RawMessage
	refsA = ea.api("GET", "/api/models/alice/keep/refs?include_prs=1", aliceTok, nil, 200).body
	infoA = ea.api("GET", "/api/models/alice/keep?blobs=true", aliceTok, nil, 200).body
	oldAPI, oldStorage := a.URL(), a.StorageURL()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "repos", "models", "alice", "keep", "repo.json")); err != nil {
		t.Fatalf("state not on disk: %v", err)
	}

	b := NewTestServer(t, opts)
	eb := &env{t: t, s: b, hc: ea.hc}
	if got := eb.api("GET", "/api/models/alice/keep/refs?include_prs=1", aliceTok, nil, 200).body; string(got) != string(refsA) {
		t.Errorf("refs after restart:\n%s\nbefore:\n%s", got, refsA)
	}
	if got := eb.api("GET", "/api/models/alice/keep?blobs=true", aliceTok, nil, 200).body; string(got) != string(infoA) {
		t.Errorf("info after restart:\n%s\nbefore:\n%s", got, infoA)
	}
	eb.api("GET", "/api/models/alice/keep", bobTok, nil, 404) // still private
	loc := eb.do("GET", "/alice/keep/resolve/v1/model.safetensors", aliceTok, nil).Header.Get("Location")
	if r := eb.do("GET", loc, "", nil); !bytes.Equal(r.body, model) {
		t.Error("LFS content differs after restart")
	}
	if r := eb.do("GET", "/alice/keep/resolve/"+co.CommitOid+"/README.md", aliceTok, nil); string(r.body) != "# keep" {
		t.Errorf("regular file after restart: %q", r.body)
	}
	// Finish the upload with the URLs issued before the restart (hosts moved to the new listeners).
	move := func(u string) string {
		return strings.Replace(strings.Replace(u, oldStorage, b.StorageURL(), 1), oldAPI, b.URL(), 1)
	}
	parts := []map[string]any{{"partNumber": 1, "etag": etags[1]}, {"partNumber": 2, "etag": etags[2]}}
	for n := 3; n <= 5; n++ {
		r := eb.do("PUT", move(up.Header[partName(n)]), "", bytes.NewReader(second[(n-1)*chunk:min(n*chunk, len(second))]))
		if r.StatusCode != 200 {
			t.Fatalf("part %d after restart: %d %s", n, r.StatusCode, r.body)
		}
		parts = append(parts, map[string]any{"partNumber": n, "etag": r.Header.Get("ETag")})
	}
	if r := eb.do("POST", move(up.Href), "", completeBody(oid2, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("completion after restart: %d %s", r.StatusCode, r.body)
	}
	st := b.Stats()
	if st.Parts[partKey(oid2, 1)] != 0 || st.Parts[partKey(oid2, 2)] != 0 || st.Parts[partKey(oid2, 3)] != 1 {
		t.Errorf("parts sent to the new server: %v", st.Parts)
	}
	if size, ok := b.HasObject(oid2); !ok || size != int64(len(second)) {
		t.Error("object not stored")
	}
	// Commits keep working on top of the old history.
	if r := eb.commitLines(aliceTok, "alice/keep", "main", "", header("after restart", co.CommitOid), lfsLine("second.bin", oid2, int64(len(second)))); r.StatusCode != 200 {
		t.Fatalf("commit after restart: %d %s", r.StatusCode, r.body)
	}
	// A server on an empty temporary directory removes it on Close.
	c, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := c.DataDir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s left behind: %v", tmp, err)
	}
}

func partName(n int) string { return fmt.Sprintf("%05d", n) }

func TestBadDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("not hex"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Errorf("bad secret: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := NewServer(Options{DataDir: f}); err == nil {
		t.Error("a file as data dir")
	}
	if _, err := NewServer(Options{Tokens: []Token{{Name: "a", Value: "x"}, {Name: "b", Value: "x"}}}); err == nil {
		t.Error("duplicate token values")
	}
	if _, err := NewServer(Options{Tokens: []Token{{Name: "a b", Value: "x"}}}); err == nil {
		t.Error("invalid user name")
	}
}
