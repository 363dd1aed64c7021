package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/hub"
)

// hubcliIsolate points every credential and state location at temp dirs and disables the OS keyring.
func hubcliIsolate(t testing.TB) string {
	t.Helper()
	home := t.TempDir()
	for k, v := range map[string]string{
		"HOME": home, "HF_HOME": filepath.Join(home, "hf"), "XDG_STATE_HOME": filepath.Join(home, "state"),
		"XDG_RUNTIME_DIR": home, "DBUS_SESSION_BUS_ADDRESS": "", "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "",
		"CREDENTIALS_DIRECTORY": "", "STATE_DIRECTORY": "", "HF_TOKEN_PATH": "", "HF_HUB_CACHE": "", "HF_ENDPOINT": "",
	} {
		t.Setenv(k, v)
	}
	return home
}

func hubcliRun(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPushAndDownloadCLI(t *testing.T) {
	home := hubcliIsolate(t)
	s := hubcliServer(t)
	dir := t.TempDir()
	files := map[string][]byte{
		"config.json":              []byte(`{"a":1}`),
		"model.safetensors":        bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 100_000),
		"sub/tokenizer.json":       []byte(`{"t":2}`),
		"sub/scratch.tmp":          []byte("excluded"),
		".git/HEAD":                []byte("ref: refs/heads/main"),
		".cache/huggingface/x.bin": []byte("never"),
	}
	for p, d := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, d, 0o644)
	}
	base := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	code, out, errb := hubcliRun(t, append(base, "push", dir, "--repo", "w/cli", "--revision", "dev", "--tag", "v1",
		"--exclude", "**/*.tmp", "--private", "--commit-message", "first upload", "--parallel-parts", "3")...)
	if code != 0 {
		t.Fatalf("push exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	url := strings.TrimSpace(out)
	if !strings.Contains(url, "/w/cli/commit/") {
		t.Errorf("stdout %q, want the commit URL", out)
	}
	if strings.Contains(out+errb, hubcliToken) {
		t.Error("the token was printed")
	}
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	tree, err := c.ListTree(ctx, "w/cli", "dev", "", true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tree {
		if e.Type == "file" {
			got = append(got, e.Path)
		}
	}
	if strings.Join(got, ",") != ".gitattributes,config.json,model.safetensors,sub/tokenizer.json" {
		t.Errorf("repo files %v", got)
	}
	refs, _ := c.ListRefs(ctx, "w/cli")
	if !refs.HasTag("v1") || !refs.HasBranch("dev") {
		t.Errorf("refs %+v", refs)
	}
	mi, _ := c.ModelInfo(ctx, "w/cli", "")
	if mi == nil || !mi.Private {
		t.Errorf("repo not private: %+v", mi)
	}
	if _, err := os.Stat(filepath.Join(home, "state", "hubsync", "uploads.db")); err != nil {
		t.Errorf("journal not at the XDG state path: %v", err)
	}

	// A second push changes nothing and exits 0.
	code, out2, errb := hubcliRun(t, append(base, "push", dir, "--repo", "w/cli", "--revision", "dev", "--exclude", "**/*.tmp")...)
	if code != 0 || strings.TrimSpace(out2) != url {
		t.Errorf("second push: exit %d, stdout %q (want %q)\n%s", code, out2, url, errb)
	}

	// Download into the cache named by HF_HUB_CACHE and into a local dir.
	cache := filepath.Join(home, "cache")
	t.Setenv("HF_HUB_CACHE", cache)
	code, out, errb = hubcliRun(t, append(base, "download", "w/cli", "--revision", "dev")...)
	if code != 0 {
		t.Fatalf("download exit %d: %s", code, errb)
	}
	snap := strings.TrimSpace(out)
	if !strings.HasPrefix(snap, filepath.Join(cache, "models--w--cli", "snapshots")) {
		t.Errorf("snapshot dir %q", snap)
	}
	for _, p := range []string{"config.json", "model.safetensors", "sub/tokenizer.json"} {
		b, err := os.ReadFile(filepath.Join(snap, p))
		if err != nil || sha256.Sum256(b) != sha256.Sum256(files[p]) {
			t.Errorf("%s: %v", p, err)
		}
	}
	local := filepath.Join(home, "local")
	code, out, errb = hubcliRun(t, append(base, "download", "w/cli", "--revision", "v1", "--local-dir", local)...)
	if code != 0 || strings.TrimSpace(out) != local {
		t.Fatalf("download --local-dir: exit %d %q %s", code, out, errb)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "model.safetensors")); !bytes.Equal(b, files["model.safetensors"]) {
		t.Error("local-dir content differs")
	}
}

// TestPushTagTwice: a second `push --tag v1` of the same content is a no-op that keeps the tag (it used to exit 1
// on the tag's 409), and a tag on another commit is still refused.
func TestPushTagTwice(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	push := append(base, "push", dir, "--repo", "w/twice", "--tag", "v1")
	code, out1, errb := hubcliRun(t, push...)
	if code != 0 {
		t.Fatalf("first push: exit %d\n%s", code, errb)
	}
	code, out2, errb := hubcliRun(t, push...)
	if code != 0 || out2 != out1 {
		t.Fatalf("second push: exit %d, stdout %q (want %q)\n%s", code, out2, out1, errb)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errb = hubcliRun(t, push...); code != 1 || !strings.Contains(errb, "already exists") {
		t.Errorf("push of new content with an existing tag: exit %d, want 1 naming the tag\n%s", code, errb)
	}
}

func TestPushCLIErrors(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no repo", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir}, 2, "--repo"},
		{"bad repo", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "a/b/c"}, 2, "OWNER/NAME"},
		{"bad parallel", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/x", "--parallel-parts", "0"}, 2, "parallel"},
		{"bad glob", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/x", "--exclude", "a/["}, 2, "--exclude"},
		{"no token", []string{"--endpoint", s.URL(), "push", dir, "--repo", "w/x"}, 1, "no Hub token"},
		{"bad token", []string{"--endpoint", s.URL(), "--token", "hf_nope", "push", dir, "--repo", "w/x"}, 1, "401"},
		// Given explicitly, even with the default's value (it used to be compared with the default).
		{"shard size without merged", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/x", "--max-shard-size", "5GB"}, 2, "--max-shard-size applies to --merged"},
		{"shard layout without merged", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/x", "--shard-layout", "hf"}, 2, "--shard-layout applies to --merged"},
		{"device without merged", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/x", "--device", "auto"}, 2, "--device applies to --merged"},
		{"missing dir", []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", filepath.Join(dir, "nope"), "--repo", "w/x"}, 1, "nope"},
		{"download missing repo", []string{"--endpoint", s.URL(), "--token", hubcliToken, "download", "w/missing"}, 1, "RepoNotFound"},
	}
	for _, tc := range tests {
		start := time.Now()
		code, _, errb := hubcliRun(t, tc.args...)
		if code != tc.code || !strings.Contains(errb, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errb, tc.code, tc.msg)
		}
		if strings.Contains(errb, hubcliToken) {
			t.Errorf("%s: the token was printed", tc.name)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s took %v", tc.name, d)
		}
	}
}

func TestUploadJournalPath(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"STATE_DIRECTORY": "/var/lib/hubsync:/other", "XDG_STATE_HOME": "/x"}, "/var/lib/hubsync/uploads.db"},
		{map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/hubsync/uploads.db"},
		{map[string]string{"HOME": "/h"}, "/h/.local/state/hubsync/uploads.db"},
	}
	for _, tc := range tests {
		if got := uploadJournalPath(hubcliEnv(tc.env)); got != tc.want {
			t.Errorf("uploadJournalPath(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestProgressReporterLogsPeriodically(t *testing.T) {
	var buf bytes.Buffer
	g := &globalOptions{stderr: &bytes.Buffer{}, log: zerolog.New(&lockedBuffer{b: &buf})}
	r := newProgressReporter(context.Background(), g, 10*time.Millisecond)
	r.event(hub.ProgressEvent{Phase: hub.PhaseUploading, File: "a.bin", Done: 5 << 20, Total: 10 << 20})
	r.event(hub.ProgressEvent{Phase: hub.PhaseHashing, File: "a.bin", Done: 10 << 20, Total: 10 << 20})
	time.Sleep(60 * time.Millisecond)
	r.close()
	r.close() // idempotent
	r.event(hub.ProgressEvent{Phase: hub.PhaseUploading, File: "late", Done: 1, Total: 1})
	text := buf.String()
	if !strings.Contains(text, `"uploading":{"files":1,"files_done":0,"bytes":5242880,"total":10485760}`) ||
		!strings.Contains(text, `"hashing":{"files":1,"files_done":1`) {
		t.Errorf("log lines:\n%s", text)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
