package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestMergeJSONProgressAndRevision: merge --base OWNER/NAME@TAG finds the base that snapshot_download(revision=
// tag) cached (HUGGINGFACE_HUB_CACHE), logs progress with tensor counts and units when not on a terminal, and
// --json prints the result; HF_HUB_OFFLINE keeps it off the network.
func TestMergeJSONProgressAndRevision(t *testing.T) {
	hubcliIsolate(t)
	ctx := context.Background()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	commit := strings.Repeat("d", 40)
	snap := filepath.Join(cache, "models--acme--tiny", "snapshots", commit)
	bi, err := testmodel.GenerateBase(ctx, snap, testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(cache, "models--acme--tiny", "refs"), 0o755)
	if err := os.WriteFile(filepath.Join(cache, "models--acme--tiny", "refs", "v1"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-20")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HUGGINGFACE_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "1")
	out := filepath.Join(dir, "merged")
	code, stdout, stderr := hubcliRun(t, "--log-format", "json", "--endpoint", "http://127.0.0.1:1", "merge",
		"--base", "acme/tiny@v1", "--adapter", adapter, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("merge exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res struct {
		Dir        string `json:"dir"`
		Tensors    int    `json:"tensors"`
		DurationMS *int64 `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Dir != out || res.Tensors == 0 || res.DurationMS == nil {
		t.Errorf("--json stdout %q (%v)", stdout, err)
	}
	var last map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == "merge progress" {
			last = m
		}
	}
	if last == nil || last["tensors_done"] != last["tensors_total"] || last["tensors_total"] != float64(res.Tensors) ||
		last["bytes_done"] != last["bytes_total"] || last["elapsed"] == nil {
		t.Errorf("last merge progress line %v\nstderr %s", last, stderr)
	}
	if strings.Contains(stderr, "gb_per_s") {
		t.Errorf("unit-less rate field in %s", stderr)
	}
	// Not cached at that revision, offline: an error at once, no download.
	code, _, stderr = hubcliRun(t, "--endpoint", "http://127.0.0.1:1", "merge", "--base", "acme/tiny@v2", "--adapter", adapter,
		"--out", filepath.Join(dir, "merged2"))
	if code != 1 || !strings.Contains(stderr, "HF_HUB_OFFLINE") {
		t.Errorf("uncached offline: exit %d, %s", code, stderr)
	}
}

// TestMergeProgressLogInterval: off a terminal, progress is logged at most once per interval (a fake clock),
// with the rate and ETA as strings with units.
func TestMergeProgressLogInterval(t *testing.T) {
	var buf strings.Builder
	g, _, _ := hubcliGlobals("", "")
	g.log = zerolog.New(&buf)
	p := newMergeProgress(g, 10*time.Second, true)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	p.start, p.last = now, now
	p.tensorsDone(1, 4)
	p.bytesDone(1e9, 4e9)
	now = now.Add(5 * time.Second)
	p.bytesDone(2e9, 4e9)
	if buf.Len() != 0 {
		t.Fatalf("logged before the interval: %s", buf.String())
	}
	now = now.Add(5 * time.Second)
	p.bytesDone(3e9, 4e9)
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if m["rate"] != "300.00 MB/s" || m["eta"] != "3s" || m["elapsed"] != "10s" || m["tensors_done"] != float64(1) {
		t.Errorf("line %v", m)
	}
	p.close()
}
