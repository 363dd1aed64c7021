//go:build amd64 && !noasm && gc

package kernels

import (
	"encoding/binary"
	"unsafe"

	"github.com/hubsync/hubsync/internal/tensor"
)

const (
	// step is the element granularity of the simple assembly kernels; the Go wrappers finish the last
	// len%step elements with the generic code, which is bit-identical for every bit-exact kernel.
	step = 16
	// sumSquaresStep is sumSquares' granularity.
	sumSquaresStep = 32
	// lowRankPanel bounds the width in float32 of AddLowRank's column panel (AVX-512: 4 vectors of 16; AVX2: 3
	// of 8), and lowRankChunk the number of t per assembly call, together the size of the pack buffer (16 KiB,
	// on the stack).
	lowRankPanel = 64
	lowRankChunk = 64
)

// simd holds one instruction set's assembly kernels; its methods turn them into the Impl contract: bounds
// checks, scalar heads and tails, dtype dispatch.
type simd struct {
	// avx512 selects addLowRankAVX512 over addLowRankAVX2. AddLowRank calls its kernel directly rather than
	// through a func field so that escape analysis keeps its pack buffer on the stack (//go:noescape only
	// applies to direct calls).
	avx512     bool
	dequant4   func(dst *float32, src *byte, code *[16]float32, scales *float32, groups, first, blockGroups int)
	roundBF16  func(x *float32, n int)
	roundF16   func(x *float32, n int)
	encodeBF16 func(dst *byte, src *float32, n int) int
	encodeF16  func(dst *byte, src *float32, n int) int
	encodeF32  func(dst *byte, src *float32, n int) int
	decodeBF16 func(dst *float32, src *byte, n int)
	decodeF16  func(dst *float32, src *byte, n int)
	sumSquares func(x *float32, n int) float64
	addSquares func(acc *float64, x *float32, n int)
	scale      func(x, s *float32, n int)
}

func (s *simd) impl(name string) *Impl {
	return &Impl{
		Name:       name,
		Dequant4:   s.dequant4Wrap,
		Round:      s.roundWrap,
		AddLowRank: s.addLowRankWrap,
		Encode:     s.encodeWrap,
		Decode:     s.decodeWrap,
		SumSquares: s.sumSquaresWrap,
		AddSquares: s.addSquaresWrap,
		Scale:      s.scaleWrap,
	}
}

// dequant4Wrap runs the scalar code up to the first flat index that is a multiple of 16, the assembly over whole
// 16-element groups (each inside one block because blocksize is a multiple of 16), and the scalar code on the
// rest. Block sizes that are not a multiple of 16 (or below 32) take the scalar path.
func (s *simd) dequant4Wrap(dst []float32, packed []byte, k int64, code *[16]float32, scales []float32, blocksize int) {
	n := len(dst)
	if blocksize < 32 || blocksize%16 != 0 || k < 0 || n < 2*step {
		dequant4Generic(dst, packed, k, code, scales, blocksize)
		return
	}
	head := int((step - k%step) % step)
	dequant4Generic(dst[:head], packed, k, code, scales, blocksize)
	bs := int64(blocksize)
	e0 := k + int64(head) // even
	groups := (n - head) / step
	b0 := e0/2 - k/2
	src := packed[b0 : b0+int64(groups*step/2)]
	s0 := e0/bs - k/bs
	last := (e0+int64(groups*step)-1)/bs - k/bs
	_ = scales[last]
	first := int((bs - e0%bs) / step)
	s.dequant4(&dst[head], &src[0], code, &scales[s0], groups, first, blocksize/step)
	if done := head + groups*step; done < n {
		e := k + int64(done)
		dequant4Generic(dst[done:], packed[e/2-k/2:], e, code, scales[e/bs-k/bs:], blocksize)
	}
}

func (s *simd) roundWrap(d tensor.DType, x []float32) {
	n := len(x) &^ (step - 1)
	switch {
	case n == 0:
	case d == tensor.BF16:
		s.roundBF16(&x[0], n)
	case d == tensor.F16:
		s.roundF16(&x[0], n)
	default:
		n = 0
	}
	roundGeneric(d, x[n:])
}

func (s *simd) encodeWrap(d tensor.DType, src []float32, dst []byte) int {
	var kern func(dst *byte, src *float32, n int) int
	switch d {
	case tensor.BF16:
		kern = s.encodeBF16
	case tensor.F16:
		kern = s.encodeF16
	case tensor.F32:
		kern = s.encodeF32
	}
	es := d.Size()
	n := len(src) &^ (step - 1)
	if kern == nil || n == 0 || len(dst) < len(src)*es {
		return encodeGeneric(d, src, dst) // small, or panics with the generic message
	}
	first := -1
	if kern(&dst[0], &src[0], n) != 0 {
		first = firstNonFinite(d, dst[:n*es])
	}
	rest := encodeGeneric(d, src[n:], dst[n*es:])
	if first < 0 && rest >= 0 {
		first = n + rest
	}
	return first
}

// firstNonFinite returns the index of the first encoded F32, F16 or BF16 element of b whose exponent bits are all
// ones (±Inf, NaN), or -1: the same test the generic encoder applies.
func firstNonFinite(d tensor.DType, b []byte) int {
	switch d {
	case tensor.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			if binary.LittleEndian.Uint32(b[i:])&0x7F800000 == 0x7F800000 {
				return i / 4
			}
		}
	case tensor.BF16, tensor.F16:
		mask := uint16(0x7F80)
		if d == tensor.F16 {
			mask = 0x7C00
		}
		for i := 0; i+2 <= len(b); i += 2 {
			if binary.LittleEndian.Uint16(b[i:])&mask == mask {
				return i / 2
			}
		}
	}
	return -1
}

func (s *simd) decodeWrap(d tensor.DType, src []byte, dst []float32) {
	es := d.Size()
	n := len(dst) &^ (step - 1)
	if n == 0 || len(src) < len(dst)*es {
		decodeGeneric(d, src, dst) // small, or panics with the generic message
		return
	}
	switch d {
	case tensor.BF16:
		s.decodeBF16(&dst[0], &src[0], n)
	case tensor.F16:
		s.decodeF16(&dst[0], &src[0], n)
	case tensor.F32:
		n = len(dst)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), src) // amd64 is little-endian
	default:
		n = 0
	}
	decodeGeneric(d, src[n*es:], dst[n:])
}

// addLowRankWrap checks bounds (panicking like the generic code on short slices) and runs the assembly, which
// handles every row and column itself so that each element gets the same FMA chain wherever it sits. Ranks above
// lowRankChunk run as several calls over consecutive ranges of t: storing the float32 accumulator to dst and
// loading it back is exact, so the chain, and the result, is the same as in one call.
func (s *simd) addLowRankWrap(dst, coef, m []float32, rows, cols, r int) {
	if rows <= 0 || cols <= 0 || r <= 0 {
		addLowRankGeneric(dst, coef, m, rows, cols, r)
		return
	}
	_ = dst[rows*cols-1]
	_ = coef[rows*r-1]
	_ = m[r*cols-1]
	var pack [lowRankChunk * lowRankPanel]float32
	for t0 := 0; t0 < r; t0 += lowRankChunk {
		n := min(lowRankChunk, r-t0)
		if s.avx512 {
			addLowRankAVX512(&dst[0], &coef[t0], &m[t0*cols], &pack[0], rows, cols, n, r)
		} else {
			addLowRankAVX2(&dst[0], &coef[t0], &m[t0*cols], &pack[0], rows, cols, n, r)
		}
	}
}

func (s *simd) sumSquaresWrap(x []float32) float64 {
	n := len(x) &^ (sumSquaresStep - 1)
	var sum float64
	if n > 0 {
		sum = s.sumSquares(&x[0], n)
	}
	for _, v := range x[n:] {
		sum += float64(v) * float64(v)
	}
	return sum
}

func (s *simd) addSquaresWrap(acc []float64, x []float32) {
	n := len(x) &^ (step - 1)
	if n > 0 {
		_ = acc[len(x)-1]
		s.addSquares(&acc[0], &x[0], n)
	}
	addSquaresGeneric(acc[n:], x[n:])
}

func (s *simd) scaleWrap(x []float32, sc []float32) {
	n := len(x) &^ (step - 1)
	if n > 0 {
		_ = sc[len(x)-1]
		s.scale(&x[0], &sc[0], n)
	}
	scaleGeneric(x[n:], sc[n:])
}
