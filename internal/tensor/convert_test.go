package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestF32ToBF16Examples(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3F80},
		{1 + 0x1p-8, 0x3F80},   // tie → even
		{1 + 3*0x1p-8, 0x3F82}, // tie → even (up)
		{3.3895314e38, 0x7F7F},
		{math.Float32frombits(0x7F7F8000), 0x7F80}, // rounds to Inf
		{1e-40, 0x0001},
		{float32(math.Inf(1)), 0x7F80},
		{float32(math.Inf(-1)), 0xFF80},
		{float32(math.NaN()), 0x7FC0},
		{-2.5, 0xC020},
		{0, 0},
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, tt := range tests {
		if got := F32ToBF16(tt.in); got != tt.want {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestF32ToF16Examples(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3C00},
		{65504, 0x7BFF},
		{65519, 0x7BFF},
		{65520, 0x7C00},
		{1e5, 0x7C00},
		{0x1p-24, 0x0001},
		{0x1p-25, 0x0000},
		{3 * 0x1p-26, 0x0001},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1 + 0x1p-11, 0x3C00},
		{1 + 3*0x1p-11, 0x3C02},
		{float32(math.Inf(-1)), 0xFC00},
		{float32(math.NaN()), 0x7E00},
		{-float32(math.NaN()), 0xFE00},
	}
	for _, tt := range tests {
		if got := F32ToF16(tt.in); got != tt.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

// refRound rounds x to the nearest value of the finite set given by decode over all 16-bit codes, ties to the
// even code; it is a slow, obviously correct reference.
func refRoundBits(x float64, codes []float64, bitsOf []uint16) uint16 {
	best, bestD := -1, math.Inf(1)
	for i, c := range codes {
		d := math.Abs(c - x)
		if d < bestD || (d == bestD && bitsOf[i]&1 == 0) {
			best, bestD = i, d
		}
	}
	return bitsOf[best]
}

func TestF32ToF16AgainstReference(t *testing.T) {
	// All finite non-negative halves, sorted by value.
	var codes []float64
	var bits []uint16
	for h := uint16(0); h < 0x7C00; h++ {
		codes = append(codes, float64(F16ToF32(h)))
		bits = append(bits, h)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		// Values spread over the whole half range, subnormals included.
		x := float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(42)-30))
		if x >= 65520 {
			continue
		}
		want := refRoundBits(float64(x), codes, bits)
		if x >= 65504 && float64(x) >= 65504+16 { // halfway to 65536 rounds to Inf
			want = 0x7C00
		}
		if got := F32ToF16(x); got != want {
			t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", x, got, want)
		}
		if got := F32ToF16(-x); got != want|0x8000 {
			t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", -x, got, want|0x8000)
		}
	}
}

func TestBF16AgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200000; i++ {
		u := rng.Uint32()
		f := math.Float32frombits(u)
		if f != f || math.IsInf(float64(f), 0) {
			continue
		}
		got := F32ToBF16(f)
		// Reference: the two bf16 neighbours by truncation, pick the nearer, ties to even.
		lo := uint16(u >> 16)
		hi := lo + 1
		dlo := math.Abs(float64(f) - float64(BF16ToF32(lo)))
		vhi := float64(BF16ToF32(hi))
		if hi&0x7F80 == 0x7F80 { // stepping past the largest finite value: compare with the next binade's value
			vhi = math.Copysign(math.Ldexp(1, 128), float64(f))
		}
		dhi := math.Abs(float64(f) - vhi)
		want := lo
		if dhi < dlo || (dhi == dlo && hi&1 == 0) {
			want = hi
		}
		if got != want {
			t.Fatalf("F32ToBF16(%g [%#08x]) = %#04x, want %#04x", f, u, got, want)
		}
	}
}

func TestF16RoundTripAllCodes(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if f != f {
			continue
		}
		if got := F32ToF16(f); got != uint16(h) {
			t.Fatalf("round trip %#04x -> %g -> %#04x", h, f, got)
		}
	}
}

func TestEncodeDecodeFloats(t *testing.T) {
	src := []float32{1.5, -2.25, 1e-3, 70000}
	for _, d := range []DType{F32, F16, BF16} {
		buf := make([]byte, len(src)*d.Size())
		nf, err := EncodeFloats(d, src, buf)
		if err != nil {
			t.Fatal(err)
		}
		if d == F16 && nf != 3 {
			t.Errorf("%s: first non-finite = %d, want 3 (70000 overflows fp16)", d, nf)
		}
		if d != F16 && nf != -1 {
			t.Errorf("%s: first non-finite = %d, want -1", d, nf)
		}
		out := make([]float32, len(src))
		if err := DecodeFloats(d, buf, out); err != nil {
			t.Fatal(err)
		}
		for i := range src[:3] {
			if out[i] != RoundTo(d, src[i]) {
				t.Errorf("%s[%d]: got %g, want %g", d, i, out[i], RoundTo(d, src[i]))
			}
		}
	}
}

func TestParseDType(t *testing.T) {
	for d := BOOL; d <= U64; d++ {
		got, err := ParseDType(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDType(%q) = %v, %v", d.String(), got, err)
		}
	}
	if _, err := ParseDType("bf16"); err == nil {
		t.Error("lower-case token accepted")
	}
	for in, want := range map[string]DType{"torch.bfloat16": BF16, "float16": F16, "float32": F32, "half": F16} {
		if got, err := ParseTorchDType(in); err != nil || got != want {
			t.Errorf("ParseTorchDType(%q) = %v, %v", in, got, err)
		}
	}
}

func TestULP(t *testing.T) {
	tests := []struct {
		d    DType
		x    float64
		want float64
	}{
		{BF16, 1, 0x1p-7}, {BF16, 1.5, 0x1p-7}, {BF16, 2, 0x1p-6}, {BF16, -3, 0x1p-6},
		{F16, 1, 0x1p-10}, {F16, 65504, 32}, {F16, 1e-7, 0x1p-24}, {F16, 0, 0x1p-24},
		{F32, 1, 0x1p-23}, {F32, 0, 0x1p-149},
	}
	for _, tt := range tests {
		if got := ULP(tt.d, tt.x); got != tt.want {
			t.Errorf("ULP(%s, %g) = %g, want %g", tt.d, tt.x, got, tt.want)
		}
	}
	// Consecutive representable values differ by exactly one ULP.
	for _, h := range []uint16{0x3F80, 0x4000, 0x0001, 0x7F00} {
		a, b := float64(BF16ToF32(h)), float64(BF16ToF32(h+1))
		if ULP(BF16, a) != b-a {
			t.Errorf("bf16 %#04x: ULP %g, spacing %g", h, ULP(BF16, a), b-a)
		}
	}
}
