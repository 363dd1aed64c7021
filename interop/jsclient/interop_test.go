package jsclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
)

const aliceTok = "hf_alice_interop_write"

// nodeOrSkip returns the node binary; without node or the installed client the test is skipped, or fails
// under CI=true (CI installs both in .ci/run).
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node is not installed"
	default:
		if _, err := os.Stat(filepath.Join("node_modules", "@huggingface", "hub", "package.json")); err != nil {
			missing = "@huggingface/hub is not installed (run npm ci in interop/jsclient)"
		}
	}
	if missing == "" {
		return node
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s", missing)
	}
	t.Skip(missing)
	return ""
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeFiles writes path → content under dir.
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// driveSteps is the steps list every driver prints: one entry per client call, with its error.
type driveSteps struct {
	Steps []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"steps"`
}

func (d *driveSteps) steps() *driveSteps { return d }

// runDriver runs a driver script with node and env added to the environment, decodes the JSON it prints last
// into res and fails t for every step that failed.
func runDriver(ctx context.Context, t *testing.T, node, script string, env []string, res interface{ steps() *driveSteps }) {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), res); err != nil {
		t.Fatalf("%s output: %v\n%s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
	for _, s := range res.steps().Steps {
		if !s.OK {
			t.Errorf("JS step %q failed: %s", s.Name, s.Error)
		}
	}
}

type driveResult struct {
	driveSteps
	Whoami  string   `json:"whoami"`
	Commits []string `json:"commits"`
	JSFiles map[string]struct {
		Size int64
		LFS  *string
	} `json:"jsFiles"`
	DevHasFile     bool              `json:"devHasFile"`
	MainHasDevFile bool              `json:"mainHasDevFile"`
	JSDownloads    map[string]string `json:"jsDownloads"`
	GoFiles        map[string]string `json:"goFiles"`
	GoTagFiles     map[string]string `json:"goTagFiles"`
	Listed         []string          `json:"listed"`
	PRURL          string            `json:"prUrl"`
	Info           struct {
		ID string `json:"id"`
	} `json:"info"`
}

// The official JavaScript client against devhub: create a repository, upload small, LFS and multipart LFS
// files, branch, list commits and files, download; then hubsync downloads what it uploaded and it downloads
// what hubsync pushed (a branch and a tag), byte for byte.
func TestJSClientInterop(t *testing.T) {
	node := nodeOrSkip(t)
	srv := hubtest.NewTestServer(t, hubtest.Options{
		Tokens:             []hubtest.Token{{Name: "alice", Value: aliceTok, Write: true}},
		MinPartSize:        64 << 10,
		ChunkSize:          64 << 10,
		MultipartThreshold: 256 << 10,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := hub.New(hub.Options{Endpoint: srv.URL(), Token: aliceTok, Retry: hub.TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)

	// hubsync pushes a repository: a tag v1, then main moves on.
	goV1 := map[string][]byte{
		"config.json":       []byte(`{"model_type":"llama","v":1}`),
		"README.md":         []byte("---\nlicense: mit\n---\n# pushed by hubsync\n"),
		"model.safetensors": randomBytes(1, 700<<10),
		"sub/small.bin":     randomBytes(2, 50<<10),
	}
	goDir := t.TempDir()
	writeFiles(t, goDir, goV1)
	if _, _, err := c.CreateRepo(ctx, "alice/go", hub.CreateRepoOptions{}); err != nil {
		t.Fatal(err)
	}
	push := func(summary string) {
		t.Helper()
		files, err := hub.ListFolder(goDir, hub.FolderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Commit(ctx, "alice/go", files, hub.CommitOptions{Summary: summary}); err != nil {
			t.Fatal(err)
		}
	}
	push("v1")
	if err := c.CreateTag(ctx, "alice/go", "main", "v1", "first"); err != nil {
		t.Fatal(err)
	}
	goMain := map[string][]byte{}
	for p, b := range goV1 {
		goMain[p] = b
	}
	goMain["config.json"] = []byte(`{"model_type":"llama","v":2}`)
	writeFiles(t, goDir, goMain)
	push("v2")

	// What the JavaScript client uploads.
	jsFiles := map[string][]byte{
		"config.json":     []byte(`{"from":"js"}`),
		"README.md":       []byte("---\nlibrary_name: transformers\n---\n# uploaded by @huggingface/hub\n"),
		"small.bin":       randomBytes(3, 100<<10), // LFS, basic transfer
		"weights/big.bin": randomBytes(4, 900<<10), // LFS, multipart
		"notes/a.txt":     []byte("plain text\n"),
	}
	jsDir := t.TempDir()
	writeFiles(t, jsDir, jsFiles)
	before := srv.Stats()

	var res driveResult
	runDriver(ctx, t, node, "drive.mjs", []string{"HF_ENDPOINT=" + srv.URL(), "HF_TOKEN=" + aliceTok, "JS_REPO=alice/js",
		"GO_REPO=alice/go", "GO_TAG=v1", "FILES_DIR=" + jsDir}, &res)
	if res.Whoami != "alice" {
		t.Errorf("whoAmI = %q", res.Whoami)
	}
	if res.Info.ID != "alice/js" {
		t.Errorf("modelInfo id = %q", res.Info.ID)
	}
	if !res.DevHasFile || res.MainHasDevFile {
		t.Errorf("fileExists: dev %v (want true), main %v (want false)", res.DevHasFile, res.MainHasDevFile)
	}
	if len(res.Commits) < 3 || res.Commits[0] != "dev only" || !slices.Contains(res.Commits, "upload from @huggingface/hub") {
		t.Errorf("listCommits(dev) = %q", res.Commits)
	}
	for p, b := range jsFiles {
		if res.JSDownloads[p] != sha(b) {
			t.Errorf("JS download of its own %s: sha256 %s, want %s", p, res.JSDownloads[p], sha(b))
		}
		f, ok := res.JSFiles[p]
		if !ok || f.Size != int64(len(b)) {
			t.Errorf("listFiles %s = %+v, want size %d", p, f, len(b))
		}
		if wantLFS := strings.HasSuffix(p, ".bin"); wantLFS != (f.LFS != nil) || (wantLFS && *f.LFS != sha(b)) {
			t.Errorf("listFiles %s: lfs %v, want LFS=%v", p, f.LFS, wantLFS)
		}
	}
	if after := srv.Stats(); after.UploadsStarted <= before.UploadsStarted {
		t.Errorf("the JavaScript client made no multipart upload (uploads started %d → %d)", before.UploadsStarted, after.UploadsStarted)
	}
	if strings.Join(res.Listed, " ") != "alice/go alice/js" {
		t.Errorf("listModels(owner alice) = %q", res.Listed)
	}
	if want := srv.URL() + "/alice/js/discussions/1"; res.PRURL != want {
		t.Errorf("pullRequestUrl = %q, want %q", res.PRURL, want)
	}
	checkShas := func(what string, got map[string]string, want map[string][]byte) {
		t.Helper()
		for p, b := range want {
			if got[p] != sha(b) {
				t.Errorf("%s: %s sha256 %s, want %s", what, p, got[p], sha(b))
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok && p != ".gitattributes" {
				t.Errorf("%s: unexpected file %s", what, p)
			}
		}
	}
	checkShas("JS download of hubsync's main", res.GoFiles, goMain)
	checkShas("JS download of hubsync's tag v1", res.GoTagFiles, goV1)

	// hubsync downloads what the JavaScript client uploaded, on main and on dev.
	cache := t.TempDir()
	snap, err := c.Download(ctx, "alice/js", "main", hub.DownloadOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range jsFiles {
		got, err := os.ReadFile(filepath.Join(snap, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("hubsync download of %s: %v, %d bytes (want %d, equal)", p, err, len(got), len(b))
		}
	}
	dev, err := c.Download(ctx, "alice/js", "dev", hub.DownloadOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dev, "dev.txt")); err != nil || string(got) != "only on dev\n" {
		t.Errorf("dev.txt on dev: %q %v", got, err)
	}
	// The JavaScript client's pull request, as huggingface_hub's get_repo_discussions sees it, and its files.
	pr, err := c.Download(ctx, "alice/js", "refs/pr/1", hub.DownloadOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(pr, "proposal.txt")); err != nil || string(got) != "proposed\n" {
		t.Errorf("proposal.txt on refs/pr/1: %q %v", got, err)
	}
	resp, err := http.Get(srv.URL() + "/api/models/alice/js/discussions?type=pull_request")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Count       int `json:"count"`
		Discussions []struct {
			Num    int    `json:"num"`
			Title  string `json:"title"`
			Status string `json:"status"`
		} `json:"discussions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if page.Count != 1 || page.Discussions[0].Title != "Proposed change" || page.Discussions[0].Status != "open" {
		t.Errorf("pull requests listed: %+v", page)
	}
}

type xetDriveResult struct {
	driveSteps
	JSDownloads map[string]xetDownload `json:"jsDownloads"`
	GoFiles     map[string]xetDownload `json:"goFiles"`
}

type xetDownload struct {
	SHA256 string `json:"sha256"`
	Xet    bool   `json:"xet"`
}

// The official JavaScript client against devhub --xet: it uploads through Xet (xorbs and shards reach the CAS,
// no LFS PUT), then hubsync downloads its files through Xet byte for byte; and files hubsync pushed through its
// Xet upload adapter are downloaded by the JavaScript client through Xet and verified (sha256).
func TestJSClientXetInterop(t *testing.T) {
	node := nodeOrSkip(t)
	srv := hubtest.NewTestServer(t, hubtest.Options{
		Tokens: []hubtest.Token{{Name: "alice", Value: aliceTok, Write: true}},
		Xet:    true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := hub.New(hub.Options{Endpoint: srv.URL(), Token: aliceTok, Retry: hub.TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)

	// Go side: hubsync pushes through its Xet upload adapter.
	goFiles := map[string][]byte{
		"model.safetensors": append(randomBytes(11, 2<<20), make([]byte, 1<<20)...),
		"adapter.bin":       randomBytes(12, 300<<10),
	}
	xc, err := hub.New(hub.Options{Endpoint: srv.URL(), Token: aliceTok, Retry: hub.TestFastRetries(), Xet: hub.XetOn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(xc.CloseIdleConnections)
	if _, _, err := xc.CreateRepo(ctx, "alice/go", hub.CreateRepoOptions{}); err != nil {
		t.Fatal(err)
	}
	goDir := t.TempDir()
	writeFiles(t, goDir, goFiles)
	files, err := hub.ListFolder(goDir, hub.FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xc.Commit(ctx, "alice/go", files, hub.CommitOptions{Summary: "xet files"}); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Xet.XorbsStored == 0 || st.Requests[hubtest.OpBasicPut]+st.Requests[hubtest.OpPartPut] != 0 {
		t.Fatalf("hubsync's push did not go through Xet: %+v, LFS PUTs %d", st.Xet, st.Requests[hubtest.OpBasicPut]+st.Requests[hubtest.OpPartPut])
	}

	jsFiles := map[string][]byte{
		"config.json":        []byte(`{"from":"js","xet":true}`),
		"weights/big.bin":    append(randomBytes(13, 3<<20), make([]byte, 1<<20)...),
		"weights/second.bin": append(randomBytes(13, 3<<20)[:1<<20], randomBytes(14, 200<<10)...), // shares chunks
	}
	jsDir := t.TempDir()
	writeFiles(t, jsDir, jsFiles)
	before := srv.Stats()
	var res xetDriveResult
	runDriver(ctx, t, node, "drive_xet.mjs", []string{"HF_ENDPOINT=" + srv.URL(), "HF_TOKEN=" + aliceTok, "JS_REPO=alice/js",
		"GO_REPO=alice/go", "FILES_DIR=" + jsDir}, &res)
	after := srv.Stats()
	if after.Xet.XorbsStored == before.Xet.XorbsStored || after.Xet.ShardsStored == before.Xet.ShardsStored {
		t.Errorf("the JavaScript client stored no xorb or shard: %+v", after.Xet)
	}
	if n := after.Requests[hubtest.OpBasicPut] + after.Requests[hubtest.OpPartPut] - before.Requests[hubtest.OpBasicPut] - before.Requests[hubtest.OpPartPut]; n != 0 {
		t.Errorf("the JavaScript client made %d LFS PUTs; want Xet only", n)
	}
	if after.TokenLeaks != 0 {
		t.Errorf("token leaks: %d", after.TokenLeaks)
	}
	t.Logf("JS Xet upload: %d xorbs, %d chunks stored, %d chunks deduplicated, %d CAS bytes received",
		after.Xet.XorbsStored-before.Xet.XorbsStored, after.Xet.ChunksStored-before.Xet.ChunksStored,
		after.Xet.ChunksDeduplicated-before.Xet.ChunksDeduplicated, after.Xet.BytesReceived-before.Xet.BytesReceived)
	check := func(what string, got map[string]xetDownload, want map[string][]byte) {
		t.Helper()
		for p, b := range want {
			d := got[p]
			if d.SHA256 != sha(b) {
				t.Errorf("%s: %s sha256 %s, want %s", what, p, d.SHA256, sha(b))
			}
			if lfs := strings.HasSuffix(p, ".bin") || strings.HasSuffix(p, ".safetensors"); lfs && !d.Xet {
				t.Errorf("%s: %s was not offered through Xet", what, p)
			}
		}
	}
	check("JS download of its own Xet upload", res.JSDownloads, jsFiles)
	check("JS download of hubsync's Xet push", res.GoFiles, goFiles)

	// hubsync downloads the JavaScript client's Xet upload through Xet.
	mid := srv.Stats()
	snap, err := c.Download(ctx, "alice/js", "main", hub.DownloadOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range jsFiles {
		got, err := os.ReadFile(filepath.Join(snap, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("hubsync download of %s: %v, %d bytes (want %d, equal)", p, err, len(got), len(b))
		}
	}
	end := srv.Stats()
	if end.Xet.Reconstructions-mid.Xet.Reconstructions != 2 || end.Requests[hubtest.OpStorageGet] != mid.Requests[hubtest.OpStorageGet] {
		t.Errorf("hubsync download: %d reconstructions (want 2), %d plain storage GETs (want 0)",
			end.Xet.Reconstructions-mid.Xet.Reconstructions, end.Requests[hubtest.OpStorageGet]-mid.Requests[hubtest.OpStorageGet])
	}
}
