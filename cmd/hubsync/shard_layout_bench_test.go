package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// BenchmarkShardLayoutSecondCheckpoint measures what the local Hub receives for the second checkpoint of a run
// whose adapter targets q_proj and v_proj, published with push --merged under --shard-layout delta and hf. The
// shape is $HUBSYNC_BENCH_PRESET (tinyllama, the default, or llama3-8b; 8B needs ~50 GB of disk). Run it once:
//
//	go test ./cmd/hubsync -run '^$' -bench ShardLayoutSecondCheckpoint -benchtime 1x -v
//
// It reports delta-bytes and hf-bytes (storage bytes received for checkpoint 2) and delta-objects/hf-objects.
func BenchmarkShardLayoutSecondCheckpoint(b *testing.B) {
	preset := os.Getenv("HUBSYNC_BENCH_PRESET")
	if preset == "" {
		preset = "tinyllama"
	}
	spec, err := benchPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	spec.FastRandomCodes = true
	hubcliIsolate(b)
	ctx := context.Background()
	dir := b.TempDir()
	base := filepath.Join(dir, "base")
	info, err := testmodel.GenerateBase(ctx, base, spec)
	if err != nil {
		b.Fatal(err)
	}
	outputs := filepath.Join(dir, "outputs")
	ad := testmodel.AdapterSpec{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "v_proj"}, Seed: 3}
	var ckpts []string
	for _, step := range []int{500, 1000} {
		c, err := testmodel.WriteCheckpoint(ctx, outputs, step, ad, testmodel.CheckpointOptions{Base: info, OptimizerSize: 1 << 10})
		if err != nil {
			b.Fatal(err)
		}
		ckpts = append(ckpts, c)
	}
	s := hubtest.NewTestServer(b, hubtest.Options{Tokens: []hubtest.Token{{Name: "w", Value: hubcliToken, Write: true}}})
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	b.ResetTimer()
	for b.Loop() {
		for _, layout := range []export.ShardLayout{export.ShardLayoutDelta, export.ShardLayoutHF} {
			repo := "w/bench-" + string(layout) + "-" + time.Now().Format("150405.000000")
			var before hubtest.Stats
			var took time.Duration
			for _, c := range ckpts {
				before = s.Stats()
				start := time.Now()
				code, _, errb := hubcliRun(b, append(append([]string{}, g...), "push", c, "--repo", repo, "--merged",
					"--base", base, "--device", "cpu", "--shard-layout", string(layout))...)
				if code != 0 {
					b.Fatalf("%s: push %s: exit %d\n%s", layout, c, code, errb)
				}
				took = time.Since(start)
			}
			oids, n := receivedSince(before, s.Stats())
			b.ReportMetric(float64(n), string(layout)+"-bytes")
			b.ReportMetric(float64(len(oids)), string(layout)+"-objects")
			b.Logf("%s %s: checkpoint 2: %d bytes in %d LFS objects received by the local Hub; push took %s",
				preset, layout, n, len(oids), took.Round(time.Millisecond))
		}
	}
}
