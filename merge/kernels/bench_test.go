package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/tensor"
)

// Throughput figures count float32 bytes (4 per element) processed: produced by Dequant4 and Decode, consumed by
// Encode, rewritten in place by Round and Scale.

const benchElems = 64 << 10 // a 256 KiB float32 tile, e.g. 32 rows of 2048

func forEachImpl(b *testing.B, f func(b *testing.B, im *Impl)) {
	for _, im := range Available() {
		b.Run(im.Name, func(b *testing.B) { f(b, im) })
	}
}

// reportGBs reports float32 throughput; call after the timed loop.
func reportGBs(b *testing.B, elems int) {
	b.ReportMetric(float64(4*elems)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkDequant4(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const bs = 64
	packed := make([]byte, benchElems/2)
	for i := range packed {
		packed[i] = byte(rng.Uint32())
	}
	scales := nonZero(rng, benchElems/bs)
	dst := make([]float32, benchElems)
	forEachImpl(b, func(b *testing.B, im *Impl) {
		b.SetBytes(4 * benchElems)
		for b.Loop() {
			im.Dequant4(dst, packed, 0, &nf4, scales, bs)
		}
		reportGBs(b, benchElems)
	})
}

var benchDTypes = []tensor.DType{tensor.BF16, tensor.F16}

func BenchmarkRound(b *testing.B) {
	x := nonZero(rand.New(rand.NewPCG(3, 4)), benchElems)
	for _, d := range benchDTypes {
		b.Run(d.String(), func(b *testing.B) {
			forEachImpl(b, func(b *testing.B, im *Impl) {
				b.SetBytes(4 * benchElems)
				for b.Loop() {
					im.Round(d, x)
				}
				reportGBs(b, benchElems)
			})
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	x := nonZero(rand.New(rand.NewPCG(5, 6)), benchElems)
	for _, d := range benchDTypes {
		out := make([]byte, benchElems*d.Size())
		b.Run(d.String(), func(b *testing.B) {
			forEachImpl(b, func(b *testing.B, im *Impl) {
				b.SetBytes(4 * benchElems)
				for b.Loop() {
					if im.Encode(d, x, out) >= 0 {
						b.Fatal("unexpected non-finite value")
					}
				}
				reportGBs(b, benchElems)
			})
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	x := nonZero(rand.New(rand.NewPCG(7, 8)), benchElems)
	dst := make([]float32, benchElems)
	for _, d := range benchDTypes {
		src := make([]byte, benchElems*d.Size())
		Generic().Encode(d, x, src)
		b.Run(d.String(), func(b *testing.B) {
			forEachImpl(b, func(b *testing.B, im *Impl) {
				b.SetBytes(4 * benchElems)
				for b.Loop() {
					im.Decode(d, src, dst)
				}
				reportGBs(b, benchElems)
			})
		})
	}
}

// BenchmarkAddLowRank: a 16-row tile of a 4096-wide weight (256 KiB of float32), ranks 16 and 64.
func BenchmarkAddLowRank(b *testing.B) {
	const rows, cols = 16, 4096
	rng := rand.New(rand.NewPCG(9, 10))
	dst := nonZero(rng, rows*cols)
	for _, r := range []int{16, 64} {
		coef, m := nonZero(rng, rows*r), nonZero(rng, r*cols)
		for i := range coef {
			coef[i] *= 1e-6 // keep dst bounded over many iterations
		}
		b.Run(fmt.Sprintf("r=%d", r), func(b *testing.B) {
			forEachImpl(b, func(b *testing.B, im *Impl) {
				b.SetBytes(4 * rows * cols)
				for b.Loop() {
					im.AddLowRank(dst, coef, m, rows, cols, r)
				}
				b.ReportMetric(2*float64(rows*cols*r)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		})
	}
}

func BenchmarkSumSquares(b *testing.B) {
	x := nonZero(rand.New(rand.NewPCG(11, 12)), benchElems)
	forEachImpl(b, func(b *testing.B, im *Impl) {
		b.SetBytes(4 * benchElems)
		var s float64
		for b.Loop() {
			s += im.SumSquares(x)
		}
		if s <= 0 {
			b.Fatal("sum of squares of non-zero values is not positive")
		}
		reportGBs(b, benchElems)
	})
}

func BenchmarkAddSquares(b *testing.B) {
	x := nonZero(rand.New(rand.NewPCG(13, 14)), benchElems)
	acc := make([]float64, benchElems)
	forEachImpl(b, func(b *testing.B, im *Impl) {
		b.SetBytes(4 * benchElems)
		for b.Loop() {
			im.AddSquares(acc, x)
		}
		reportGBs(b, benchElems)
	})
}

func BenchmarkScale(b *testing.B) {
	rng := rand.New(rand.NewPCG(15, 16))
	x, s := nonZero(rng, benchElems), make([]float32, benchElems)
	for i := range s {
		s[i] = 1 // keeps x unchanged across iterations
	}
	forEachImpl(b, func(b *testing.B, im *Impl) {
		b.SetBytes(4 * benchElems)
		for b.Loop() {
			im.Scale(x, s)
		}
		reportGBs(b, benchElems)
	})
}

// fusedTile is the merge's per-tile chain on a 32-row, 2048-wide tile of an NF4 base with blocksize 64 and a
// rank-16 LoRA: Dequant4 → Round(BF16) → AddLowRank → Encode(BF16).
type fusedTile struct {
	packed        []byte
	scales        []float32
	coef, m, work []float32
	out           []byte
}

const fusedRows, fusedCols, fusedRank = 32, 2048, 16

func newFusedTile() *fusedTile {
	rng := rand.New(rand.NewPCG(17, 18))
	n := fusedRows * fusedCols
	ft := &fusedTile{packed: make([]byte, n/2), scales: nonZero(rng, n/64), coef: nonZero(rng, fusedRows*fusedRank),
		m: nonZero(rng, fusedRank*fusedCols), work: make([]float32, n), out: make([]byte, 2*n)}
	for i := range ft.packed {
		ft.packed[i] = byte(rng.Uint32())
	}
	return ft
}

func (ft *fusedTile) run(im *Impl) int {
	im.Dequant4(ft.work, ft.packed, 0, &nf4, ft.scales, 64)
	im.Round(tensor.BF16, ft.work)
	im.AddLowRank(ft.work, ft.coef, ft.m, fusedRows, fusedCols, fusedRank)
	return im.Encode(tensor.BF16, ft.work, ft.out)
}

func (ft *fusedTile) bench(b *testing.B, im *Impl) {
	b.SetBytes(4 * fusedRows * fusedCols)
	for b.Loop() {
		if ft.run(im) >= 0 {
			b.Fatal("unexpected non-finite value")
		}
	}
	b.ReportMetric(float64(fusedRows*fusedCols)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}

// BenchmarkFusedTile reports elements per second and, for each implementation, its speed-up over generic measured
// in the same run ("x_generic": the generic chain is timed first, median of 5 batches of at least 50 ms).
func BenchmarkFusedTile(b *testing.B) {
	ft := newFusedTile()
	base := medianTime(func() { ft.run(Generic()) }, 5, 50*time.Millisecond)
	forEachImpl(b, func(b *testing.B, im *Impl) {
		ft.bench(b, im)
		own := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(base.Seconds()/own, "x_generic")
	})
}

// medianTime returns the median over batches of the time one call of f takes, each batch running f for at
// least minBatch.
func medianTime(f func(), batches int, minBatch time.Duration) time.Duration {
	per := make([]time.Duration, batches)
	for i := range per {
		n := 0
		start := time.Now()
		for time.Since(start) < minBatch {
			f()
			n++
		}
		per[i] = time.Since(start) / time.Duration(n)
	}
	slices.Sort(per)
	return per[batches/2]
}
