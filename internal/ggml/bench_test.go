package ggml

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
)

// benchInput is 16 rows of 4096 Gaussian weights (256 KiB of float32).
func benchInput() ([]float32, int) {
	const ncols = 4096
	r := rand.New(rand.NewPCG(1, 2))
	return matrices[0].gen(r, 16*ncols, ncols), ncols
}

// BenchmarkQuantize reports each quantizer's single-goroutine throughput in MB/s of float32 input.
func BenchmarkQuantize(b *testing.B) {
	x, ncols := benchInput()
	for _, ty := range allTypes {
		b.Run(ty.String(), func(b *testing.B) {
			rs, _ := ty.RowSize(ncols)
			dst := make([]byte, len(x)/ncols*rs)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := Quantize(ty, dst, x, ncols); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuantizeParallel is Q4_K and Q6_K (the Q4_K_M mix) over GOMAXPROCS workers.
func BenchmarkQuantizeParallel(b *testing.B) {
	x, ncols := benchInput()
	x = append(append(append(x, x...), x...), x...) // 64 rows, enough chunks for the workers
	for _, ty := range []Type{Q4_K, Q6_K} {
		b.Run(ty.String(), func(b *testing.B) {
			rs, _ := ty.RowSize(ncols)
			dst := make([]byte, len(x)/ncols*rs)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := QuantizeParallel(context.Background(), ty, dst, x, ncols, runtime.GOMAXPROCS(0)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
