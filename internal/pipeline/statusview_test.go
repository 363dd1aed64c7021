package pipeline

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
)

// TestStatusMergingAndBaseWait: a job whose base cannot be downloaded yet (404) waits instead of failing, and
// status shows it as merging (not pinned) with why it waits and when it tries next.
func TestStatusMergingAndBaseWait(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), func(c *config.Config) { c.Watch[0].Base = "w/not-uploaded-yet" }, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	rw := newRetryWatch()
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = rw.hook }))
	rw.wait(t, 2)
	rep, err := journal.ReadSnapshot(cfg.JournalPath() + journal.SnapshotSuffix)
	if err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	if len(rep.Jobs) != 1 || rep.Jobs[0].Stage.Final() || rep.Jobs[0].Activity != "merging" {
		t.Fatalf("snapshot jobs %+v", rep.Jobs)
	}
	var b strings.Builder
	if err := journal.WriteTableOpts(&b, rep.Jobs, time.Now(), journal.TableOptions{DaemonRunning: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), " merging ") || strings.Contains(b.String(), " pinned ") ||
		!strings.Contains(b.String(), "next try at") || !strings.Contains(b.String(), "404") {
		t.Errorf("status table:\n%s", b.String())
	}
}

// TestStatusSettling: a checkpoint in its settle period is in the running daemon's status snapshot and the table
// says when it completes.
func TestStatusSettling(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), func(c *config.Config) { c.Settle = time.Hour }, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	r := startDaemon(t, cfg, env, testOptions(nil))
	var rep *journal.Report
	waitFor(t, "the settling checkpoint in the snapshot", func() bool {
		var err error
		rep, err = journal.ReadSnapshot(cfg.JournalPath() + journal.SnapshotSuffix)
		return err == nil && len(rep.Settling) == 1
	})
	r.stop(t)
	st := rep.Settling[0]
	if st.Step != 10 || st.Complete.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("settling %+v", st)
	}
	var b strings.Builder
	if err := journal.WriteTableOpts(&b, rep.Jobs, time.Now(), journal.TableOptions{DaemonRunning: true, Settling: rep.Settling}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "settling, complete at ") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestStatusPrunedTags: tags that pruning deleted are not listed as live.
func TestStatusPrunedTags(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	writeCheckpoint(t, outputs, 20, nil)
	cfg := testConfig(t, s.URL(), func(c *config.Config) { c.Watch[0].Prune.Keep = 1 }, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	r := startDaemon(t, cfg, env, testOptions(nil))
	r.waitFinished(t, 2)
	r.stop(t)
	jobs := jobsOf(t, env.Journal)
	if stages(jobs) != "10:committed 20:committed" {
		t.Fatalf("jobs %s", stages(jobs))
	}
	if len(jobs[0].Tags) != 0 || len(jobs[0].PrunedTags) != 1 || jobs[0].PrunedTags[0] != "step-10" {
		t.Errorf("step 10: tags %v, pruned %v", jobs[0].Tags, jobs[0].PrunedTags)
	}
	if len(jobs[1].Tags) != 1 || jobs[1].Tags[0] != "step-20" {
		t.Errorf("step 20: tags %v", jobs[1].Tags)
	}
	var b strings.Builder
	if err := journal.WriteTable(&b, jobs, time.Now()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "tags step-10") {
		t.Errorf("pruned tag listed as live:\n%s", b.String())
	}
}
