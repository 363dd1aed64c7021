package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/pipeline"
)

// TestRetryCLI: a checkpoint that failed (its adapter_config.json was missing) is queued again by `hubsync
// retry` without a daemon running; a second retry does nothing; the next watch publishes it. `status` after the
// daemon stopped finds the journal without --state-dir.
func TestRetryCLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	ckpt := filepath.Join(f.outputs, "checkpoint-10")
	cfgPath := filepath.Join(ckpt, "adapter_config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ckpt, ".hubsync-complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", s.URL())
	args := []string{"--log-format", "json", "watch", f.outputs, "--repo", "w/retry", "--merged", "--base", f.base,
		"--stop-after", "1", "--max-shard-size", "20kB"}
	if code, out, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("watch: exit %d\n%s\n%s", code, out, errb)
	}
	code, out, errb := hubcliRun(t, "status")
	if code != 0 || !strings.Contains(out, "failed") {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errb)
	}
	if code, _, _ := hubcliRun(t, "retry"); code != 2 {
		t.Errorf("retry without steps: exit %d, want 2", code)
	}
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errb = hubcliRun(t, "retry", "10")
	if code != 0 || !strings.Contains(out, "queued again") {
		t.Fatalf("retry: exit %d\n%s\n%s", code, out, errb)
	}
	code, out, _ = hubcliRun(t, "retry", "--all-failed")
	if code != 0 || !strings.Contains(out, "nothing to retry") {
		t.Errorf("second retry: exit %d\n%s", code, out)
	}
	code, out, _ = hubcliRun(t, "status")
	if code != 0 || !strings.Contains(out, "parked, no daemon running") {
		t.Errorf("status of a requeued job without a daemon:\n%s", out)
	}
	if code, out, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("watch after retry: exit %d\n%s\n%s", code, out, errb)
	}
	if got := hubDigests(t, s, "w/retry", "step-10"); len(got) == 0 {
		t.Error("step-10 not published after retry")
	}
}

// TestFirstJournal: status finds the system unit's state directory when the default one has no journal.
func TestFirstJournal(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "journal.db"), filepath.Join(t.TempDir(), "journal.db")
	if got := firstJournal(a, b); got != a {
		t.Errorf("neither exists: %s", got)
	}
	if err := os.WriteFile(b, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := firstJournal(a, b); got != b {
		t.Errorf("only the system one exists: %s", got)
	}
}

// TestRetryCLIWhileHeld: while another process holds the journal (a running daemon), retry leaves the request
// for it instead of failing.
func TestRetryCLIWhileHeld(t *testing.T) {
	hubcliIsolate(t)
	state := t.TempDir()
	j, err := journal.Open(filepath.Join(state, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	code, out, errb := hubcliRun(t, "retry", "--all-failed", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "queued for it") {
		t.Fatalf("retry: exit %d\n%s\n%s", code, out, errb)
	}
	ents, err := os.ReadDir(pipeline.RetryDir(filepath.Join(state, "journal.db")))
	if err != nil || len(ents) != 1 {
		t.Errorf("retry requests: %v %v", ents, err)
	}
}
