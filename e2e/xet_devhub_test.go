package e2e

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestXetPushDevhub runs `hubsync devhub --xet --faults xet-5xx=…,xorb-reset=…` and `hubsync push CKPT --merged`
// with the default --xet auto, as a user does: the merged model goes up through Xet only (xorbs and shards,
// faults retried, no LFS PUT), lands as a local merge would, the Hub token never reaches the CAS, and
// `hubsync download` brings it back through Xet reconstructions into the HF cache byte for byte.
func TestXetPushDevhub(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	dh := startDevhub(t, "xet-5xx=0.2,xorb-reset=0.25,seed=4", "--xet")
	if !strings.Contains(dh.proc.stdout.String(), "devhub: xet cas on ") {
		t.Errorf("devhub --xet did not print its CAS URL:\n%s", dh.proc.stdout.String())
	}
	s := newScenario(t, dh, "xet-pushed")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(s.out, "checkpoint-10")
	code, _ := run(t, "push", s.env(), 3*time.Minute, "push", ckpt, "--repo", s.repo, "--merged",
		"--base", shared.baseDir, "--tag", "step-10", "--max-shard-size", maxShard, "--log-format", "json")
	if code != 0 {
		t.Fatalf("push --merged: exit %d", code)
	}
	s.verifyPublished(ctx, 10)
	st := dh.Stats(t)
	t.Logf("Xet: %d xorbs stored, %d shards, %d CAS bytes; faults %v", st.Xet.XorbsStored, st.Xet.ShardsStored,
		st.Xet.BytesReceived, st.Faults)
	if st.Xet.ShardsStored < 1 || st.Xet.FilesStored < 1 {
		t.Errorf("%d shards, %d files through Xet; want the merged shards", st.Xet.ShardsStored, st.Xet.FilesStored)
	}
	if n := st.Requests[hubtest.OpBasicPut] + st.Requests[hubtest.OpPartPut]; n != 0 {
		t.Errorf("%d LFS PUTs, want 0", n)
	}
	if st.TokenLeaks != 0 {
		t.Errorf("%d token leaks", st.TokenLeaks)
	}

	before := dh.Stats(t).Xet.Reconstructions
	code, out := run(t, "download", s.env(), 2*time.Minute, "download", s.repo, "--revision", "step-10")
	if code != 0 {
		t.Fatalf("download: exit %d", code)
	}
	snap := strings.TrimSpace(out)
	if !strings.HasPrefix(snap, filepath.Join(s.home, "hf", "hub")) {
		t.Errorf("download printed %q, want a snapshot in $HF_HOME/hub", snap)
	}
	after := dh.Stats(t)
	if after.Xet.Reconstructions-before < int64(st.Xet.FilesStored) {
		t.Errorf("%d reconstructions for %d Xet files", after.Xet.Reconstructions-before, st.Xet.FilesStored)
	}
	for p, want := range shared.expectedIn(t, 10, s.repo).Files {
		b, err := os.ReadFile(filepath.Join(snap, filepath.FromSlash(p)))
		if err != nil || sha256.Sum256(b) != want.SHA256 {
			t.Errorf("downloaded %s: %v, not the local merge's bytes", p, err)
		}
	}
	if after.TokenLeaks != 0 {
		t.Errorf("%d token leaks", after.TokenLeaks)
	}
}
