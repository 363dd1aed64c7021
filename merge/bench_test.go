package merge

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge/kernels"
)

// benchModel generates a mid-sized NF4 double-quant base (hidden 1024, 2 layers, vocab 8000) and an r=16
// adapter on all projections.
func benchModel(b *testing.B) (base, adapter string) {
	b.Helper()
	dir := b.TempDir()
	spec := testmodel.BaseSpec{Arch: testmodel.ArchLlama, Hidden: 1024, Intermediate: 2816, Layers: 2, Heads: 16, KVHeads: 4,
		Vocab: 8000, Quant: testmodel.QuantNF4, DoubleQuant: true, Blocksize: 64, FastRandomCodes: true, Seed: 1}
	c := mergeCase{base: spec, adapter: testmodel.AdapterSpec{R: 16, Alpha: 32, TargetModules: testmodel.AllLinear(), Seed: 2}}
	return c.generate(b, dir)
}

// BenchmarkMergeCompute measures the tile pipeline alone (reads from the page cache, dequant, LoRA, rounding,
// in-order hand-off) with the output discarded: the merge's compute ceiling, per kernel set.
func BenchmarkMergeCompute(b *testing.B) {
	base, adapter := benchModel(b)
	for _, k := range kernels.Available() {
		b.Run(k.Name, func(b *testing.B) {
			p, err := NewPlan(context.Background(), Options{Base: base, Adapter: adapter, Out: filepath.Join(b.TempDir(), "o"), Kernel: k})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.SetBytes(p.OutputBytes())
			b.ResetTimer()
			for range b.N {
				st := newStream(context.Background(), p, p.tensors)
				for _, t := range p.tensors {
					ti := tensorInfo(t)
					if err := st.fill(context.Background(), ti, io.Discard); err != nil {
						b.Fatal(err)
					}
				}
				st.stop()
			}
			b.ReportMetric(float64(p.OutputBytes())*float64(b.N)/1e9/b.Elapsed().Seconds(), "GB/s")
		})
	}
}

// BenchmarkMergeToDisk measures whole merges into a directory (hashing, writing and fsync included).
func BenchmarkMergeToDisk(b *testing.B) {
	base, adapter := benchModel(b)
	dir := b.TempDir()
	var bytes int64
	b.ResetTimer()
	for i := range b.N {
		res, err := Run(context.Background(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "o", string(rune('a'+i%26)), "m")})
		if err != nil {
			b.Fatal(err)
		}
		bytes = res.Bytes
		b.StopTimer()
		removeAll(b, res.Dir)
		b.StartTimer()
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(bytes)*float64(b.N)/1e9/b.Elapsed().Seconds(), "GB/s")
}

// BenchmarkMergeComputeTileSize compares tile sizes (CPU backend, best kernels).
func BenchmarkMergeComputeTileSize(b *testing.B) {
	base, adapter := benchModel(b)
	for _, elems := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprint(elems>>10, "Ki"), func(b *testing.B) {
			p, err := NewPlan(context.Background(), Options{Base: base, Adapter: adapter, Out: filepath.Join(b.TempDir(), "o"),
				Backends: smallTileBackend(elems), Device: "small"})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.SetBytes(p.OutputBytes())
			b.ResetTimer()
			for range b.N {
				st := newStream(context.Background(), p, p.tensors)
				for _, t := range p.tensors {
					if err := st.fill(context.Background(), tensorInfo(t), io.Discard); err != nil {
						b.Fatal(err)
					}
				}
				st.stop()
			}
			b.ReportMetric(float64(p.OutputBytes())*float64(b.N)/1e9/b.Elapsed().Seconds(), "GB/s")
		})
	}
}
