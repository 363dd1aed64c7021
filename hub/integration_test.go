package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/rs/zerolog"
)

// wTok is the write token of user "w" on the test Hub.
const wTok = "hf_w_integration_secret"

// Sizes for the test Hub: 64 KiB parts, multipart from 512 KiB.
const (
	testChunk     = 64 << 10
	testThreshold = 512 << 10
)

func newHubServer(t testing.TB, mod func(*hubtest.Options)) *hubtest.Server {
	t.Helper()
	o := hubtest.Options{
		Tokens:             []hubtest.Token{{Name: "w", Value: wTok, Write: true}, {Name: "r", Value: "hf_r_read"}},
		MinPartSize:        testChunk,
		ChunkSize:          testChunk,
		MultipartThreshold: testThreshold,
		PageSize:           3,
	}
	if mod != nil {
		mod(&o)
	}
	return hubtest.NewTestServer(t, o)
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testFiles writes files (path → size) under dir with random content and returns path → content.
func testFiles(t testing.TB, dir string, seed uint64, sizes map[string]int) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	i := uint64(0)
	keys := make([]string, 0, len(sizes))
	for p := range sizes {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		i++
		data := randomBytes(seed*1000+i, sizes[p])
		if strings.HasSuffix(p, ".json") {
			data = []byte(fmt.Sprintf(`{"seed":%d,"pad":%q}`, seed, strings.Repeat("x", sizes[p])))
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[p] = data
	}
	return out
}

// standardFiles: a regular JSON, an empty file, a basic-transfer LFS file and two multipart files (one an exact
// multiple of the chunk, one not).
func standardFiles(t testing.TB, dir string, seed uint64) map[string][]byte {
	return testFiles(t, dir, seed, map[string]int{
		"config.json":                      200,
		"empty.txt":                        0,
		"tokenizer/small.bin":              100 << 10,
		"model-00001-of-00002.safetensors": 10*testChunk + 12345,
		"model-00002-of-00002.safetensors": 12 * testChunk,
	})
}

func uploadFilesOf(dir string, files map[string][]byte) []UploadFile {
	var out []UploadFile
	for p := range files {
		out = append(out, UploadFile{PathInRepo: p, LocalPath: filepath.Join(dir, filepath.FromSlash(p))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PathInRepo < out[j].PathInRepo })
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readBack GETs a file through /resolve/ (following the redirect to storage) and returns its content.
func readBack(t testing.TB, c *Client, repo, rev, p string) []byte {
	t.Helper()
	r, err := c.send(context.Background(), call{method: "GET", url: c.endpoint + "/" + repo + "/resolve/" + escapeSegment(rev) + "/" + escapePath(p),
		auth: true, redirects: true})
	if err != nil {
		t.Fatalf("resolve %s: %v", p, err)
	}
	return r.body
}

// checkRepo asserts the repo at rev holds exactly want (plus .gitattributes), by sha256 of what resolve serves.
func checkRepo(t testing.TB, c *Client, repo, rev string, want map[string][]byte) {
	t.Helper()
	entries, err := c.ListTree(context.Background(), repo, rev, "", true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Type == "file" && e.Path != ".gitattributes" {
			got = append(got, e.Path)
		}
	}
	var wantPaths []string
	for p := range want {
		wantPaths = append(wantPaths, p)
	}
	sort.Strings(got)
	sort.Strings(wantPaths)
	if strings.Join(got, ",") != strings.Join(wantPaths, ",") {
		t.Fatalf("repo files = %v, want %v", got, wantPaths)
	}
	for p, data := range want {
		if back := readBack(t, c, repo, rev, p); sha(back) != sha(data) {
			t.Errorf("%s: content sha256 %s (%d bytes), want %s (%d bytes)", p, sha(back), len(back), sha(data), len(data))
		}
	}
}

func commitCount(t testing.TB, c *Client, repo, rev string) int {
	t.Helper()
	cs, err := c.ListCommits(context.Background(), repo, rev, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

func newRepo(t testing.TB, c *Client, repo string) {
	t.Helper()
	if _, created, err := c.CreateRepo(context.Background(), repo, CreateRepoOptions{}); err != nil || !created {
		t.Fatalf("create %s: created=%v err=%v", repo, created, err)
	}
}

func TestCommitEndToEnd(t *testing.T) {
	s := newHubServer(t, func(o *hubtest.Options) { o.VerifyAction = true })
	var progMu sync.Mutex
	phases := map[Phase]bool{}
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/e2e"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := standardFiles(t, dir, 1)
	before := commitCount(t, c, repo, "main")
	res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{
		Summary: "first", Description: "body text",
		Progress: func(ev ProgressEvent) {
			progMu.Lock()
			phases[ev.Phase] = true
			progMu.Unlock()
			if ev.Done > ev.Total || ev.Done < 0 {
				t.Errorf("progress %+v out of range", ev)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.NoOp || res.Uploaded != 3 || len(res.CommitOID) != 40 || !strings.Contains(res.CommitURL, res.CommitOID) {
		t.Errorf("result %+v", res)
	}
	if after := commitCount(t, c, repo, "main"); after != before+1 {
		t.Errorf("%d new commits, want 1", after-before)
	}
	checkRepo(t, c, repo, "main", files)
	for _, ph := range []Phase{PhaseHashing, PhaseUploading, PhaseCommitting} {
		if !phases[ph] {
			t.Errorf("no %s progress", ph)
		}
	}
	st := s.Stats()
	if st.TokenLeaks != 0 {
		t.Errorf("token leaks: %d", st.TokenLeaks)
	}
	if st.Requests[hubtest.OpVerify] != 3 {
		t.Errorf("verify calls %d, want 3", st.Requests[hubtest.OpVerify])
	}
	// The commit message carries the trailer.
	cs, _ := c.ListCommits(ctx, repo, "main", 1)
	if len(cs) != 1 || !strings.Contains(cs[0].Message, CommitTrailer+": ") || cs[0].Title != "first" {
		t.Errorf("head commit %+v", cs)
	}

	// The same files again: nothing to upload, no commit.
	res2, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res2.NoOp || res2.CommitOID != res.CommitOID || res2.Unchanged != len(files) {
		t.Errorf("second commit %+v, want a no-op at %s", res2, res.CommitOID)
	}
	if after := commitCount(t, c, repo, "main"); after != before+1 {
		t.Errorf("the no-op made a commit")
	}

	// One changed file, one deletion, and a file whose digest the caller already knows (no re-hash).
	changed := testFiles(t, dir, 2, map[string]int{"config.json": 300})
	known := randomBytes(99, 3*testChunk)
	knownPath := filepath.Join(t.TempDir(), "known.safetensors")
	os.WriteFile(knownPath, known, 0o644)
	up := []UploadFile{
		{PathInRepo: "config.json", LocalPath: filepath.Join(dir, "config.json")},
		{PathInRepo: "known.safetensors", LocalPath: knownPath, SHA256: sha(known), Size: int64(len(known)), Sample: known[:512]},
	}
	var hashed []string
	res3, err := c.Commit(ctx, repo, up, CommitOptions{DeleteFiles: []string{"empty.txt"}, Progress: func(ev ProgressEvent) {
		if ev.Phase == PhaseHashing && ev.Done == ev.Total {
			hashed = append(hashed, ev.File)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(hashed, ",") != "config.json" {
		t.Errorf("hashed %v; the file with a known digest must not be hashed", hashed)
	}
	if res3.Uploaded != 1 {
		t.Errorf("uploaded %d objects, want 1", res3.Uploaded)
	}
	want := map[string][]byte{}
	for p, d := range files {
		want[p] = d
	}
	delete(want, "empty.txt")
	want["config.json"] = changed["config.json"]
	want["known.safetensors"] = known
	checkRepo(t, c, repo, "main", want)
	if s.Stats().TokenLeaks != 0 {
		t.Error("token leak")
	}
}

func TestCommitBadKnownDigest(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	repo := "w/baddigest"
	newRepo(t, c, repo)
	p := filepath.Join(t.TempDir(), "m.safetensors")
	data := randomBytes(5, 3*testChunk)
	os.WriteFile(p, data, 0o644)
	_, err := c.Commit(context.Background(), repo, []UploadFile{{PathInRepo: "m.safetensors", LocalPath: p,
		SHA256: strings.Repeat("0", 64), Size: int64(len(data)), Sample: data[:512]}}, CommitOptions{})
	if err == nil {
		t.Fatal("a wrong sha256 was accepted")
	}
	if n := commitCount(t, c, repo, "main"); n != 1 {
		t.Errorf("%d commits, want only the initial one", n)
	}
	_, err = c.Commit(context.Background(), repo, []UploadFile{{PathInRepo: "m.safetensors", LocalPath: p,
		SHA256: sha(data), Size: int64(len(data)) + 1}}, CommitOptions{})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("wrong size: err = %v, want one naming the file", err)
	}
}

func TestRepoRoutes(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/routes"

	w, err := c.WhoAmI(ctx)
	if err != nil || w.Name != "w" {
		t.Fatalf("whoami %+v %v", w, err)
	}
	u, created, err := c.CreateRepo(ctx, repo, CreateRepoOptions{Private: true})
	if err != nil || !created || !strings.HasSuffix(u, "/w/routes") {
		t.Fatalf("create: %q %v %v", u, created, err)
	}
	if _, _, err := c.CreateRepo(ctx, repo, CreateRepoOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("second create without ExistOK: %v, want ErrConflict", err)
	}
	if _, created, err := c.CreateRepo(ctx, repo, CreateRepoOptions{ExistOK: true}); err != nil || created {
		t.Errorf("second create with ExistOK: created=%v err=%v", created, err)
	}
	mi, err := c.ModelInfo(ctx, repo, "")
	if err != nil || len(mi.SHA) != 40 || !mi.Private {
		t.Fatalf("info %+v %v", mi, err)
	}
	initial := mi.SHA

	dir := t.TempDir()
	files := testFiles(t, dir, 3, map[string]int{"a.json": 10, "b.json": 10, "c.json": 10, "d/e.json": 10, "d/f.json": 10, "w.safetensors": 1000})
	res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{Summary: "files"})
	if err != nil {
		t.Fatal(err)
	}
	head, err := c.RevisionHead(ctx, repo, "main")
	if err != nil || head != res.CommitOID {
		t.Fatalf("head %s %v, want %s", head, err, res.CommitOID)
	}
	mi, _ = c.ModelInfo(ctx, repo, "main")
	var lfsSib bool
	for _, sb := range mi.Siblings {
		if sb.RFilename == "w.safetensors" && sb.LFS != nil && sb.LFS.SHA256 == sha(files["w.safetensors"]) {
			lfsSib = true
		}
	}
	if mi.SHA != head || len(mi.Siblings) != 7 || !lfsSib {
		t.Errorf("info siblings %+v", mi.Siblings)
	}
	// Tree listing over several pages (page size 3).
	tree, err := c.ListTree(ctx, repo, "main", "", true)
	if err != nil || len(tree) != 8 { // 7 files + directory d
		t.Fatalf("tree %d entries %v", len(tree), err)
	}
	if st := s.Stats(); st.Requests[hubtest.OpTree] < 3 {
		t.Errorf("tree listing used %d pages, want ≥ 3", st.Requests[hubtest.OpTree])
	}
	sub, err := c.ListTree(ctx, repo, "main", "d", false)
	if err != nil || len(sub) != 2 {
		t.Errorf("subtree %v %v", sub, err)
	}
	if _, err := c.ListTree(ctx, repo, "nope", "", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("tree of a missing revision: %v", err)
	}

	// Branches.
	if err := c.CreateBranch(ctx, repo, "dev", BranchOptions{StartingPoint: initial}); err != nil {
		t.Fatal(err)
	}
	if h, _ := c.RevisionHead(ctx, repo, "dev"); h != initial {
		t.Errorf("dev at %s, want %s", h, initial)
	}
	if err := c.CreateBranch(ctx, repo, "dev", BranchOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("existing branch: %v", err)
	}
	if err := c.CreateBranch(ctx, repo, "dev", BranchOptions{ExistOK: true}); err != nil {
		t.Errorf("existing branch with ExistOK: %v", err)
	}
	if err := c.CreateBranch(ctx, repo, "feature/x-1", BranchOptions{}); err != nil {
		t.Errorf("branch with a slash and space: %v", err)
	}
	// Tags.
	if err := c.CreateTag(ctx, repo, "main", "v1.0", "release one"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTag(ctx, repo, "main", "v1.0", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("existing tag: %v", err)
	}
	refs, err := c.ListRefs(ctx, repo)
	if err != nil || !refs.HasBranch("dev") || !refs.HasBranch("feature/x-1") || !refs.HasTag("v1.0") {
		t.Fatalf("refs %+v %v", refs, err)
	}
	if h, _ := c.RevisionHead(ctx, repo, "v1.0"); h != head {
		t.Errorf("tag at %s, want %s", h, head)
	}
	if err := c.DeleteTag(ctx, repo, "v1.0"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteBranch(ctx, repo, "dev"); err != nil {
		t.Fatal(err)
	}
	refs, _ = c.ListRefs(ctx, repo)
	if refs.HasBranch("dev") || refs.HasTag("v1.0") {
		t.Errorf("deleted refs still listed: %+v", refs)
	}
	// Commits list: initial + ours, newest first.
	cs, err := c.ListCommits(ctx, repo, "main", 0)
	if err != nil || len(cs) != 2 || cs[0].ID != head || cs[1].ID != initial {
		t.Errorf("commits %+v %v", cs, err)
	}
	// Not found errors carry the code.
	_, err = c.ModelInfo(ctx, "w/missing", "")
	if !errors.Is(err, ErrRepoNotFound) {
		t.Errorf("missing repo: %v", err)
	}
	_, err = c.RevisionHead(ctx, repo, "nope")
	if !errors.Is(err, ErrRevisionNotFound) {
		t.Errorf("missing revision: %v", err)
	}
	// A read-only token may not write.
	rc := newTestClient(t, s.URL(), "hf_r_read", nil)
	if _, _, err := rc.CreateRepo(ctx, "r/x", CreateRepoOptions{}); !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrUnauthorized) {
		t.Errorf("read token create: %v", err)
	}
	bad := newTestClient(t, s.URL(), "hf_bogus", nil)
	if _, err := bad.WhoAmI(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bogus token whoami: %v", err)
	}
	// Delete.
	if err := c.DeleteRepo(ctx, repo, false); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRepo(ctx, repo, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if err := c.DeleteRepo(ctx, repo, true); err != nil {
		t.Errorf("delete missing with missingOK: %v", err)
	}
}

// faultCase is one row of the fault matrix.
type faultCase struct {
	name   string
	rules  []hubtest.FaultRule
	during func(s *hubtest.Server, c *Client) // run once when the first upload bytes flow
	check  func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration)
	// extraCommits is how many commits besides ours the case makes (a concurrent writer).
	extraCommits int
}

func TestFaultMatrix(t *testing.T) {
	cases := []faultCase{
		{name: "part 5xx", rules: []hubtest.FaultRule{{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3}}},
		{name: "part 500 on one part repeatedly", rules: []hubtest.FaultRule{{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 500, Part: 2, Count: 4}}},
		{name: "part connection reset", rules: []hubtest.FaultRule{{Op: hubtest.OpPartPut, Kind: hubtest.FaultReset, AfterBytes: 10 << 10, Count: 3}}},
		{name: "basic PUT 5xx and reset", rules: []hubtest.FaultRule{
			{Op: hubtest.OpBasicPut, Kind: hubtest.FaultStatus, Status: 502},
			{Op: hubtest.OpBasicPut, Kind: hubtest.FaultReset, AfterBytes: 1000}}},
		{name: "429 with Retry-After on batch and preupload", rules: []hubtest.FaultRule{
			{Op: hubtest.OpBatch, Kind: hubtest.FaultRateLimit}, {Op: hubtest.OpPreupload, Kind: hubtest.FaultRateLimit}},
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				n := 0
				for _, w := range waits {
					if w >= time.Second {
						n++
					}
				}
				if n < 2 {
					t.Errorf("waits %v: want two of ≥ 1s (Retry-After honoured)", waits)
				}
			}},
		{name: "completion 5xx", rules: []hubtest.FaultRule{{Op: hubtest.OpComplete, Kind: hubtest.FaultStatus, Status: 500, Count: 2}}},
		{name: "completion refused", rules: []hubtest.FaultRule{{Op: hubtest.OpComplete, Kind: hubtest.FaultStatus, Status: 400}},
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if st := s.Stats(); st.UploadsStarted != 3 {
					t.Errorf("uploads started %d, want 3 (one re-batched)", st.UploadsStarted)
				}
			}},
		{name: "URLs expire mid-upload",
			during: func(s *hubtest.Server, c *Client) { s.InjectFault(hubtest.FaultRule{Kind: hubtest.FaultExpireURLs}) },
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if st := s.Stats(); st.Statuses[string(hubtest.OpPartPut)+" 403"]+st.Statuses[string(hubtest.OpBasicPut)+" 403"] == 0 {
					t.Errorf("no 403 seen: %v", st.Statuses)
				}
			}},
		{name: "commit 412 (branch moved)",
			during: func(s *hubtest.Server, c *Client) {
				dir, _ := os.MkdirTemp("", "other")
				defer os.RemoveAll(dir)
				os.WriteFile(filepath.Join(dir, "other.txt"), []byte("someone else"), 0o644)
				other, _ := New(Options{Endpoint: s.URL(), Token: wTok, Retry: TestFastRetries()})
				if _, err := other.Commit(context.Background(), "w/faults", []UploadFile{{PathInRepo: "other.txt", LocalPath: filepath.Join(dir, "other.txt")}}, CommitOptions{}); err != nil {
					panic(err)
				}
			},
			extraCommits: 1,
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if st := s.Stats(); st.Statuses[string(hubtest.OpCommit)+" 412"] != 1 {
					t.Errorf("commit statuses %v: want one 412", st.Statuses)
				}
			}},
		{name: "commit response lost (504)", rules: []hubtest.FaultRule{{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse, Status: 504}},
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if !res.Recovered {
					t.Error("not reported as recovered")
				}
			}},
		{name: "commit connection cut after applying", rules: []hubtest.FaultRule{{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse}},
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if !res.Recovered {
					t.Error("not reported as recovered")
				}
			}},
		{name: "commit 503 without applying", rules: []hubtest.FaultRule{{Op: hubtest.OpCommit, Kind: hubtest.FaultStatus, Status: 503}},
			check: func(t *testing.T, s *hubtest.Server, res *CommitResult, waits []time.Duration) {
				if res.Recovered {
					t.Error("reported recovered though the first send was not applied")
				}
			}},
		{name: "commit 429", rules: []hubtest.FaultRule{{Op: hubtest.OpCommit, Kind: hubtest.FaultRateLimit}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newHubServer(t, nil)
			var rec recordedWaits
			c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Retry = rec.policy() })
			ctx := context.Background()
			repo := "w/faults"
			newRepo(t, c, repo)
			before := commitCount(t, c, repo, "main")
			dir := t.TempDir()
			files := standardFiles(t, dir, uint64(10+i))
			for _, r := range tc.rules {
				s.InjectFault(r)
			}
			var once sync.Once
			res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{Progress: func(ev ProgressEvent) {
				if ev.Phase == PhaseUploading && ev.Done > 0 && tc.during != nil {
					once.Do(func() { tc.during(s, c) })
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			if n := s.PendingFaults(); n != 0 {
				t.Errorf("%d fault rules never fired", n)
			}
			if got := commitCount(t, c, repo, "main") - before; got != 1+tc.extraCommits {
				t.Errorf("%d new commits, want %d", got, 1+tc.extraCommits)
			}
			if tc.extraCommits > 0 {
				files["other.txt"] = []byte("someone else")
			}
			checkRepo(t, c, repo, "main", files)
			if st := s.Stats(); st.TokenLeaks != 0 {
				t.Errorf("token leaks %d", st.TokenLeaks)
			}
			if tc.check != nil {
				tc.check(t, s, res, rec.get())
			}
		})
	}
}

func TestBatchObjectErrorNamesTheFile(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	repo := "w/batcherr"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := standardFiles(t, dir, 20)
	oid := sha(files["tokenizer/small.bin"])
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpBatch, Kind: hubtest.FaultBatchError, OID: oid, Status: 422, Message: "object too weird"})
	_, err := c.Commit(context.Background(), repo, uploadFilesOf(dir, files), CommitOptions{})
	if err == nil || !strings.Contains(err.Error(), "tokenizer/small.bin") || !strings.Contains(err.Error(), "object too weird") {
		t.Fatalf("err = %v, want one naming tokenizer/small.bin and the message", err)
	}
	if strings.Contains(err.Error(), wTok) {
		t.Error("error contains the token")
	}
	if n := commitCount(t, c, repo, "main"); n != 1 {
		t.Errorf("%d commits after a failed push, want 1", n)
	}
	// The fault is spent: the same push goes through, exactly one new commit.
	if _, err := c.Commit(context.Background(), repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := commitCount(t, c, repo, "main"); n != 2 {
		t.Errorf("%d commits, want 2", n)
	}
	checkRepo(t, c, repo, "main", files)
}

func TestProbabilisticFaults(t *testing.T) {
	faults, err := hubtest.ParseFaults("part-5xx=0.2,part-reset=0.1,put-5xx=0.2,rate-limit=0.05,commit-lost=0.5,complete-5xx=0.2,seed=3")
	if err != nil {
		t.Fatal(err)
	}
	s := newHubServer(t, func(o *hubtest.Options) { o.Faults = faults })
	c := newTestClient(t, s.URL(), wTok, func(o *Options) {
		p := TestFastRetries()
		p.MaxAttempts = 10
		o.Retry = p
	})
	repo := "w/chaos"
	newRepo(t, c, repo)
	want := map[string][]byte{}
	for round := range 3 {
		dir := t.TempDir()
		files := standardFiles(t, dir, uint64(30+round))
		before := commitCount(t, c, repo, "main")
		if _, err := c.Commit(context.Background(), repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := commitCount(t, c, repo, "main") - before; got != 1 {
			t.Errorf("round %d: %d new commits", round, got)
		}
		for p, d := range files {
			want[p] = d
		}
	}
	checkRepo(t, c, repo, "main", want)
	st := s.Stats()
	if len(st.Faults) == 0 {
		t.Error("no fault fired")
	}
	t.Logf("faults fired: %v", st.Faults)
}

func TestCreatePRAndBranchCommit(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/pr"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := testFiles(t, dir, 40, map[string]int{"x.json": 5, "m.safetensors": 3 * testChunk})
	res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{CreatePR: true, Summary: "a PR"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.PullRequestURL, "/discussions/") {
		t.Errorf("PR url %q", res.PullRequestURL)
	}
	num := res.PullRequestURL[strings.LastIndex(res.PullRequestURL, "/")+1:]
	checkRepo(t, c, repo, "refs/pr/"+num, files)
	if commitCount(t, c, repo, "main") != 1 {
		t.Error("main moved")
	}
	// A commit to another branch.
	if err := c.CreateBranch(ctx, repo, "dev", BranchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{Revision: "dev"}); err != nil {
		t.Fatal(err)
	}
	checkRepo(t, c, repo, "dev", files)
	// A PR whose commit answer is lost is found on its PR ref.
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse, Status: 504})
	files2 := testFiles(t, dir, 41, map[string]int{"x.json": 6})
	res2, err := c.Commit(ctx, repo, uploadFilesOf(dir, files2), CommitOptions{CreatePR: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Recovered || res2.PullRequestURL == "" || res2.PullRequestURL == res.PullRequestURL {
		t.Errorf("lost PR commit: %+v", res2)
	}
	refs, _ := c.ListRefs(ctx, repo)
	if len(refs.PullRequests) != 2 {
		t.Errorf("%d pull requests, want 2", len(refs.PullRequests))
	}
}

// recordingTransport records, per request, the host and whether it carried Authorization.
type recordingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %s auth=%v", req.Method, req.URL.Host, req.Header.Get("Authorization") != ""))
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

func TestTokenSafetyFullPush(t *testing.T) {
	s := newHubServer(t, func(o *hubtest.Options) { o.VerifyAction = true })
	rt := &recordingTransport{base: newTransport()}
	var logs bytes.Buffer
	var logMu sync.Mutex
	c := newTestClient(t, s.URL(), wTok, func(o *Options) {
		o.HTTPClient = &http.Client{Transport: rt}
		o.Logger = zerolog.New(lockedWriter{&logs, &logMu}).Level(zerolog.TraceLevel)
	})
	ctx := context.Background()
	repo := "w/safety"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := standardFiles(t, dir, 50)
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503})
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse, Status: 504})
	if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	storageHost := strings.TrimPrefix(s.StorageURL(), "http://")
	apiHost := strings.TrimPrefix(s.URL(), "http://")
	rt.mu.Lock()
	var storageReqs, apiAuth int
	for _, line := range rt.seen {
		if strings.Contains(line, " "+storageHost+" ") {
			storageReqs++
			if strings.HasSuffix(line, "auth=true") {
				t.Errorf("storage request with Authorization: %s", line)
			}
		}
		if strings.Contains(line, " "+apiHost+" ") && strings.HasSuffix(line, "auth=true") {
			apiAuth++
		}
	}
	rt.mu.Unlock()
	if storageReqs == 0 || apiAuth == 0 {
		t.Errorf("storage requests %d, authenticated API requests %d: the check saw nothing", storageReqs, apiAuth)
	}
	if st := s.Stats(); st.TokenLeaks != 0 {
		t.Errorf("server saw %d token leaks", st.TokenLeaks)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if !strings.Contains(text, "hub request") || !strings.Contains(text, "REDACTED") {
		t.Errorf("trace log has no request lines (len %d)", len(text))
	}
	if strings.Contains(text, wTok) {
		t.Error("trace log contains the token")
	}
	if strings.Contains(text, "X-Signature=") || strings.Contains(text, "signature=") {
		t.Error("trace log contains a presigned query")
	}
	// Errors from failing calls do not carry the token either.
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpPreupload, Kind: hubtest.FaultStatus, Status: 400, Message: "nope"})
	_, err := c.Commit(ctx, repo, uploadFilesOf(dir, testFiles(t, dir, 51, map[string]int{"config.json": 9})), CommitOptions{})
	if err == nil || strings.Contains(err.Error(), wTok) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err = %v", err)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestDownloadCacheLayoutAndResume(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/dl"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := standardFiles(t, dir, 60)
	files["dup/copy.safetensors"] = files["model-00002-of-00002.safetensors"]
	os.MkdirAll(filepath.Join(dir, "dup"), 0o755)
	os.WriteFile(filepath.Join(dir, "dup", "copy.safetensors"), files["dup/copy.safetensors"], 0o644)
	res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	// A partial blob left by an earlier run: the first 1000 bytes of a multipart file.
	big := files["model-00001-of-00002.safetensors"]
	blobs := filepath.Join(RepoCacheDir(cache, repo), "blobs")
	os.MkdirAll(blobs, 0o755)
	os.WriteFile(filepath.Join(blobs, sha(big)+".incomplete"), big[:1000], 0o644)

	snap, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if snap != filepath.Join(RepoCacheDir(cache, repo), "snapshots", res.CommitOID) {
		t.Errorf("snapshot dir %s", snap)
	}
	for p, data := range files {
		full := filepath.Join(snap, filepath.FromSlash(p))
		got, err := os.ReadFile(full)
		if err != nil || sha(got) != sha(data) {
			t.Errorf("%s: %v, sha %s want %s", p, err, sha(got), sha(data))
		}
		link, err := os.Readlink(full)
		if err != nil || filepath.IsAbs(link) || !strings.Contains(link, "blobs") {
			t.Errorf("%s: link %q %v, want a relative link into blobs/", p, link, err)
		}
	}
	ref, _ := os.ReadFile(filepath.Join(RepoCacheDir(cache, repo), "refs", "main"))
	if string(ref) != res.CommitOID {
		t.Errorf("refs/main = %q", ref)
	}
	// The partial blob was resumed: the storage served the rest, not the whole file again.
	got, err := ResolveCachedSnapshot(cache, repo, "main")
	if err != nil || got != snap {
		t.Errorf("ResolveCachedSnapshot = %q %v", got, err)
	}
	if got, err := ResolveCachedSnapshot(cache, repo, res.CommitOID); err != nil || got != snap {
		t.Errorf("ResolveCachedSnapshot(commit) = %q %v", got, err)
	}
	if _, err := ResolveCachedSnapshot(cache, repo, "dev"); !errors.Is(err, ErrNotCached) {
		t.Errorf("uncached ref: %v", err)
	}
	if _, err := ResolveCachedSnapshot(cache, "w/other", "main"); !errors.Is(err, ErrNotCached) {
		t.Errorf("uncached repo: %v", err)
	}
	// A second download fetches nothing.
	gets := s.Stats().Requests[hubtest.OpStorageGet] + s.Stats().Requests[hubtest.OpResolve]
	if _, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	if after := s.Stats().Requests[hubtest.OpStorageGet] + s.Stats().Requests[hubtest.OpResolve]; after != gets {
		t.Errorf("second download made %d file requests", after-gets)
	}
	// local-dir mode.
	local := t.TempDir()
	out, err := c.Download(ctx, repo, "main", DownloadOptions{LocalDir: local})
	if err != nil || out != local {
		t.Fatal(out, err)
	}
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(local, filepath.FromSlash(p)))
		if err != nil || sha(got) != sha(data) {
			t.Errorf("local %s: %v", p, err)
		}
		if st, _ := os.Lstat(filepath.Join(local, filepath.FromSlash(p))); st.Mode()&os.ModeSymlink != 0 {
			t.Errorf("local %s is a symlink", p)
		}
	}
}

func TestDownloadRejectsCorruptContent(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/corrupt"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := testFiles(t, dir, 70, map[string]int{"m.safetensors": 3 * testChunk})
	if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	// A wrong partial blob (same length prefix, different bytes): the hash check must catch it.
	data := files["m.safetensors"]
	blobs := filepath.Join(RepoCacheDir(cache, repo), "blobs")
	os.MkdirAll(blobs, 0o755)
	bad := append([]byte(nil), data[:5000]...)
	bad[10] ^= 0xff
	os.WriteFile(filepath.Join(blobs, sha(data)+".incomplete"), bad, 0o644)
	_, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), "m.safetensors") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(blobs, sha(data))); err == nil {
		t.Error("a corrupt blob was moved into place")
	}
	// Retrying starts clean and succeeds.
	if _, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
}

func (r *recordingTransport) CloseIdleConnections() {
	if ci, ok := r.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TestManyFilesAreBatched: more than 256 paths need two preupload calls and two LFS batch calls.
func TestManyFilesAreBatched(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.ParallelFiles = 8 })
	repo := "w/many"
	newRepo(t, c, repo)
	dir := t.TempDir()
	sizes := map[string]int{}
	for i := range 300 {
		sizes[fmt.Sprintf("shards/%03d.bin", i)] = 64 + i
	}
	files := testFiles(t, dir, 80, sizes)
	res, err := c.Commit(context.Background(), repo, uploadFilesOf(dir, files), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 300 {
		t.Errorf("uploaded %d", res.Uploaded)
	}
	st := s.Stats()
	if st.Requests[hubtest.OpPreupload] != 2 || st.Requests[hubtest.OpBatch] != 2 || st.Requests[hubtest.OpCommit] != 1 {
		t.Errorf("preupload %d, batch %d, commit %d calls; want 2, 2, 1",
			st.Requests[hubtest.OpPreupload], st.Requests[hubtest.OpBatch], st.Requests[hubtest.OpCommit])
	}
	checkRepo(t, c, repo, "main", files)
}
