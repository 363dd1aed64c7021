package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// simulate runs the trainer simulation in the background: checkpoints written file by file in the Trainer's
// order, in small chunks (half-written files are visible), trainer_state.json last.
func simulate(t *testing.T, outputs string, steps []int, interval time.Duration, mod func(*testmodel.CheckpointOptions)) <-chan error {
	t.Helper()
	opts := testmodel.CheckpointOptions{Base: testBase(t).info, OptimizerSize: 16 << 10, ChunkSize: 8 << 10,
		ChunkDelay: time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	done := make(chan error, 1)
	go func() {
		_, err := testmodel.SimulateTrainer(context.Background(), outputs, steps, interval, testAdapter(), opts)
		done <- err
	}()
	return done
}

func TestDaemonPublishesEveryCheckpointOnce(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	var events []string
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) {
		o.Hook = func(ev StageEvent) {
			<-mu
			events = append(events, fmt.Sprintf("%d:%s", ev.Job.Step, ev.Point))
			mu <- struct{}{}
		}
	}))
	steps := []int{10, 20, 30}
	if err := <-simulate(t, outputs, steps, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	r.waitFinished(t, 3)
	c := testClient(t, s)
	repo := cfg.Watch[0].Repo
	for _, step := range steps {
		ckpt := filepath.Join(outputs, fmt.Sprintf("checkpoint-%d", step))
		got := repoFiles(t, c, repo, fmt.Sprintf("step-%d", step))
		sameDigests(t, fmt.Sprintf("step %d", step), got, referenceMerge(t, ckpt, testShard, repo))
	}
	if n := commitCount(t, c, repo, "main"); n != 1+len(steps) {
		t.Errorf("%d commits on main, want %d", n, 1+len(steps))
	}
	cs, err := c.ListCommits(context.Background(), repo, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, step := range []int{30, 20, 10} {
		if want := fmt.Sprintf("Upload checkpoint-%d (step %d)", step, step); cs[i].Title != want {
			t.Errorf("commit %d title %q, want %q", i, cs[i].Title, want)
		}
	}
	jobs := jobsOf(t, env.Journal)
	if got := stages(jobs); got != "10:committed 20:committed 30:committed" {
		t.Errorf("jobs %s", got)
	}
	for _, j := range jobs {
		if j.Commit == nil || len(j.Tags) != 1 || j.Progress.BytesDone != j.Progress.BytesTotal || j.Progress.BytesTotal == 0 {
			t.Errorf("job %d: commit %+v tags %v progress %+v", j.Step, j.Commit, j.Tags, j.Progress)
		}
		if _, err := os.Stat(j.StagingDir); !os.IsNotExist(err) {
			t.Errorf("job %d: staging %s not removed (%v)", j.Step, j.StagingDir, err)
		}
	}
	<-mu
	order := strings.Join(events, " ")
	mu <- struct{}{}
	for _, step := range steps {
		var seq []string
		for _, e := range strings.Fields(order) {
			if strings.HasPrefix(e, fmt.Sprintf("%d:", step)) {
				seq = append(seq, strings.TrimPrefix(e, fmt.Sprintf("%d:", step)))
			}
		}
		if got := strings.Join(seq, ","); got != "detected,pinned,merged,uploading,commit-landed,committed" {
			t.Errorf("step %d went through %s", step, got)
		}
	}
	for name, want := range map[string]float64{
		"hubsync_checkpoints_seen_total": 3, "hubsync_checkpoints_published_total": 3,
		"hubsync_checkpoints_failed_total": 0, "hubsync_merge_duration_seconds": 3, "hubsync_upload_duration_seconds": 3,
		"hubsync_queue_length": 0,
	} {
		if got := metricValue(t, env.Metrics, name); got != want {
			t.Errorf("metric %s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(t, env.Metrics, "hubsync_upload_bytes_total"); got < 1e6 {
		t.Errorf("bytes uploaded %v", got)
	}
	_ = journal.Committed
	_ = config.PolicyAll
}
