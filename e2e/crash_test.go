package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// killPoint is where a crash trial kills the daemon: arm prepares the Hub (fault rules that open a window),
// aim waits for the moment and returns the delay to add before SIGKILL.
type killPoint struct {
	name string
	arm  func(lh *localHub)
	aim  func(t testing.TB, s *scenario, lh *localHub, w *proc, rng *rand.Rand) time.Duration
}

// killPoints covers the pipeline's stages. The windows the faults open are the Hub client's retry backoffs
// (three failures of one request: 3.5 s on average), so the kill mostly lands inside them whatever the machine's
// speed; the trial logs where it landed.
func killPoints() []killPoint {
	// fired waits for the first injected fault; the client then backs off (full jitter: uniform in [0, 1 s],
	// then [0, 2 s], [0, 4 s] for the next failures of the same request).
	fired := func(t testing.TB, lh *localHub, what string) {
		waitFor(t, 60*time.Second, what, func() bool { return faultsFired(lh) > 0 })
	}
	jitter := func(rng *rand.Rand, max time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(max))) }
	return []killPoint{
		{
			// Between trainer_state.json and the end of the settle period: detected or being detected.
			name: "detect",
			aim: func(t testing.TB, s *scenario, _ *localHub, _ *proc, rng *rand.Rand) time.Duration {
				waitFor(t, 30*time.Second, "trainer_state.json of checkpoint-10", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					return !s.trainerState[10].IsZero()
				})
				return 200*time.Millisecond + jitter(rng, 400*time.Millisecond)
			},
		},
		{
			// Pinned: the merge is running.
			name: "merge",
			aim: func(t testing.TB, s *scenario, _ *localHub, w *proc, rng *rand.Rand) time.Duration {
				s.waitStage(w, 10, 60*time.Second, journal.Pinned)
				return jitter(rng, 150*time.Millisecond)
			},
		},
		{
			// Uploading, with some parts stored and one part failing and waiting for its retry.
			name: "mid-part",
			arm: func(lh *localHub) {
				lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3, Part: 5})
			},
			aim: func(t testing.TB, _ *scenario, lh *localHub, _ *proc, rng *rand.Rand) time.Duration {
				fired(t, lh, "the part faults")
				return jitter(rng, 300*time.Millisecond)
			},
		},
		{
			// Every object uploaded, the commit refused (503): its retry is pending.
			name: "before-commit",
			arm: func(lh *localHub) {
				lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultStatus, Status: 503, Count: 3})
			},
			aim: func(t testing.TB, _ *scenario, lh *localHub, _ *proc, rng *rand.Rand) time.Duration {
				fired(t, lh, "the commit fault")
				return jitter(rng, 300*time.Millisecond)
			},
		},
		{
			// The commit applied on the Hub, its answer lost (connection cut): the journal does not know yet.
			name: "commit-lost",
			arm: func(lh *localHub) {
				lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse})
			},
			aim: func(t testing.TB, _ *scenario, lh *localHub, _ *proc, rng *rand.Rand) time.Duration {
				fired(t, lh, "the lost commit")
				return jitter(rng, 5*time.Millisecond)
			},
		},
		{
			// Anywhere: a random time after the daemon started.
			name: "random",
			aim: func(_ testing.TB, _ *scenario, _ *localHub, _ *proc, rng *rand.Rand) time.Duration {
				return jitter(rng, 2500*time.Millisecond)
			},
		},
	}
}

// envInt reads a positive integer from the environment.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// TestCrashResume kills the daemon with SIGKILL at chosen points of the pipeline (HUBSYNC_E2E_TRIALS trials,
// cycling through the kill points, with seeded random delays: HUBSYNC_E2E_SEED), restarts it on the same state
// directory, and checks that the Hub ends exactly as after an uninterrupted run: every checkpoint once, complete,
// with its tag, and no duplicate commit.
func TestCrashResume(t *testing.T) {
	t.Parallel()
	trials := envInt(t, "HUBSYNC_E2E_TRIALS", len(killPoints()))
	seed := envInt(t, "HUBSYNC_E2E_SEED", 1)
	shared.expectedFor(t, 10)
	shared.expectedFor(t, 20)
	points := killPoints()
	var summary []string
	for i := range trials {
		kp := points[i%len(points)]
		t.Run(fmt.Sprintf("%02d-%s", i, kp.name), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
			summary = append(summary, crashTrial(t, kp, rng))
		})
	}
	t.Logf("seed %d, %d trials:\n  %s", seed, trials, strings.Join(summary, "\n  "))
}

// crashTrial runs one trial and describes what the kill interrupted.
func crashTrial(t *testing.T, kp killPoint, rng *rand.Rand) string {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lh := startLocalHub(t)
	s := newScenario(t, lh, "crash")
	if kp.arm != nil {
		kp.arm(lh)
	}
	w := s.startWatch("watch-1")
	trainer := make(chan error, 1)
	go func() {
		err := s.writeCheckpoint(ctx, 10, true, testmodel.CheckpointOptions{MaxSteps: 20})
		if err == nil {
			err = s.writeCheckpoint(ctx, 20, false, testmodel.CheckpointOptions{MaxSteps: 20})
		}
		trainer <- err
	}()
	delay := kp.aim(t, s, lh, w, rng)
	time.Sleep(delay)
	if !w.running() {
		t.Fatalf("the daemon exited before the kill: %v", w.err)
	}
	w.kill()
	at := s.snapshot()
	before := lh.srv.Stats()
	hubCommits := before.Commits
	what := fmt.Sprintf("%-13s +%-6s killed with jobs %s, %d commit(s), %d parts on the Hub", kp.name,
		delay.Round(time.Millisecond), describe(at), hubCommits, len(before.PartsStored))
	t.Log(what)
	if err := <-trainer; err != nil {
		t.Fatal(err)
	}
	// No stale lock, no corrupt journal: the next start takes over and finishes.
	w2 := s.startWatch("watch-2")
	s.waitFinished(w2, 120*time.Second, 10, 20)
	s.verifyPublished(ctx, 10, 20)
	s.checkCommitted(10, 20)
	// The part journal: only parts in flight at the kill (at most 8 per file, 4 files) are sent again.
	if resent := resentParts(before, lh.srv.Stats()); resent > 0 {
		what += fmt.Sprintf("; %d parts sent again (%d journaled uploads resumed)", resent,
			strings.Count(w2.logs(), "resuming a journaled multipart upload"))
		if resent > 32 {
			t.Errorf("%d of %d stored parts were sent again after the restart", resent, len(before.PartsStored))
		}
	}
	if hubCommits > 0 && stageOf(at, 10) != journal.Committed {
		// The commit had landed but the journal did not know: verifyPublished proved it was not made twice.
		switch l := w2.logs(); {
		case strings.Contains(l, "already landed"):
			what += "; the restart found the landed commit by its id"
		case strings.Contains(l, "found the commit on the branch"):
			what += "; the restart's commit call found the landed commit"
		}
	}
	if code, _ := w2.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM after the restart: exit %d", code)
	}
	return what
}

// TestSIGTERM stops the daemon with SIGTERM in the middle of an upload: it exits 0 promptly, parks the upload
// (the journal stays consistent and readable by `hubsync status`), and the next start resumes it, sending
// again only the parts that were not finished.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	lh := startLocalHub(t)
	s := newScenario(t, lh, "sigterm")
	// One part fails three times: its retries wait (full jitter) up to 1 s, 2 s, 4 s while the others finish.
	lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3, Part: 3})
	w := s.startWatch("watch-1")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the part fault", func() bool { return faultsFired(lh) > 0 })
	time.Sleep(50 * time.Millisecond) // let the other parts of the file get going
	before := lh.srv.Stats()
	code, took := w.terminate(t, 20*time.Second)
	t.Logf("SIGTERM mid-upload: exit %d after %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %s; the daemon should park the upload promptly", took)
	}
	if !strings.Contains(w.logs(), "parked") && !strings.Contains(w.logs(), "stopping") {
		t.Logf("no parking message in the logs")
	}
	// The journal is consistent: status reads it (no daemon holds it now) and shows the job unfinished.
	rep := s.status()
	j := job(rep, 10)
	if j == nil || finished(j.Stage) && j.Stage != journal.Committed {
		t.Fatalf("after SIGTERM, step 10 is %+v", j)
	}
	t.Logf("after SIGTERM the journal has step 10 %s (%d of %d bytes uploaded)", j.Stage, j.Progress.BytesDone, j.Progress.BytesTotal)
	if s.commitCount(ctx) != 1 && j.Stage != journal.Committed {
		t.Errorf("a commit landed although the job is %s", j.Stage)
	}

	w2 := s.startWatch("watch-2")
	s.waitFinished(w2, 90*time.Second, 10)
	s.verifyPublished(ctx, 10)
	after := lh.srv.Stats()
	resent := resentParts(before, after)
	t.Logf("parts stored before SIGTERM: %d; stored again after the restart: %d", len(before.PartsStored), resent)
	// Only parts in flight at the signal may go again (at most the parallel parts per file, 8, times 4 files).
	if len(before.PartsStored) > 0 && resent > 32 {
		t.Errorf("%d of %d finished parts were sent again after the restart; the part journal should skip them", resent, len(before.PartsStored))
	}
	if code, _ := w2.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// resentParts counts the parts stored before (a kill or stop) that were stored again after it.
func resentParts(before, after hubtest.Stats) int {
	n := 0
	for k, c := range after.PartsStored {
		if before.PartsStored[k] > 0 && c > before.PartsStored[k] {
			n++
		}
	}
	return n
}

// checkCommitted checks that the daemon's snapshot has every step committed after a restart.
func (s *scenario) checkCommitted(steps ...int) {
	s.t.Helper()
	rep := s.snapshot()
	for _, st := range steps {
		if stageOf(rep, st) != journal.Committed {
			s.t.Errorf("step %d is %s after the restart", st, stageOf(rep, st))
		}
	}
}
