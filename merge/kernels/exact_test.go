package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// testLengths are the slice lengths the bit-exact kernels are checked on: every length up to 300 (all head and
// tail shapes of 16- and 32-element steps) and a few large ones.
func testLengths() []int {
	var ls []int
	for n := 0; n <= 300; n++ {
		ls = append(ls, n)
	}
	return append(ls, 1023, 4096, 4111, 70001)
}

// dequantRef is an independent statement of model-formats.md §4.4 over the whole tensor.
func dequantRef(packed []byte, code *[16]float32, scales []float32, blocksize int, e int64) float32 {
	b := packed[e/2]
	q := b >> 4
	if e%2 == 1 {
		q = b & 0x0F
	}
	return code[q] * scales[e/int64(blocksize)]
}

func TestDequant4(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var random [16]float32
	for i := range random {
		random[i] = math.Float32frombits(specialBits(rng))
	}
	codes := []struct {
		name string
		code *[16]float32
	}{{"nf4", &nf4}, {"fp4", &fp4}, {"special", &random}}
	// 48 and 80 are multiples of 16 that are not powers of two; 40 and 24 take the scalar fallback.
	blocksizes := []int{32, 64, 128, 256, 4096, 48, 80, 40, 24}
	impls := Available()
	for _, bs := range blocksizes {
		for ci, c := range codes {
			if c.name == "fp4" && bs != 64 {
				continue // the codebook only matters to the table lookup; one block size is enough
			}
			// One tensor per (blocksize, codebook); windows [k, k+n) of it are dequantized.
			total := int64(3*4096 + 70001 + 2*bs)
			packed := make([]byte, (total+1)/2)
			for i := range packed {
				packed[i] = byte(rng.Uint32())
			}
			scales := make([]float32, (total+int64(bs)-1)/int64(bs))
			for i := range scales {
				if ci == 2 {
					scales[i] = math.Float32frombits(specialBits(rng))
				} else {
					scales[i] = float32(rng.NormFloat64()) * 0.05
				}
			}
			// Starts: even and odd, inside and at the edge of a 16-element group and of a block.
			ks := []int64{0, 1, 2, 15, 16, 17, 31, int64(bs) - 1, int64(bs), int64(bs) + 3, 4096 + 7, 8191}
			for i, n := range testLengths() {
				starts := []int64{0, 1, ks[i%len(ks)], ks[(i+5)%len(ks)]}
				if n > 300 {
					starts = []int64{0, 17, int64(bs) + 3, 8191}
				}
				for _, k := range starts {
					checkDequant(t, impls, packed, c.code, scales, bs, k, n, fmt.Sprintf("bs=%d code=%s k=%d n=%d", bs, c.name, k, n))
				}
			}
		}
	}
}

func checkDequant(t *testing.T, impls []*Impl, packed []byte, code *[16]float32, scales []float32, bs int, k int64, n int, what string) {
	t.Helper()
	// Exactly the bytes and scales the window needs, so that any over-read panics.
	var p []byte
	var s []float32
	if n > 0 {
		last := k + int64(n) - 1
		p = packed[k/2 : last/2+1]
		s = scales[k/int64(bs) : last/int64(bs)+1]
	}
	want := make([]float32, n)
	for i := range want {
		want[i] = dequantRef(packed, code, scales, bs, k+int64(i))
	}
	for _, im := range impls {
		g := newGuard(make([]float32, n), 1234.5)
		im.Dequant4(g.win(), p, k, code, s, bs)
		g.check(t, im.Name+" Dequant4 "+what)
		if i := sameFloats(g.win(), want); i >= 0 {
			t.Fatalf("%s Dequant4 %s: element %d = %#08x, want %#08x", im.Name, what, i,
				math.Float32bits(g.win()[i]), math.Float32bits(want[i]))
		}
	}
}

func TestRoundEncodeDecodeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	impls := Available()
	for _, d := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		for _, n := range testLengths() {
			x := specialFloats(rng, n)
			checkRoundEncode(t, impls, d, x, fmt.Sprintf("%s n=%d", d, n))
		}
	}
}

// TestConversionsManyBitPatterns covers every float32 exponent with random mantissas and both signs, which
// includes every fp16 subnormal and overflow case and the bf16 overflow threshold.
func TestConversionsManyBitPatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	per := 2048
	if testing.Short() {
		per = 256
	}
	x := make([]float32, 0, 512*per)
	for e := uint32(0); e < 256; e++ {
		for i := 0; i < per; i++ {
			x = append(x, math.Float32frombits(e<<23|rng.Uint32()&0x807FFFFF))
		}
	}
	impls := Available()
	for _, d := range []tensor.DType{tensor.BF16, tensor.F16} {
		checkRoundEncode(t, impls, d, x, fmt.Sprintf("%s bit patterns", d))
	}
}

// TestEncodeFirstNonFinite places non-finite inputs (or inputs that round to Inf) at chosen indices and checks
// that every implementation reports the first one.
func TestEncodeFirstNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	bad := map[tensor.DType][]float32{
		tensor.F32:  {float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())},
		tensor.BF16: {float32(math.Inf(1)), float32(math.NaN()), math.Float32frombits(0x7F7F8000), -3.4e38},
		tensor.F16:  {float32(math.Inf(-1)), float32(math.NaN()), 65520, -1e5, 70000},
	}
	tests := []struct {
		n   int
		pos []int
	}{
		{0, nil}, {5, nil}, {64, nil},
		{1, []int{0}}, {15, []int{14}}, {16, []int{15}}, {17, []int{16}}, {33, []int{32}},
		{40, []int{3, 7}}, {40, []int{20, 2}}, {100, []int{99}}, {100, []int{97, 50}},
		{1000, []int{517, 518, 999}}, {1000, []int{999}}, {4097, []int{4096}}, {4097, []int{16, 4096}},
	}
	impls := Available()
	for d, vals := range bad {
		for _, tt := range tests {
			for _, v := range vals {
				x := nonZero(rng, tt.n)
				for _, p := range tt.pos {
					x[p] = v
				}
				checkRoundEncode(t, impls, d, x, fmt.Sprintf("%s n=%d bad=%g at %v", d, tt.n, v, tt.pos))
			}
		}
	}
}

// checkRoundEncode compares Round, Encode (bytes and first non-finite index) and Decode of the encoded bytes of
// every implementation with the generic ones.
func checkRoundEncode(t *testing.T, impls []*Impl, d tensor.DType, x []float32, what string) {
	t.Helper()
	gen := Generic()
	es := d.Size()
	wantRound := append([]float32(nil), x...)
	gen.Round(d, wantRound)
	wantEnc := make([]byte, len(x)*es)
	wantFirst := gen.Encode(d, x, wantEnc)
	wantDec := make([]float32, len(x))
	gen.Decode(d, wantEnc, wantDec)
	for _, im := range impls {
		r := newGuard(append([]float32(nil), x...), 1234.5)
		im.Round(d, r.win())
		r.check(t, im.Name+" Round "+what)
		if i := sameFloats(r.win(), wantRound); i >= 0 {
			t.Fatalf("%s Round %s: element %d (%#08x) = %#08x, want %#08x", im.Name, what, i,
				math.Float32bits(x[i]), math.Float32bits(r.win()[i]), math.Float32bits(wantRound[i]))
		}
		e := newGuard(make([]byte, len(x)*es), 0xA5)
		first := im.Encode(d, x, e.win())
		e.check(t, im.Name+" Encode "+what)
		if first != wantFirst {
			t.Fatalf("%s Encode %s: first non-finite = %d, want %d", im.Name, what, first, wantFirst)
		}
		if i := sameEncoded(d, e.win(), wantEnc); i >= 0 {
			t.Fatalf("%s Encode %s: element %d (%#08x) encodes to % x, want % x", im.Name, what, i,
				math.Float32bits(x[i]), e.win()[i*es:(i+1)*es], wantEnc[i*es:(i+1)*es])
		}
		dec := newGuard(make([]float32, len(x)), 1234.5)
		im.Decode(d, wantEnc, dec.win())
		dec.check(t, im.Name+" Decode "+what)
		if i := sameFloats(dec.win(), wantDec); i >= 0 {
			t.Fatalf("%s Decode %s: element %d = %#08x, want %#08x", im.Name, what, i,
				math.Float32bits(dec.win()[i]), math.Float32bits(wantDec[i]))
		}
		// Round must agree with Encode followed by Decode.
		if i := sameFloats(r.win(), dec.win()); i >= 0 {
			t.Fatalf("%s %s: Round and Encode+Decode disagree at %d", im.Name, what, i)
		}
	}
}

// TestDecodeAllCodes decodes every 16-bit pattern (and random float32 patterns) with every implementation.
func TestDecodeAllCodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	all := make([]byte, 2<<16)
	for h := 0; h < 1<<16; h++ {
		all[2*h], all[2*h+1] = byte(h), byte(h>>8)
	}
	f32 := make([]byte, 4*5003)
	for i := range f32 {
		f32[i] = byte(rng.Uint32())
	}
	inputs := map[tensor.DType][]byte{tensor.BF16: all, tensor.F16: all, tensor.F32: f32}
	for d, src := range inputs {
		want := make([]float32, len(src)/d.Size())
		Generic().Decode(d, src, want)
		for _, im := range asmImpls() {
			got := make([]float32, len(want))
			im.Decode(d, src, got)
			if i := sameFloats(got, want); i >= 0 {
				t.Fatalf("%s Decode %s: element %d = %#08x, want %#08x", im.Name, d, i,
					math.Float32bits(got[i]), math.Float32bits(want[i]))
			}
		}
	}
}

func TestScaleExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, n := range testLengths() {
		x, s := specialFloats(rng, n), specialFloats(rng, n)
		want := append([]float32(nil), x...)
		Generic().Scale(want, s)
		for i := range want { // independent reference
			if r := x[i] * s[i]; math.Float32bits(r) != math.Float32bits(want[i]) && !(isNaN32(r) && isNaN32(want[i])) {
				t.Fatalf("generic Scale n=%d: element %d", n, i)
			}
		}
		for _, im := range asmImpls() {
			g := newGuard(append([]float32(nil), x...), 1234.5)
			im.Scale(g.win(), s)
			g.check(t, im.Name+" Scale")
			if i := sameFloats(g.win(), want); i >= 0 {
				t.Fatalf("%s Scale n=%d: element %d = %g, want %g", im.Name, n, i, g.win()[i], want[i])
			}
		}
	}
}

// TestAddSquaresExact: x² of a float32 is exact in float64, so acc + x² has one rounding whether fused or not and
// every implementation must match the float64 reference bit for bit.
func TestAddSquaresExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range testLengths() {
		x := nonZero(rng, n)
		for i := range x {
			if rng.IntN(8) == 0 {
				x[i] = math.Float32frombits(specialBits(rng) & 0xBFFFFFFF) // finite, below 2, subnormals included
			}
		}
		acc := make([]float64, n)
		for i := range acc {
			acc[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-4))
		}
		want := make([]float64, n)
		for i := range want {
			want[i] = acc[i] + float64(x[i])*float64(x[i])
		}
		for _, im := range Available() {
			g := newGuard(append([]float64(nil), acc...), 1234.5)
			im.AddSquares(g.win(), x)
			g.check(t, im.Name+" AddSquares")
			for i, v := range g.win() {
				if math.Float64bits(v) != math.Float64bits(want[i]) {
					t.Fatalf("%s AddSquares n=%d: element %d = %v, want %v", im.Name, n, i, v, want[i])
				}
			}
		}
	}
}
