package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/merge"
)

// BenchmarkPublishCheckpoint measures the one-shot pipeline (merge, shard, upload to the in-process test Hub,
// commit, tag) against the merge alone on the same checkpoint, in MB/s of merged output. The difference is what
// staging, digests, the protocol and the local Hub cost per byte.
func BenchmarkPublishCheckpoint(b *testing.B) {
	fx := testBase(b)
	ckpt := writeCheckpoint(b, b.TempDir(), 100, nil)
	probe, err := merge.Run(context.Background(), merge.Options{Base: fx.dir, Adapter: ckpt,
		Out: filepath.Join(b.TempDir(), "probe"), MaxShardSize: testShard, Device: "cpu"})
	if err != nil {
		b.Fatal(err)
	}
	var outBytes int64
	for _, f := range probe.Files {
		outBytes += f.Size
	}
	b.Run("merge-only", func(b *testing.B) {
		b.SetBytes(outBytes)
		for i := 0; i < b.N; i++ {
			if _, err := merge.Run(context.Background(), merge.Options{Base: fx.dir, Adapter: ckpt,
				Out: filepath.Join(b.TempDir(), "m"), MaxShardSize: testShard, Device: "cpu"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("publish", func(b *testing.B) {
		s := newTestHub(b)
		env := &Env{Client: testClient(b, s)}
		b.SetBytes(outBytes)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tg := Target{Repo: fmt.Sprintf("w/bench-%d", i), Tag: "step-100", MaxShardSize: testShard, Device: "cpu"}
			if _, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
}
