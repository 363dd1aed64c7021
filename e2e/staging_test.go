package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestCrashStagingNonePassOne kills the daemon (SIGKILL) while `--staging none` runs pass one (the merge that
// digests the shards without writing them) of the second checkpoint, restarts it on the same state directory and
// checks that the Hub ends exactly as after an uninterrupted run: both checkpoints committed once with the bytes
// of a local merge, and no part stored twice (the first checkpoint's journaled parts are not sent again, and the
// second's were never sent before the kill). The kill lands in pass one when the journal still has the job
// pinned (pass one's digests are journaled with the move to merged); a trial whose kill came later is retried.
func TestCrashStagingNonePassOne(t *testing.T) {
	t.Parallel()
	shared.expectedFor(t, 10)
	shared.expectedFor(t, 20)
	const attempts = 5
	for i := range attempts {
		if stagingNoneTrial(t, i) {
			return
		}
	}
	t.Skipf("in %d attempts the kill never landed in pass one (the merge finished first)", attempts)
}

// stagingNoneTrial runs one kill-and-restart trial and reports whether the kill landed in pass one.
func stagingNoneTrial(t *testing.T, attempt int) bool {
	ctx := context.Background()
	lh := startLocalHub(t)
	s := newScenario(t, lh, "staging-none-"+itoa(attempt))
	w := s.startWatch("watch-1", "--staging", "none")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{MaxSteps: 20}); err != nil {
		t.Fatal(err)
	}
	// The first checkpoint is published completely: its parts are in the part journal and on the Hub.
	s.waitFinished(w, 120*time.Second, 10)
	if err := s.writeCheckpoint(ctx, 20, false, testmodel.CheckpointOptions{MaxSteps: 20}); err != nil {
		t.Fatal(err)
	}
	s.waitStage(w, 20, 60*time.Second, journal.Pinned)
	w.kill()
	at := s.snapshot()
	before := lh.srv.Stats()
	if st := stageOf(at, 20); st != journal.Pinned {
		t.Logf("attempt %d: the kill found step 20 %s, not in pass one; again", attempt, st)
		return false
	}
	if !strings.Contains(w.logs(), `"staging":"none"`) {
		t.Errorf("the daemon did not log staging none")
	}

	w2 := s.startWatch("watch-2", "--staging", "none")
	s.waitFinished(w2, 120*time.Second, 10, 20)
	s.verifyPublished(ctx, 10, 20)
	s.checkCommitted(10, 20)
	after := lh.srv.Stats()
	if resent := resentParts(before, after); resent != 0 {
		t.Errorf("%d of the %d parts stored before the kill were sent again", resent, len(before.PartsStored))
	}
	// As an uninterrupted run: every part the Hub holds was stored exactly once.
	for k, n := range after.PartsStored {
		if n != 1 {
			t.Errorf("part %s stored %d times", k, n)
		}
	}
	if len(after.PartsStored) <= len(before.PartsStored) {
		t.Errorf("the restart stored no new parts (%d before, %d after): step 20 uploaded nothing?",
			len(before.PartsStored), len(after.PartsStored))
	}
	t.Logf("attempt %d: killed in pass one of step 20; %d parts before the kill, %d after the restart, none twice",
		attempt, len(before.PartsStored), len(after.PartsStored))
	if code, _ := w2.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM after the restart: exit %d", code)
	}
	return true
}
