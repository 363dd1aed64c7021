//go:build cuda

package cuda

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// benchTiles are the kinds BenchmarkKernelThroughput times: large tiles (gpuTileElems elements, a 4096×1024 slice
// of a projection) of the three shapes that dominate merges.
var benchTiles = []struct {
	name string
	c    tileCase
}{
	{"bf16_lora_r16", tileCase{srcDType: tensor.BF16, r: 16, out: tensor.BF16, rows: 4096, cols: 1024}},
	{"nf4_dq_lora_r16", tileCase{packed: true, blocksize: 64, baseRound: tensor.BF16, r: 16, out: tensor.BF16, rows: 4096, cols: 1024}},
	{"bf16_dora_rows_r16", tileCase{srcDType: tensor.BF16, r: 16, dora: merge.DoRARows, out: tensor.BF16, rows: 4096, cols: 1024}},
}

// BenchmarkKernelThroughput times the device kernels on tiles already on the device (no host copies in the timed
// part) and, in the same run and on the same stream, a device-to-device cuMemcpyDtoDAsync moving the same traffic
// (half the tile's input + output bytes copied: read once, written once). It reports both as GB/s of
// (input + output bytes) and their ratio (the goal is copy_ratio ≥ 0.7). Without a CUDA device it is skipped
// with the reason.
func BenchmarkKernelThroughput(b *testing.B) {
	p := Provider()
	if !p.Available() {
		b.Skipf("CUDA unavailable: %s", p.Unavailable())
	}
	g, err := openGPU("bench", true)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	for _, bt := range benchTiles {
		b.Run(bt.name, func(b *testing.B) {
			if bt.c.rows*bt.c.cols != gpuTileElems {
				b.Fatalf("tile of %d elements, the backend's is %d", bt.c.rows*bt.c.cols, gpuTileElems)
			}
			t := bt.c.build(rand.New(rand.NewPCG(9, 13)))
			traffic, err := g.benchStage(t)
			if err != nil {
				b.Fatal(err)
			}
			half := traffic / 2
			if err := g.benchCopy(half, 1); err != nil { // allocates, warms up
				b.Fatal(err)
			}
			if err := g.benchKernels(1); err != nil { // warms up
				b.Fatal(err)
			}
			var kern, cp time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := g.benchKernels(1); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := g.benchCopy(half, 1); err != nil {
					b.Fatal(err)
				}
				kern += t1.Sub(t0)
				cp += time.Since(t1)
			}
			b.StopTimer()
			gbps := func(d time.Duration) float64 { return float64(traffic) * float64(b.N) / d.Seconds() / 1e9 }
			kg, cg := gbps(kern), float64(2*int64(half))*float64(b.N)/cp.Seconds()/1e9
			b.ReportMetric(kg, "kernel_GB/s")
			b.ReportMetric(cg, "copy_GB/s")
			b.ReportMetric(kg/cg, "copy_ratio")
		})
	}
}
