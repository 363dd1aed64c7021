package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// startLocalXetHub is startLocalHub with the Xet CAS (devhub --xet).
func startLocalXetHub(t testing.TB) *localHub {
	t.Helper()
	l := &localHub{token: newToken(t)}
	l.srv = hubtest.NewTestServer(t, hubtest.Options{
		Tokens:             []hubtest.Token{{Name: repoOwner, Value: l.token, Write: true}},
		MultipartThreshold: 256 << 10, MinPartSize: 64 << 10, ChunkSize: 64 << 10, Xet: true,
	})
	return l
}

// TestXetCrashResume kills the daemon with SIGKILL in the middle of a Xet upload: one file's xorb acknowledged
// by the CAS (and journaled), its shard refused with 503 and waiting for its retry. The restarted daemon
// publishes the checkpoint exactly as an uninterrupted run does, through Xet only, sends no acknowledged xorb
// again and never sends the Hub token to the CAS. One file at a time, so that nothing else is in flight at the
// kill and the count of re-sent xorbs must be zero.
func TestXetCrashResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	lh := startLocalXetHub(t)
	s := newScenario(t, lh, "xet-crash")
	lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpShardPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3})
	w := s.startWatch("watch-1", "--parallel-files", "1")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the shard fault", func() bool { return faultsFired(lh) > 0 })
	if !w.running() {
		t.Fatalf("the daemon exited before the kill: %v", w.err)
	}
	w.kill()
	before := lh.srv.Stats()
	t.Logf("killed with jobs %s; %d xorbs stored, %d shards stored, %d commits", describe(s.snapshot()),
		before.Xet.XorbsStored, before.Xet.ShardsStored, before.Commits)
	if before.Xet.XorbsStored < 1 {
		t.Fatalf("no xorb stored at the kill")
	}

	w2 := s.startWatch("watch-2", "--parallel-files", "1")
	s.waitFinished(w2, 120*time.Second, 10)
	s.verifyPublished(ctx, 10)
	s.checkCommitted(10)
	after := lh.srv.Stats()
	received := after.Xet.XorbsReceived - before.Xet.XorbsReceived
	stored := after.Xet.XorbsStored - before.Xet.XorbsStored
	t.Logf("after the restart: %d xorbs received, %d new", received, stored)
	if received != stored {
		t.Errorf("%d xorbs the CAS had already stored were sent again after the restart", received-stored)
	}
	if n := after.Requests[hubtest.OpBasicPut] + after.Requests[hubtest.OpPartPut]; n != 0 {
		t.Errorf("%d LFS PUTs, want 0 (Xet only)", n)
	}
	if after.TokenLeaks != 0 {
		t.Errorf("%d token leaks", after.TokenLeaks)
	}
	if code, _ := w2.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM after the restart: exit %d", code)
	}
}

// TestXetSIGTERM stops the daemon with SIGTERM while a Xet upload waits for a shard retry: it exits 0 promptly,
// and the next start publishes the checkpoint without sending again a xorb the CAS stored.
func TestXetSIGTERM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	lh := startLocalXetHub(t)
	s := newScenario(t, lh, "xet-sigterm")
	lh.srv.InjectFault(hubtest.FaultRule{Op: hubtest.OpShardPut, Kind: hubtest.FaultStatus, Status: 503, Count: 3})
	w := s.startWatch("watch-1", "--parallel-files", "1")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the shard fault", func() bool { return faultsFired(lh) > 0 })
	code, took := w.terminate(t, 20*time.Second)
	if code != 0 {
		t.Errorf("SIGTERM mid-Xet-upload: exit %d, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %s", took)
	}
	before := lh.srv.Stats()
	if j := job(s.status(), 10); j == nil || finished(j.Stage) && j.Stage != journal.Committed {
		t.Fatalf("after SIGTERM, step 10 is %+v", j)
	}
	w2 := s.startWatch("watch-2", "--parallel-files", "1")
	s.waitFinished(w2, 120*time.Second, 10)
	s.verifyPublished(ctx, 10)
	after := lh.srv.Stats()
	if received, stored := after.Xet.XorbsReceived-before.Xet.XorbsReceived, after.Xet.XorbsStored-before.Xet.XorbsStored; received != stored {
		t.Errorf("%d stored xorbs were sent again after the restart", received-stored)
	}
	if code, _ := w2.terminate(t, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM after the restart: exit %d", code)
	}
}
