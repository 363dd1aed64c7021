package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestWatchEndToEnd is the product as a user runs it: `hubsync devhub`, a trainer saving three checkpoints with
// half-written files visible, and `hubsync watch OUT --repo .. --merged --base BASE --poll ..` publishing them.
func TestWatchEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	steps := []int{10, 20, 30}
	for _, st := range steps {
		shared.expectedFor(t, st)
	}
	dh := startDevhub(t, "")
	s := newScenario(t, dh, "watched")
	w := s.startWatch("watch", "--poll", "100ms")

	// While the trainer writes, nothing may be detected before its trainer_state.json is complete.
	for i, st := range steps {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		if err := s.writeCheckpoint(ctx, st, true, testmodel.CheckpointOptions{MaxSteps: 30}); err != nil {
			t.Fatal(err)
		}
		shared.sameCheckpoint(t, filepath.Join(s.out, "checkpoint-"+itoa(st)), st)
	}
	s.waitFinished(w, 90*time.Second, steps...)
	published := s.verifyPublished(ctx, steps...)

	code, took := w.terminate(t, 30*time.Second)
	if code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
	t.Logf("idle daemon stopped %s after SIGTERM", took.Round(time.Millisecond))

	rep := s.status()
	if rep.Summary.Stages[journal.Committed] != len(steps) {
		t.Errorf("status: %s, want %d committed", describe(rep), len(steps))
	}
	for _, st := range steps {
		j := job(rep, st)
		if j == nil || j.Stage != journal.Committed {
			t.Errorf("status: step %d is %v", st, j)
			continue
		}
		if j.Commit == nil || j.Commit.OID != published[st].ID {
			t.Errorf("status: step %d commit %+v, the Hub's is %s", st, j.Commit, published[st].ID)
		}
		if len(j.Tags) != 1 || j.Tags[0] != "step-"+itoa(st) {
			t.Errorf("status: step %d tags %v", st, j.Tags)
		}
		s.mu.Lock()
		written := s.trainerState[st]
		s.mu.Unlock()
		if det := j.StageAt[journal.Detected]; det.Before(written) {
			t.Errorf("step %d was detected at %s, before its trainer_state.json was written (%s)",
				st, det.Format(time.RFC3339Nano), written.Format(time.RFC3339Nano))
		}
	}
	st := dh.Stats(t)
	if st.TokenLeaks != 0 {
		t.Errorf("%d requests sent the token to storage", st.TokenLeaks)
	}
	if st.UploadsStarted == 0 || len(st.PartsStored) < 2 {
		t.Errorf("no multipart upload happened: %d uploads, %d parts", st.UploadsStarted, len(st.PartsStored))
	}
	if st.Commits != int64(len(steps)) {
		t.Errorf("the Hub counted %d commits, want %d", st.Commits, len(steps))
	}
	// Staging is removed after the commits.
	if ents, err := os.ReadDir(filepath.Join(s.out, ".hubsync-staging")); err == nil && len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("staging not cleaned after the commits: %v", names)
	}
	t.Logf("published %d checkpoints: %d multipart uploads, %d parts stored, %d bytes received", len(steps),
		st.UploadsStarted, len(st.PartsStored), st.BytesReceived)
}

// TestWatchFaults publishes under transient Hub faults (part 5xx, part connection resets, 429 rate limits, lost
// commit answers) with a checkpoint whose adapter does not fit the base between two good ones: that job fails
// with a reason naming the problem, the daemon carries on and publishes the others exactly once.
func TestWatchFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	shared.expectedFor(t, 30)
	dh := startDevhub(t, "part-5xx=0.05,part-reset=0.03,rate-limit=0.03,commit-lost=0.5,seed=7")
	s := newScenario(t, dh, "faults")
	w := s.startWatch("watch") // filesystem events (no --poll)

	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	// checkpoint-20's adapter was trained for another model: its LoRA shapes do not match the base.
	other, err := testmodel.GenerateBase(ctx, filepath.Join(t.TempDir(), "other"), testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testmodel.WriteCheckpoint(ctx, s.out, 20, adapterSpec(), testmodel.CheckpointOptions{Base: other}); err != nil {
		t.Fatal(err)
	}
	if err := s.writeCheckpoint(ctx, 30, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	rep := s.waitFinished(w, 120*time.Second, 10, 20, 30)
	if !w.running() {
		t.Fatalf("the daemon exited after a failed job")
	}
	if stageOf(rep, 10) != journal.Committed || stageOf(rep, 30) != journal.Committed || stageOf(rep, 20) != journal.Failed {
		t.Fatalf("jobs %s; want 10 and 30 committed, 20 failed", describe(rep))
	}
	s.verifyPublished(ctx, 10, 30)

	rep = s.status()
	bad := job(rep, 20)
	if bad == nil || bad.Stage != journal.Failed {
		t.Fatalf("status: step 20 is %+v", bad)
	}
	// The reason names the file and the problem.
	if !strings.Contains(bad.Reason, "adapter_model.safetensors") || !strings.Contains(bad.Reason, "shape") {
		t.Errorf("step 20 failed with reason %q; want it to name adapter_model.safetensors and the shape problem", bad.Reason)
	}
	code, out := run(t, "status-table", s.env(), 30*time.Second, "status")
	if code != 0 || !strings.Contains(out, "failed") || !strings.Contains(out, "adapter_model.safetensors") {
		t.Errorf("hubsync status: exit %d, the table does not show the failure:\n%s", code, out)
	}
	st := dh.Stats(t)
	t.Logf("faults injected: %v; failed reason: %s", st.Faults, bad.Reason)
	if len(st.Faults) == 0 {
		t.Errorf("no fault was injected; the test proves nothing about them")
	}
	if code, _ := w.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// TestWatchRotation: the trainer's save_total_limit rotation deletes a checkpoint while the daemon uploads it;
// the upload completes with the checkpoint's content (it was pinned by hard links).
func TestWatchRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	shared.expectedFor(t, 20)
	lh := startLocalHub(t)
	s := newScenario(t, lh, "rotation")
	w := s.startWatch("watch", "--poll", "50ms")
	// One part of checkpoint-10 fails four times: its retries hold the upload for the client's backoffs (full
	// jitter, uniform in [0, 1 s], [0, 2 s], [0, 4 s], [0, 8 s]; all four under half a second: p ≈ 4e-5).
	lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpPartPut, Kind: hubtest.FaultStatus, Status: 503, Count: 4, Part: 5})

	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{SaveTotalLimit: 1}); err != nil {
		t.Fatal(err)
	}
	s.waitStage(w, 10, 60*time.Second, journal.Uploading)
	waitFor(t, 30*time.Second, "a part fault to fire", func() bool { return faultsFired(lh) > 0 })
	// The next save rotates checkpoint-10 away (save_total_limit=1), mid-upload.
	if err := s.writeCheckpoint(ctx, 20, false, testmodel.CheckpointOptions{SaveTotalLimit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.out, "checkpoint-10")); !os.IsNotExist(err) {
		t.Fatalf("the rotation did not delete checkpoint-10: %v", err)
	}
	if st := stageOf(s.snapshot(), 10); st != journal.Uploading {
		t.Fatalf("checkpoint-10 was %s when the rotation deleted it; the test wants it mid-upload", st)
	}
	rep := s.waitFinished(w, 90*time.Second, 10, 20)
	if stageOf(rep, 10) != journal.Committed || stageOf(rep, 20) != journal.Committed {
		t.Fatalf("jobs %s; want both committed", describe(rep))
	}
	s.verifyPublished(ctx, 10, 20)
	if code, _ := w.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// faultsFired is the number of faults the in-process Hub has injected.
func faultsFired(lh *localHub) int64 {
	var n int64
	for _, c := range lh.srv.Stats().Faults {
		n += c
	}
	return n
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
