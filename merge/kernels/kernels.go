// Package kernels holds the CPU compute kernels of the merge: 4-bit dequantization, the low-rank LoRA update,
// rounding and encoding to 16-bit floats, and the reductions DoRA needs. Every kernel has a portable Go version
// (generic) and, on amd64, assembly versions chosen at run time by CPU feature; HUBSYNC_KERNEL forces one.
//
// All kernels work on tiles small enough to stay in cache; the merge planner cuts tensors into row tiles whose
// boundaries do not depend on the number of threads, so the output is the same for any core count.
package kernels

import (
	"fmt"
	"os"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
)

// EnvVar names the environment variable that forces a kernel implementation ("generic", "avx2", "avx512").
const EnvVar = "HUBSYNC_KERNEL"

// Impl is one implementation of the kernel set. Every function has the semantics documented on the generic
// version (generic.go); implementations may differ only in the rounding of AddLowRank's and SumSquares'
// accumulations (fused multiply-add versus separate operations, summation order), never in Dequant4, Round,
// Encode or Decode, which are bit-exact.
type Impl struct {
	// Name identifies the implementation: "generic", "avx2", "avx512".
	Name string
	// Dequant4 dequantizes len(dst) 4-bit codes starting at flat element index k. See dequant4Generic.
	Dequant4 func(dst []float32, packed []byte, k int64, code *[16]float32, scales []float32, blocksize int)
	// Round rounds every value to dtype d (BF16 or F16; F32 is a no-op) and widens it back, in place.
	Round func(d tensor.DType, x []float32)
	// AddLowRank adds coef·m to dst. See addLowRankGeneric.
	AddLowRank func(dst, coef, m []float32, rows, cols, r int)
	// Encode rounds src to d (F32, F16, BF16) into little-endian dst and returns the index of the first element
	// that is not finite after rounding, or -1.
	Encode func(d tensor.DType, src []float32, dst []byte) int
	// Decode widens little-endian F32, F16 or BF16 elements of src into dst.
	Decode func(d tensor.DType, src []byte, dst []float32)
	// SumSquares returns Σ x[i]² (accumulated in at least float32 precision with pairwise or lane-wise partial
	// sums; callers compare against float64 with a relative tolerance).
	SumSquares func(x []float32) float64
	// AddSquares adds x[j]² to acc[j] for every j (column sums of squares, for DoRA on embeddings).
	AddSquares func(acc []float64, x []float32)
	// Scale multiplies x[i] by s[i] (per-element scale factors), in place.
	Scale func(x []float32, s []float32)
}

// Generic returns the portable Go implementation.
func Generic() *Impl { return genericImpl }

// Available lists the implementations this CPU can run, best first; the generic one is always last.
func Available() []*Impl {
	return append(archImpls(), genericImpl)
}

// Select returns the implementation with the given name; "" or "auto" picks the best one this CPU supports.
func Select(name string) (*Impl, error) {
	avail := Available()
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || name == "auto" {
		return avail[0], nil
	}
	var names []string
	for _, im := range avail {
		if im.Name == name {
			return im, nil
		}
		names = append(names, im.Name)
	}
	return nil, fmt.Errorf("kernel %q is not available on this CPU (available: %s)", name, strings.Join(names, ", "))
}

// FromEnv selects the implementation named by $HUBSYNC_KERNEL, or the best one when it is unset.
func FromEnv() (*Impl, error) {
	im, err := Select(os.Getenv(EnvVar))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	return im, nil
}

var genericImpl = &Impl{
	Name:       "generic",
	Dequant4:   dequant4Generic,
	Round:      roundGeneric,
	AddLowRank: addLowRankGeneric,
	Encode:     encodeGeneric,
	Decode:     decodeGeneric,
	SumSquares: sumSquaresGeneric,
	AddSquares: addSquaresGeneric,
	Scale:      scaleGeneric,
}
