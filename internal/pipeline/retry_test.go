package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/journal"
)

// breakAdapter removes a checkpoint's adapter_config.json (a permanent failure) and marks it complete; the
// returned function puts it back.
func breakAdapter(t *testing.T, ckpt string) func() {
	t.Helper()
	p := filepath.Join(ckpt, "adapter_config.json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ckpt, ".hubsync-complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetryRunningDaemon: a failed job re-queued (SubmitRetry, as `hubsync retry` does while a daemon holds the
// journal) is published by the running daemon; asking again changes nothing.
func TestRetryRunningDaemon(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	ckpt := writeCheckpoint(t, outputs, 10, nil)
	fix := breakAdapter(t, ckpt)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	r := startDaemon(t, cfg, env, testOptions(nil))
	r.waitFinished(t, 1)
	jobs := jobsOf(t, env.Journal)
	if stages(jobs) != "10:failed" || !strings.Contains(jobs[0].Reason, "adapter_config.json") {
		t.Fatalf("jobs %s (%s)", stages(jobs), jobs[0].Reason)
	}
	fix()
	req, err := ParseRetryArgs([]string{"checkpoint-10"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SubmitRetry(cfg.JournalPath(), req); err != nil {
		t.Fatal(err)
	}
	r.waitFinished(t, 2)
	r.stop(t)
	if got := stages(jobsOf(t, env.Journal)); got != "10:committed" {
		t.Fatalf("after retry: %s", got)
	}
	if ents, _ := os.ReadDir(RetryDir(cfg.JournalPath())); len(ents) != 0 {
		t.Errorf("%d retry requests left", len(ents))
	}
	ids, err := RequeueFailed(context.Background(), env.Journal, RetryRequest{AllFailed: true})
	if err != nil || len(ids) != 0 {
		t.Errorf("second retry requeued %v (%v)", ids, err)
	}
	_ = journal.Failed
}

// TestParseRetryArgs covers the argument forms.
func TestParseRetryArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		all  bool
		ok   bool
	}{
		{[]string{"10", "checkpoint-20", "/out@30"}, false, true},
		{nil, true, true},
		{nil, false, false},
		{[]string{"x"}, false, false},
		{[]string{"-3"}, false, false},
		{[]string{"@3"}, false, false},
	} {
		r, err := ParseRetryArgs(tc.args, tc.all)
		if (err == nil) != tc.ok {
			t.Errorf("%v %v: %v", tc.args, tc.all, err)
		}
		if err == nil && len(tc.args) == 3 && (len(r.Steps) != 2 || len(r.IDs) != 1) {
			t.Errorf("%+v", r)
		}
	}
}
