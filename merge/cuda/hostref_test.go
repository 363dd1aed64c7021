//go:build cuda

package cuda

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

// TestHostKernelsMatchCPU runs random tiles of every kind through hsmath.cuh's functions (the CUDA kernels'
// arithmetic, on the host) and through the Go CPU backend with every kernel set this CPU has, and requires the
// same output bytes, work values, column sums of squares and first non-finite index.
func TestHostKernelsMatchCPU(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for _, k := range kernels.Available() {
		t.Run(k.Name, func(t *testing.T) {
			fused := fuses(k)
			cpu := merge.NewCPUBackend(k)
			rng := rand.New(rand.NewPCG(9, uint64(len(k.Name))))
			for i := 0; i < n; i++ {
				c := randCase(rng)
				if c.dora == merge.DoRARows && k.Name != "generic" {
					// The assembly's SumSquares sums in vector lanes (its bits are not specified); the CUDA kernels
					// follow the portable order, so DoRA rows are compared against the generic kernels only.
					continue
				}
				want := c.build(rng)
				got := clone(want)
				if err := cpu.MergeTile(context.Background(), want); err != nil {
					t.Fatalf("%v: cpu: %v", c, err)
				}
				mergeTileHost(got, fused)
				if got.NonFinite != want.NonFinite {
					t.Fatalf("%v: first non-finite %d, cpu %d", c, got.NonFinite, want.NonFinite)
				}
				if i := outDiff(c.out, got.Out, want.Out); i >= 0 {
					t.Fatalf("%v: output element %d differs from the cpu backend's", c, i)
				}
				for j := range want.Work {
					if g, w := got.Work[j], want.Work[j]; math.Float32bits(g) != math.Float32bits(w) && (g == g || w == w) {
						t.Fatalf("%v: work[%d] = %x, cpu %x", c, j, math.Float32bits(got.Work[j]), math.Float32bits(want.Work[j]))
					}
				}
				for j := range want.ColSumSq {
					if g, w := got.ColSumSq[j], want.ColSumSq[j]; math.Float64bits(g) != math.Float64bits(w) && (g == g || w == w) {
						t.Fatalf("%v: column sum of squares %d = %v, cpu %v", c, j, got.ColSumSq[j], want.ColSumSq[j])
					}
				}
			}
		})
	}
}

// TestFusesProbe checks the probe against the two arithmetics it tells apart.
func TestFusesProbe(t *testing.T) {
	a := float32(1 + 0x1p-12)
	c := float32(-(1 + 0x1p-11))
	if got := float32(math.FMA(float64(a), float64(a), float64(c))); got == 0 {
		t.Fatalf("fused 1+2^-12 squared minus 1+2^-11 = 0")
	}
	if p := a * a; p+c != 0 {
		t.Fatalf("unfused product keeps 2^-24: %v", p+c)
	}
}
