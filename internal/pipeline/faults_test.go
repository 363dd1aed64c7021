package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
)

// hookLog records hook events.
type hookLog struct {
	mu     sync.Mutex
	events []StageEvent
}

func (h *hookLog) hook(ev StageEvent) {
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

func (h *hookLog) points(step int64) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, ev := range h.events {
		if ev.Job.Step == step {
			out = append(out, ev.Point)
		}
	}
	return out
}

// TestDaemonHubFaults publishes through Hub faults: the client's retries and the daemon's job-level retries
// absorb them, and every checkpoint still lands exactly once with the right content.
func TestDaemonHubFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		rules  []hubtest.FaultRule
		faults hubtest.Faults
		// retried: the daemon must have recorded a transient error (the client gave up at least once).
		retried bool
	}{
		{name: "part 5xx and resets", rules: []hubtest.FaultRule{
			{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3},
			{Op: hubtest.OpPartPut, Kind: hubtest.FaultReset, AfterBytes: 1000, Count: 2},
		}},
		{name: "429 and lost commit answers", rules: []hubtest.FaultRule{
			{Op: hubtest.OpPreupload, Kind: hubtest.FaultRateLimit, Count: 2},
			{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse, Status: 504, Count: 2},
		}},
		{name: "commit 500 beyond the client's retries", retried: true, rules: []hubtest.FaultRule{
			{Op: hubtest.OpBatch, Kind: hubtest.FaultStatus, Status: 500, Count: 8},
		}},
		{name: "random faults", faults: hubtest.Faults{PartError: 0.15, PartReset: 0.05, RateLimit: 0.05,
			CommitLost: 0.4, CompleteError: 0.1, Seed: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestHub(t)
			outputs := filepath.Join(t.TempDir(), "outputs")
			ckpts := map[int]string{}
			for _, step := range []int{10, 20} {
				ckpts[step] = writeCheckpoint(t, outputs, step, nil)
			}
			cfg := testConfig(t, s.URL(), nil, outputs)
			env := openTestEnv(t, cfg, testToken)
			defer env.Close()
			for _, r := range tc.rules {
				s.InjectFault(r)
			}
			s.SetFaults(tc.faults)
			var h hookLog
			r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = h.hook; o.MaxAttempts = 10 }))
			r.waitFinished(t, 2)
			r.stop(t)
			s.SetFaults(hubtest.Faults{})
			if got := stages(jobsOf(t, env.Journal)); got != "10:committed 20:committed" {
				t.Fatalf("jobs %s", got)
			}
			c := testClient(t, s)
			repo := cfg.Watch[0].Repo
			for _, step := range []int{10, 20} {
				tag := fmt.Sprintf("step-%d", step)
				sameDigests(t, tag, repoFiles(t, c, repo, tag), referenceMerge(t, ckpts[step], testShard, repo))
			}
			if n := commitCount(t, c, repo, "main"); n != 3 {
				t.Errorf("%d commits, want 3", n)
			}
			st := s.Stats()
			faults := int64(0)
			for _, n := range st.Faults {
				faults += n
			}
			if faults == 0 {
				t.Error("no fault fired")
			}
			retried := false
			for _, step := range []int64{10, 20} {
				for _, p := range h.points(step) {
					retried = retried || p == PointRetry
				}
			}
			if tc.retried && !retried {
				t.Error("the daemon never retried a job")
			}
			t.Logf("faults fired: %v; daemon retries: %v", st.Faults, retried)
		})
	}
}

// corruptAdapter makes checkpoint dir's adapter disagree with its weights (a rank the tensors do not have):
// the watcher still finds it complete, the merge refuses it.
func corruptAdapter(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "adapter_config.json")
	b := mustRead(t, p)
	s := strings.Replace(string(b), `"r": 4`, `"r": 6`, 1)
	if s == string(b) {
		t.Fatalf("no \"r\": 4 in %s", b)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonBadCheckpointFailsAlone: a checkpoint whose adapter is corrupt fails with a reason naming the file,
// without retries, and the checkpoints around it publish.
func TestDaemonBadCheckpointFailsAlone(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	for _, step := range []int{10, 20, 30} {
		d := writeCheckpoint(t, outputs, step, nil)
		if step == 20 {
			corruptAdapter(t, d)
		}
	}
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	var h hookLog
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = h.hook }))
	r.waitFinished(t, 3)
	r.stop(t)
	jobs := jobsOf(t, env.Journal)
	if got := stages(jobs); got != "10:committed 20:failed 30:committed" {
		t.Fatalf("jobs %s", got)
	}
	bad := jobs[1]
	if !strings.Contains(bad.Reason, "checkpoint-20") || !strings.Contains(bad.Reason, "adapter") {
		t.Errorf("reason %q does not name the file", bad.Reason)
	}
	if got := strings.Join(h.points(20), ","); got != "detected,pinned,failed" {
		t.Errorf("job 20 went through %s (a permanent error must not be retried)", got)
	}
	if _, err := os.Stat(bad.StagingDir); !os.IsNotExist(err) {
		t.Errorf("failed job's staging %s left behind", bad.StagingDir)
	}
	refs, err := testClient(t, s).ListRefs(context.Background(), cfg.Watch[0].Repo)
	if err != nil {
		t.Fatal(err)
	}
	if got := refNames(refs.Tags); got != "step-10,step-30" {
		t.Errorf("tags %s", got)
	}
	if v := metricValue(t, env.Metrics, "hubsync_checkpoints_failed_total"); v != 1 {
		t.Errorf("failed metric %v", v)
	}
	t.Logf("reason: %s", bad.Reason)
}

// TestDaemonForbiddenIsPermanent moved: a 403 is fixable now (wrongtoken_test.go, TestDaemonWrongTokenWaits).
var _, _ = config.PolicyAll, journal.Failed

// TestDaemonGivesUp: a transient error that never clears fails the job after MaxAttempts attempts, recorded with
// the last error; the next checkpoint is not held up forever.
func TestDaemonGivesUp(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	s.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultStatus, Status: 500, Count: 1000})
	var h hookLog
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = h.hook; o.MaxAttempts = 3 }))
	r.waitFinished(t, 1)
	jobs := jobsOf(t, env.Journal)
	if stages(jobs) != "10:failed" || !strings.HasPrefix(jobs[0].Reason, "gave up after 3 attempts: ") ||
		!strings.Contains(jobs[0].Reason, "500") || jobs[0].Attempts != 3 {
		t.Errorf("job %s: reason %q attempts %d", stages(jobs), jobs[0].Reason, jobs[0].Attempts)
	}
	retries := 0
	for _, p := range h.points(10) {
		if p == PointRetry {
			retries++
		}
	}
	if retries != 2 {
		t.Errorf("%d retries recorded, want 2", retries)
	}
	// The client treats a 5xx commit answer as possibly lost: it checks and re-sends up to its own attempts.
	if n, want := s.Stats().Requests[hubtest.OpCommit], int64(3*hub.TestFastRetries().MaxAttempts); n != want {
		t.Errorf("%d commit requests, want %d (3 daemon attempts × the client's)", n, want)
	}
	r.stop(t)
}
