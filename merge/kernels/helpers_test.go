package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// nf4 and fp4 are bitsandbytes' 4-bit codebooks (model-formats.md §4.1, §4.2).
var nf4 = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
	-0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
	0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
	0.7229568362236023, 1.0,
}

var fp4 = [16]float32{
	0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204, 0.25,
	float32(math.Copysign(0, -1)), -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408,
	-0.5, -0.1666666716337204, -0.25,
}

// asmImpls returns the implementations other than generic that this CPU runs (none with -tags noasm).
func asmImpls() []*Impl {
	av := Available()
	return av[:len(av)-1]
}

// specialBits draws float32 bit patterns that stress the conversions: subnormals, ±0, ±Inf, NaNs, exact RNE ties
// for bf16 and fp16, values next to the bf16 and fp16 overflow thresholds, the fp16 subnormal range, and ordinary
// values of many magnitudes.
func specialBits(rng *rand.Rand) uint32 {
	sign := rng.Uint32() & 0x80000000
	switch rng.IntN(12) {
	case 0:
		return rng.Uint32() // anything, NaNs included
	case 1:
		return sign | rng.Uint32()&0x007FFFFF // float32 subnormal
	case 2:
		return []uint32{0, 0x80000000, 0x7F800000, 0xFF800000}[rng.IntN(4)]
	case 3:
		return rng.Uint32()&0xFFFF0000 | 0x8000 // bf16 tie (NaNs possible)
	case 4:
		return sign | (0x7F7F0000 + rng.Uint32N(0x10000)) // next to the bf16 overflow threshold 0x7F7F8000
	case 5:
		e := uint32(113 + rng.IntN(30)) // fp16 normal range
		return sign | e<<23 | rng.Uint32()&0x007FE000 | 0x1000
	case 6:
		e := uint32(101 + rng.IntN(12)) // fp16 subnormal range
		return sign | e<<23 | rng.Uint32()&0x007FFFFF
	case 7:
		return sign | (0x477F0000 + rng.Uint32N(0x20000)) // 65280 … 2^17: the fp16 overflow threshold 65520
	case 8:
		m := 2*rng.IntN(1024) + 1 // fp16 subnormal tie: odd multiple of 2^-25
		return sign | math.Float32bits(float32(m)*0x1p-25)
	case 9:
		return sign | 0x7F800000 | (1 + rng.Uint32N(0x7FFFFF)) // NaN with payload
	default:
		v := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(13)-6)))
		return math.Float32bits(v)
	}
}

func specialFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = math.Float32frombits(specialBits(rng))
	}
	return x
}

// nonZero returns n random values in ±[0.25, 2), never zero.
func nonZero(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		v := 0.25 + 1.75*rng.Float32()
		if rng.IntN(2) == 0 {
			v = -v
		}
		x[i] = v
	}
	return x
}

func isNaN32(f float32) bool { return f != f }

// sameFloats reports the first index where got and want differ in bits, NaN matching any NaN; -1 if none.
func sameFloats(got, want []float32) int {
	if len(got) != len(want) {
		return 0
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(isNaN32(got[i]) && isNaN32(want[i])) {
			return i
		}
	}
	return -1
}

// sameEncoded compares encoded buffers of dtype d element by element, NaN matching any NaN.
func sameEncoded(d tensor.DType, got, want []byte) int {
	es := d.Size()
	for i := 0; i < len(want)/es; i++ {
		g, w := got[i*es:(i+1)*es], want[i*es:(i+1)*es]
		if string(g) == string(w) {
			continue
		}
		gf, wf := make([]float32, 1), make([]float32, 1)
		decodeGeneric(d, g, gf)
		decodeGeneric(d, w, wf)
		if !(isNaN32(gf[0]) && isNaN32(wf[0])) {
			return i
		}
	}
	return -1
}

// guard is a slice window inside a larger buffer filled with a sentinel, to catch writes outside the window.
type guard[T comparable] struct {
	buf      []T
	lo, hi   int
	sentinel T
}

const guardLen = 64

func newGuard[T comparable](window []T, sentinel T) *guard[T] {
	buf := make([]T, guardLen+len(window)+guardLen)
	for i := range buf {
		buf[i] = sentinel
	}
	copy(buf[guardLen:], window)
	return &guard[T]{buf: buf, lo: guardLen, hi: guardLen + len(window), sentinel: sentinel}
}

// win is the window, with its capacity cut so that appends cannot reach the guard either.
func (g *guard[T]) win() []T { return g.buf[g.lo:g.hi:g.hi] }

func (g *guard[T]) check(t *testing.T, what string) {
	t.Helper()
	for i, v := range g.buf {
		if (i < g.lo || i >= g.hi) && v != g.sentinel {
			t.Fatalf("%s wrote outside its slice at offset %d", what, i-g.lo)
		}
	}
}
