package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/safetensors"
)

// stagedShards lists the .safetensors files under dir (recursively).
func stagedShards(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".safetensors") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// watchStaging returns a hub progress callback that records, at the first upload event, which shard files the
// staging directory holds.
func watchStaging(t testing.TB, staging string, seen *[]string, once *sync.Once) func(hub.ProgressEvent) {
	return func(ev hub.ProgressEvent) {
		if ev.Phase == hub.PhaseUploading {
			once.Do(func() { *seen = stagedShards(t, staging) })
		}
	}
}

// TestPublishStagingNoneEqualsDisk publishes one checkpoint with staging disk and with staging none, downloads
// both and compares them byte for byte (and with a local merge); with none, no shard is ever in the staging
// directory.
func TestPublishStagingNoneEqualsDisk(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	ckpt := writeCheckpoint(t, t.TempDir(), 500, nil)
	c := testClient(t, s)
	got := map[string]map[string]string{}
	for _, mode := range []string{StagingDisk, StagingNone} {
		repo := "w/staging-" + mode
		staging := filepath.Join(t.TempDir(), "staging")
		var seen []string
		var once sync.Once
		tg := Target{Repo: repo, Publish: config.PublishMerged, Tag: "step-500", MaxShardSize: testShard, Device: "cpu", Staging: mode}
		if _, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{Staging: staging,
			Progress: watchStaging(t, staging, &seen, &once)}); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if mode == StagingNone && len(seen) != 0 {
			t.Errorf("staging none: shard files on disk during the upload: %v", seen)
		}
		if mode == StagingDisk && len(seen) == 0 {
			t.Errorf("staging disk: no shard files in the staging directory during the upload")
		}
		got[mode] = repoFiles(t, c, repo, "step-500")
		// The model card names the repo; compare it against a local merge for that repo.
		sameDigests(t, mode, got[mode], referenceMerge(t, ckpt, testShard, repo))
	}
	shards := 0
	for p, d := range got[StagingDisk] {
		if strings.HasSuffix(p, ".safetensors") {
			shards++
			if got[StagingNone][p] != d {
				t.Errorf("%s: staging none uploaded %s, disk %s", p, got[StagingNone][p], d)
			}
		}
	}
	if shards < 2 {
		t.Fatalf("want a sharded model, got %v", got[StagingDisk])
	}
}

func TestChooseStaging(t *testing.T) {
	const need = 1000
	cases := []struct {
		mode  string
		avail int64
		err   error
		want  string
	}{
		{"", 1999, nil, StagingNone},
		{StagingAuto, 1999, nil, StagingNone},
		{StagingAuto, 2000, nil, StagingDisk},
		{StagingAuto, 0, errors.New("statfs failed"), StagingDisk},
		{StagingDisk, 10, nil, StagingDisk},
		{StagingNone, 1 << 40, nil, StagingNone},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%d", c.mode, c.avail), func(t *testing.T) {
			var asked string
			env := &Env{AvailableBytes: func(dir string) (int64, error) { asked = dir; return c.avail, c.err }}
			got, why := env.chooseStaging(c.mode, "/staging", need)
			if got != c.want {
				t.Errorf("chooseStaging(%q, avail %d) = %s (%s), want %s", c.mode, c.avail, got, why, c.want)
			}
			if why == "" {
				t.Error("no reason given")
			}
			if (c.mode == "" || c.mode == StagingAuto) && asked != "/staging" {
				t.Errorf("free space asked of %q", asked)
			}
		})
	}
}

// TestPublishStagingAutoSmallDisk: auto with an injected small free space stages nothing on disk.
func TestPublishStagingAutoSmallDisk(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	env.AvailableBytes = func(string) (int64, error) { return 1 << 20, nil } // far less than twice the output
	ckpt := writeCheckpoint(t, t.TempDir(), 500, nil)
	staging := filepath.Join(t.TempDir(), "staging")
	var seen []string
	var once sync.Once
	tg := Target{Repo: "w/auto", Publish: config.PublishMerged, Tag: "step-500", MaxShardSize: testShard, Device: "cpu"}
	if _, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{Staging: staging,
		Progress: watchStaging(t, staging, &seen, &once)}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Errorf("auto on a small file system staged shards: %v", seen)
	}
	sameDigests(t, "auto", repoFiles(t, testClient(t, s), "w/auto", "step-500"), referenceMerge(t, ckpt, testShard, "w/auto"))
}

// copyDir copies the regular files of src into dst (one level).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.WriteFile(filepath.Join(dst, e.Name()), mustRead(t, filepath.Join(src, e.Name())), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// corruptBase changes, in place, the packed 4-bit codes of every q_proj weight of the base's safetensors files
// (still valid codes: every value stays finite).
func corruptBase(t testing.TB, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".safetensors") {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		h, err := safetensors.ReadHeader(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range h.Names() {
			if !strings.HasSuffix(name, "q_proj.weight") {
				continue
			}
			ti, _ := h.Lookup(name)
			b := make([]byte, ti.Size())
			if _, err := f.ReadAt(b, h.DataOffset()+ti.Begin); err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] ^= 0x11
			}
			if _, err := f.WriteAt(b, h.DataOffset()+ti.Begin); err != nil {
				t.Fatal(err)
			}
			n++
		}
		f.Close()
	}
	if n == 0 {
		t.Fatal("no q_proj weight found to change")
	}
}

// TestPublishStagingNoneBaseChanged: a base file modified between pass one and pass two aborts the publish
// with a clear error and nothing committed.
func TestPublishStagingNoneBaseChanged(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	base := filepath.Join(t.TempDir(), "base")
	copyDir(t, testBase(t).dir, base)
	ckpt := writeCheckpoint(t, t.TempDir(), 500, nil)
	var changed atomic.Bool
	tg := Target{Repo: "w/changed", Publish: config.PublishMerged, Tag: "step-500", MaxShardSize: testShard,
		Device: "cpu", Staging: StagingNone, Base: base}
	_, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{
		MergeProgress: func(done, total int64) {
			if done == total && !changed.Swap(true) {
				corruptBase(t, base) // pass one is over
			}
		},
	})
	if !changed.Load() {
		t.Fatal("pass one never finished")
	}
	if !errors.Is(err, hub.ErrContentChanged) || !strings.Contains(err.Error(), "differ from the first pass") {
		t.Fatalf("err = %v, want a content-changed error", err)
	}
	c := testClient(t, s)
	if n := commitCount(t, c, "w/changed", "main"); n != 1 {
		t.Errorf("%d commits on main, want only the initial one", n)
	}
	if st := s.Stats(); st.Commits != 0 {
		t.Errorf("%d commits made", st.Commits)
	}
}

// TestPublishStagingNoneResume interrupts a staging-none upload (context cancelled once some parts are stored)
// and publishes again with the same Hub journal: no part is stored twice, and the result is complete.
func TestPublishStagingNoneResume(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	j, err := hub.OpenBoltJournal(filepath.Join(t.TempDir(), "uploads.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: testToken, Retry: hub.TestFastRetries(), Journal: j,
		ParallelFiles: 1, ParallelParts: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	env := &Env{Client: c, Log: testLogger(t), MergeThreads: 2}
	ckpt := writeCheckpoint(t, t.TempDir(), 500, nil)
	tg := Target{Repo: "w/resume", Publish: config.PublishMerged, Tag: "step-500", MaxShardSize: testShard,
		Device: "cpu", Staging: StagingNone}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stored := func() (n int64) {
		for _, v := range s.Stats().PartsStored {
			n += v
		}
		return n
	}
	_, err = PublishCheckpoint(ctx, env, tg, ckpt, PublishOptions{Progress: func(ev hub.ProgressEvent) {
		if ev.Phase == hub.PhaseUploading && stored() >= 3 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("the interrupted publish succeeded")
	}
	before := s.Stats().PartsStored
	if len(before) == 0 {
		t.Fatal("no part was stored before the interruption")
	}
	// The parts the client journaled (a part stored while its answer was cut by the cancel is not journaled:
	// it is in flight, and is sent again).
	journaled := map[string]bool{}
	keys, err := j.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		rec, err := j.Get(context.Background(), k)
		if err != nil || rec == nil {
			t.Fatalf("journal record %s: %v", k, err)
		}
		for n := range rec.ETags {
			journaled[fmt.Sprintf("%s/%d", rec.OID, n)] = true
		}
	}
	if len(journaled) == 0 {
		t.Fatal("no part journaled before the interruption")
	}
	if _, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	after := s.Stats().PartsStored
	if len(after) <= len(before) {
		t.Fatalf("%d parts stored after the resume, %d before: the interruption came too late", len(after), len(before))
	}
	t.Logf("parts: %d stored and %d journaled before the interruption, %d in all", len(before), len(journaled), len(after))
	again := 0
	for k, v := range after {
		if journaled[k] && v != 1 {
			t.Errorf("journaled part %s stored %d times", k, v)
		}
		if v > 1 {
			again++
		}
	}
	if again > 2 { // ParallelParts: the parts in flight at the interruption
		t.Errorf("%d parts stored twice, more than the 2 in flight", again)
	}
	sameDigests(t, "resumed", repoFiles(t, testClient(t, s), "w/resume", "step-500"), referenceMerge(t, ckpt, testShard, "w/resume"))
}
