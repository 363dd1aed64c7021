package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/pipeline"
)

// TestWatchCLI runs `hubsync watch` in-process until it has published the checkpoints (--stop-after), then
// `hubsync status` as a table and as JSON.
func TestWatchCLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10, 20)
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", state)
	code, out, errb := hubcliRun(t, "--log-format", "json", "watch", f.outputs, "--repo", "w/watched", "--merged",
		"--base", f.base, "--settle", "100ms", "--stop-after", "2", "--max-shard-size", "20kB", "--policy", "all",
		"--staging", "none")
	if code != 0 {
		t.Fatalf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	if !strings.Contains(errb, `"staging":"none"`) {
		t.Errorf("the log does not say the shards were staged none:\n%s", errb)
	}
	if strings.Contains(out+errb, hubcliToken) {
		t.Error("token printed")
	}
	for _, step := range []int{10, 20} {
		got := hubDigests(t, s, "w/watched", fmt.Sprintf("step-%d", step))
		if _, ok := got["model.safetensors.index.json"]; !ok {
			t.Errorf("step %d: files %v", step, got)
		}
	}
	if cs := commitsOf(t, s, "w/watched"); len(cs) != 3 {
		t.Errorf("%d commits", len(cs))
	}

	code, out, errb = hubcliRun(t, "status")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb)
	}
	for _, want := range []string{"STAGE", "committed", "w/watched@", "step-10", "2 jobs: 2 committed"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	code, out, errb = hubcliRun(t, "status", "--json", "--state-dir", state)
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, errb)
	}
	var rep journal.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if rep.Summary.Total != 2 || rep.Summary.Stages[journal.Committed] != 2 || len(rep.Jobs) != 2 || rep.Jobs[1].Commit == nil {
		t.Errorf("status --json: %+v", rep)
	}
}

// TestWatchCLIWhileRunning: status reads the running daemon's snapshot; SIGTERM (context cancel) exits 0.
func TestWatchCLIWhileRunning(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	state := filepath.Join(t.TempDir(), "state")
	cfgFile := filepath.Join(t.TempDir(), "hubsync.yaml")
	yaml := fmt.Sprintf("endpoint: %s\nstate_dir: %s\nsettle: 100ms\nlog_format: json\nwatch:\n  - dir: %s\n    repo: w/cfg\n    base: %s\n    layout: branches\n",
		s.URL(), state, f.outputs, f.base)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_TOKEN", hubcliToken)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--config", cfgFile}, strings.NewReader(""), &out, &lockedBuffer{b: &errb})
	}()
	deadline := time.Now().Add(30 * time.Second)
	var table string
	for {
		code, o, e := hubcliRun(t, "status", "--config", cfgFile)
		if code == 0 && strings.Contains(o, "committed") {
			table = o
			if !strings.Contains(e, "snapshot") {
				t.Errorf("status while running did not say it read the snapshot: %q", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no committed job in status: %s %s", o, e)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(table, "w/cfg@") {
		t.Errorf("table:\n%s", table)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("watch after cancel: exit %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop")
	}
	if b := hubDigests(t, s, "w/cfg", "step-10"); len(b) == 0 {
		t.Error("nothing on branch step-10")
	}
}

func TestWatchCLIErrors(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	outputs := t.TempDir()
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
	// Another daemon holds the directory.
	cfg := config.Default()
	l, err := pipeline.LockDir(outputs, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	badCfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badCfg, []byte("watch:\n  - dir: x\n    repo: w/x\n    colour: blue\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"locked", []string{"watch", outputs, "--repo", "w/x"}, 1, fmt.Sprintf("pid %d", os.Getpid())},
		{"no dirs", []string{"watch", "--repo", "w/x"}, 2, "no watch entries"},
		{"no repo", []string{"watch", outputs}, 2, "repo: required"},
		{"bad policy", []string{"watch", outputs, "--repo", "w/x", "--policy", "some"}, 2, "policy"},
		{"bad layout", []string{"watch", outputs, "--repo", "w/x", "--layout", "flat"}, 2, "layout"},
		{"merged and adapter", []string{"watch", outputs, "--repo", "w/x", "--merged", "--adapter-only"}, 2, "exclude"},
		{"unknown key", []string{"watch", "--config", badCfg}, 2, "colour"},
		{"bad shard size", []string{"watch", outputs, "--repo", "w/x", "--max-shard-size", "big"}, 2, "--max-shard-size"},
		{"bad shard layout", []string{"watch", outputs, "--repo", "w/x", "--shard-layout", "flat"}, 2, "shard_layout"},
		{"bad staging", []string{"watch", outputs, "--repo", "w/x", "--staging", "ram"}, 2, "staging"},
		{"no token", []string{"watch", t.TempDir(), "--repo", "w/x"}, 1, "no Hub token"},
	}
	for _, tc := range tests {
		code, _, errb := hubcliRun(t, tc.args...)
		if code != tc.code || !strings.Contains(errb, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errb, tc.code, tc.msg)
		}
	}
}

func TestStatusCLINoJournal(t *testing.T) {
	hubcliIsolate(t)
	code, out, errb := hubcliRun(t, "status", "--state-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "no jobs") || !strings.Contains(errb, "no journal") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errb)
	}
	code, out, _ = hubcliRun(t, "status", "--json", "--state-dir", t.TempDir())
	var rep journal.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Jobs == nil || len(rep.Jobs) != 0 {
		t.Errorf("--json without a journal: exit %d, %q", code, out)
	}
}
