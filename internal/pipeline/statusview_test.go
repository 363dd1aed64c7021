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

// TestStatusCompletingUpload: once every byte is sent, the job being uploaded shows "completing upload" (the
// storage's multipart completion and the commit) rather than "uploading 99%".
func TestStatusCompletingUpload(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := t.Context()
	job := &journal.Job{WatchDir: "/out", Step: 10, Progress: journal.Progress{BytesTotal: 100, FilesTotal: 1}}
	job.SetStage(journal.Uploading, time.Now())
	if err := j.Put(ctx, job); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{env: Env{Journal: j}, opts: Options{ProgressInterval: time.Millisecond},
		wakeMerge: make(chan struct{}, 1), wakeUpload: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
	p := &progress{done: map[string]int64{"m\x00a": 100}, total: map[string]int64{"m\x00a": 100}}
	stop := d.progressWriter(ctx, &task{id: job.ID()}, p)
	waitFor(t, "the progress write", func() bool {
		got, err := j.Get(ctx, job.ID())
		return err == nil && got.Progress.BytesDone == 100
	})
	stop()
	got, _ := j.Get(ctx, job.ID())
	if got.Activity != "completing upload" {
		t.Errorf("activity %q", got.Activity)
	}
	var b strings.Builder
	_ = journal.WriteTable(&b, []*journal.Job{got}, time.Now())
	if !strings.Contains(b.String(), "completing upload") {
		t.Errorf("table:\n%s", b.String())
	}
}
