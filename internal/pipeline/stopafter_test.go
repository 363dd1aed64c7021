package pipeline

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestDaemonStopAfterCountsJournal: --stop-after N counts the finished jobs in the journal, so a daemon
// restarted after earlier runs finished them exits at once instead of waiting forever.
func TestDaemonStopAfterCountsJournal(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	for run := 1; run <= 2; run++ {
		d, err := NewDaemon(cfg, *env, testOptions(func(o *Options) { o.StopAfter = 1 }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("run %d did not stop after the journal's finished job", run)
		}
		cancel()
	}
	if got := stages(jobsOf(t, env.Journal)); got != "10:committed" {
		t.Errorf("jobs %s", got)
	}
}
