package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/watcher"
)

// gate is a hook that holds a worker at one point of one step until released.
type gate struct {
	step    int64
	point   string
	reached chan struct{}
	release chan struct{}
}

func newGate(step int64, point string) *gate {
	return &gate{step: step, point: point, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook(ev StageEvent) {
	if ev.Job.Step == g.step && ev.Point == g.point {
		close(g.reached)
		<-g.release
	}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("step %d never reached %s", g.step, g.point)
	}
}

var supersededRe = regexp.MustCompile(`^superseded by step (\d+) \(policy latest\)$`)

// TestDaemonPolicyLatest: while a slow upload holds the pipeline, newer checkpoints supersede the queued older
// ones, which are skipped with a recorded reason; the newest is published.
func TestDaemonPolicyLatest(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	cfg := testConfig(t, s.URL(), func(c *config.Config) { c.Policy = config.PolicyLatest }, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	g := newGate(10, string(journal.Uploading))
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = g.hook }))
	writeCheckpoint(t, outputs, 10, nil)
	g.wait(t)
	for _, step := range []int{20, 30, 40} {
		writeCheckpoint(t, outputs, step, nil)
	}
	waitFor(t, "four jobs", func() bool { return len(jobsOf(t, env.Journal)) == 4 })
	close(g.release)
	waitFor(t, "every job finished", func() bool {
		for _, j := range jobsOf(t, env.Journal) {
			if !j.Stage.Final() {
				return false
			}
		}
		return true
	})
	r.stop(t)
	jobs := jobsOf(t, env.Journal)
	t.Logf("jobs: %s", stages(jobs))
	skipped := 0
	for _, j := range jobs {
		switch j.Stage {
		case journal.Skipped:
			skipped++
			m := supersededRe.FindStringSubmatch(j.Reason)
			if m == nil {
				t.Errorf("job %d skipped with reason %q", j.Step, j.Reason)
				continue
			}
			if newer, _ := strconv.ParseInt(m[1], 10, 64); newer <= j.Step {
				t.Errorf("job %d superseded by older step %d", j.Step, newer)
			}
		case journal.Committed:
		default:
			t.Errorf("job %d ended %s (%s)", j.Step, j.Stage, j.Reason)
		}
	}
	if jobs[0].Stage != journal.Committed || jobs[3].Stage != journal.Committed {
		t.Errorf("the first and the newest checkpoint must be published: %s", stages(jobs))
	}
	if skipped == 0 {
		t.Error("nothing was skipped")
	}
	if v := metricValue(t, env.Metrics, "hubsync_checkpoints_skipped_total"); v != float64(skipped) {
		t.Errorf("skipped metric %v, want %d", v, skipped)
	}
	refs, err := testClient(t, s).ListRefs(context.Background(), cfg.Watch[0].Repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Tags) != 4-skipped {
		t.Errorf("tags %s with %d skipped", refNames(refs.Tags), skipped)
	}
	var table strings.Builder
	if err := journal.WriteTable(&table, jobs, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "superseded by step") || !strings.Contains(table.String(), "skipped") {
		t.Errorf("status table does not show the skip:\n%s", table.String())
	}
}

// TestDaemonRotation: the trainer's save_total_limit deletes a checkpoint while it is being uploaded (it was
// pinned, so the upload completes with the right content); a checkpoint deleted before it could be pinned fails
// with a clear reason.
func TestDaemonRotation(t *testing.T) {
	t.Parallel()
	t.Run("while uploading", func(t *testing.T) {
		s := newTestHub(t)
		outputs := filepath.Join(t.TempDir(), "outputs")
		ck10 := writeCheckpoint(t, outputs, 10, nil)
		ref10 := referenceMerge(t, ck10, testShard, "w/model-a")
		cfg := testConfig(t, s.URL(), nil, outputs)
		env := openTestEnv(t, cfg, testToken)
		defer env.Close()
		g := newGate(10, PointCommitLanded)
		// Hold the upload once its first part went up: after that, delete the checkpoint.
		up := newGate(10, string(journal.Uploading))
		r := startDaemon(t, cfg, env, testOptions(func(o *Options) {
			o.Hook = func(ev StageEvent) { up.hook(ev); g.hook(ev) }
		}))
		up.wait(t)
		ck20 := writeCheckpoint(t, outputs, 20, func(o *testmodel.CheckpointOptions) { o.SaveTotalLimit = 1 })
		if _, err := os.Stat(ck10); !os.IsNotExist(err) {
			t.Fatalf("rotation did not delete %s", ck10)
		}
		ref20 := referenceMerge(t, ck20, testShard, "w/model-a")
		close(up.release)
		g.wait(t)
		close(g.release)
		r.waitFinished(t, 2)
		r.stop(t)
		if got := stages(jobsOf(t, env.Journal)); got != "10:committed 20:committed" {
			t.Fatalf("jobs %s", got)
		}
		c := testClient(t, s)
		sameDigests(t, "step-10", repoFiles(t, c, cfg.Watch[0].Repo, "step-10"), ref10)
		sameDigests(t, "step-20", repoFiles(t, c, cfg.Watch[0].Repo, "step-20"), ref20)
	})
	t.Run("before pinning", func(t *testing.T) {
		s := newTestHub(t)
		outputs := filepath.Join(t.TempDir(), "outputs")
		ck10 := writeCheckpoint(t, outputs, 10, nil)
		cfg := testConfig(t, s.URL(), nil, outputs)
		env := openTestEnv(t, cfg, testToken)
		defer env.Close()
		g := newGate(10, string(journal.Detected))
		r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = g.hook }))
		g.wait(t)
		if err := os.RemoveAll(ck10); err != nil {
			t.Fatal(err)
		}
		close(g.release)
		r.waitFinished(t, 1)
		r.stop(t)
		jobs := jobsOf(t, env.Journal)
		if stages(jobs) != "10:failed" || !strings.Contains(jobs[0].Reason, ck10) {
			t.Errorf("jobs %s, reason %q", stages(jobs), jobs[0].Reason)
		}
		t.Logf("reason: %s", jobs[0].Reason)
	})
}

// TestDaemonLockContention: one daemon per directory; a second one fails at once, naming the holder.
func TestDaemonLockContention(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	r := startDaemon(t, cfg, env, testOptions(nil))
	waitFor(t, "the lock file", func() bool {
		_, err := os.Stat(filepath.Join(outputs, watcher.LockFileName))
		return err == nil
	})
	// Another daemon (its own state directory) on the same output directory.
	cfg2 := testConfig(t, s.URL(), nil, outputs)
	env2 := openTestEnv(t, cfg2, testToken)
	defer env2.Close()
	d2, err := NewDaemon(cfg2, *env2, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = d2.Run(ctx)
	if !errors.Is(err, watcher.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) ||
		!strings.Contains(err.Error(), outputs) {
		t.Errorf("second daemon: %v; want a lock error naming the holder and the directory", err)
	}
	if ctx.Err() != nil {
		t.Error("the second daemon waited instead of failing at once")
	}
	r.stop(t)
	// Once the first stops, the directory is free.
	if l, err := LockDir(outputs, cfg, testLogger(t)); err != nil {
		t.Errorf("after the first daemon stopped: %v", err)
	} else {
		l.Unlock()
	}
}

// TestDaemonCleansStaging: at start, staging directories of finished (or unknown) jobs are removed, those of
// unfinished jobs kept for resuming; other files in the staging area are left alone.
func TestDaemonCleansStaging(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	staging := cfg.StagingFor(cfg.Watch[0])
	ctx := context.Background()
	put := func(step int64, stage journal.Stage) {
		j := &journal.Job{WatchDir: outputs, Step: step, Dir: filepath.Join(outputs, fmt.Sprintf("checkpoint-%d", step))}
		j.SetStage(stage, time.Now())
		if err := env.Journal.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	put(1, journal.Committed)
	put(2, journal.Failed)
	put(3, journal.Pinned) // unfinished, but its checkpoint is gone: it will fail, after the cleanup
	for _, name := range []string{"checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-9", "checkpoint-3.partial", "push-x-1"} {
		if err := os.MkdirAll(filepath.Join(staging, name, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var kept []string
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) {
		o.Hook = func(ev StageEvent) {
			if ev.Job.Step == 3 && len(kept) == 0 {
				ents, _ := os.ReadDir(staging)
				for _, e := range ents {
					kept = append(kept, e.Name())
				}
				kept = append(kept, "|")
			}
		}
	}))
	r.waitFinished(t, 1)
	r.stop(t)
	// When job 3 first reported, the cleanup had run: only its own staging dir (and foreign files) remained.
	if got := strings.Join(kept, ","); got != "checkpoint-3,push-x-1,|" {
		t.Errorf("staging after the cleanup: %s", got)
	}
}

// TestDaemonOverlapsMergeAndUpload: while checkpoint 10 uploads, 20 is merged; 30 waits (one merged job waiting
// at most, so staging disk use stays bounded); commits stay in step order.
func TestDaemonOverlapsMergeAndUpload(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	g := newGate(10, string(journal.Uploading))
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = g.hook }))
	writeCheckpoint(t, outputs, 10, nil)
	g.wait(t)
	writeCheckpoint(t, outputs, 20, nil)
	writeCheckpoint(t, outputs, 30, nil)
	waitFor(t, "20 merged while 10 uploads", func() bool {
		return stages(jobsOf(t, env.Journal)) == "10:uploading 20:merged 30:detected"
	})
	time.Sleep(300 * time.Millisecond) // 30 must stay queued while 20 waits for the upload worker
	if got := stages(jobsOf(t, env.Journal)); got != "10:uploading 20:merged 30:detected" {
		t.Errorf("jobs %s while the upload of 10 is held", got)
	}
	close(g.release)
	r.waitFinished(t, 3)
	r.stop(t)
	cs, err := testClient(t, s).ListCommits(context.Background(), cfg.Watch[0].Repo, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, c := range cs {
		titles = append(titles, c.Title)
	}
	if want := "Upload checkpoint-30 (step 30)|Upload checkpoint-20 (step 20)|Upload checkpoint-10 (step 10)|initial commit"; strings.Join(titles, "|") != want {
		t.Errorf("commits %q", titles)
	}
}
