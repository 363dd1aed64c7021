package testmodel

import (
	"math"
	"math/rand/v2"
	"testing"
)

// nearestDist is the distance from y to the nearest codebook entry.
func nearestDist(cb []float32, y float32) float64 {
	best := math.Inf(1)
	for _, c := range cb {
		best = min(best, math.Abs(float64(y)-float64(c)))
	}
	return best
}

func TestCodebookValues(t *testing.T) {
	nf4 := Codebook(QuantNF4)
	if nf4[0] != -1 || nf4[7] != 0 || nf4[15] != 1 {
		t.Fatalf("NF4 ends: %v", nf4)
	}
	for i := 1; i < 16; i++ {
		if nf4[i] <= nf4[i-1] {
			t.Fatalf("NF4 not ascending at %d", i)
		}
	}
	fp4 := Codebook(QuantFP4)
	raw := []float64{0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3}
	for i, r := range raw {
		if want := float32(r) / 12; fp4[i] != want { // float32 division, as bitsandbytes builds the table
			t.Errorf("FP4[%d] = %v, want %v", i, fp4[i], want)
		}
	}
	if math.Float32bits(fp4[8]) != 0x80000000 {
		t.Errorf("FP4[8] is not -0.0")
	}
}

func TestDecisionTreesPickNearestCode(t *testing.T) {
	for _, tc := range []struct {
		q    Quant
		code func(float32) byte
	}{{QuantNF4, quantizeNF4}, {QuantFP4, quantizeFP4}} {
		cb := Codebook(tc.q)
		// Every code value maps back to itself (FP4's -0.0 is code 0: the kernel tests x < 0).
		for c, v := range cb {
			got := tc.code(v)
			if got != byte(c) && !(tc.q == QuantFP4 && c == 8 && got == 0) {
				t.Errorf("%s: code(%v) = %d, want %d", tc.q, v, got, c)
			}
		}
		r := rand.New(rand.NewPCG(1, 2))
		for range 200000 {
			y := float32(r.Float64()*2 - 1)
			got := cb[tc.code(y)]
			// The thresholds are float32-rounded midpoints: the chosen code may be farther by a float32 ulp.
			if d := math.Abs(float64(y) - float64(got)); d > nearestDist(cb[:], y)+1e-7 {
				t.Fatalf("%s: y=%v -> %v (distance %g), nearest is %g away", tc.q, y, got, d, nearestDist(cb[:], y))
			}
		}
	}
	if quantizeNF4(float32(math.NaN())) != 0 || quantizeFP4(float32(math.NaN())) != 0 {
		t.Error("NaN (an all-zero block) must give code 0, as the CUDA kernels do")
	}
}

// linspaceF32 reproduces torch's CPU linspace in float32 with the fused multiply-add of the shipped binaries:
// start + step·idx for the first half, end − step·(steps−1−idx) for the second, each rounded once.
func linspaceF32(start, end float32, steps int) []float32 {
	step := (end - start) / float32(steps-1)
	out := make([]float32, steps)
	for i := range out {
		if i < steps/2 {
			out[i] = float32(float64(start) + float64(step)*float64(i)) // exact in float64, one rounding
		} else {
			out[i] = float32(float64(end) - float64(step)*float64(steps-1-i))
		}
	}
	return out
}

func TestDynamicMapMatchesConstruction(t *testing.T) {
	m := DynamicMap()
	var built []float32
	for i := range 7 {
		b := linspaceF32(0.1, 1, 1<<i+1)
		scale := float32(math.Pow(10, float64(i-6)))
		for j := 0; j+1 < len(b); j++ {
			mean := (b[j] + b[j+1]) / 2
			built = append(built, scale*mean, -scale*mean)
		}
	}
	built = append(built, 0, 1)
	if len(built) != 256 {
		t.Fatalf("construction gave %d values", len(built))
	}
	// Sort ascending.
	for i := 1; i < len(built); i++ {
		for j := i; j > 0 && built[j] < built[j-1]; j-- {
			built[j], built[j-1] = built[j-1], built[j]
		}
	}
	for i := range m {
		if m[i] != built[i] {
			t.Errorf("map[%d] = %v (%#08x), construction gives %v (%#08x)", i, m[i], math.Float32bits(m[i]),
				built[i], math.Float32bits(built[i]))
		}
	}
	if m[127] != 0 || m[255] != 1 || math.Float32bits(m[0]) != 0xbf7e3333 {
		t.Errorf("map structure: [0]=%v [127]=%v [255]=%v", m[0], m[127], m[255])
	}
	for k := 1; k <= 127; k++ {
		if m[127-k] != -m[127+k] {
			t.Errorf("map[%d] != -map[%d]", 127-k, 127+k)
		}
	}
}

func TestQuantizeDynamicPicksNearest(t *testing.T) {
	m := DynamicMap()
	r := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		y := float32(r.Float64()*2 - 1)
		if r.IntN(4) == 0 {
			y *= float32(math.Pow(10, -float64(r.IntN(7)))) // exercise the small-magnitude part of the map
		}
		got := m[quantizeDynamic(&m, y)]
		if d := math.Abs(float64(y) - float64(got)); d > nearestDist(m[:], y)+1e-7 {
			t.Fatalf("y=%v -> %v (distance %g), nearest is %g away", y, got, d, nearestDist(m[:], y))
		}
	}
	for _, tc := range []struct {
		y    float32
		want byte
	}{{1, 255}, {-1, 0}, {0, 127}, {0.9999, 255}, {-0.9999, 0}} {
		if got := quantizeDynamic(&m, tc.y); got != tc.want {
			t.Errorf("quantizeDynamic(%v) = %d, want %d", tc.y, got, tc.want)
		}
	}
}

func TestQuantize4BitPacking(t *testing.T) {
	cases := []struct {
		name   string
		q      Quant
		bs     int
		x      []float32
		packed []byte
		absmax []float32
	}{
		// Codes 15, 0, 7 (+ a 0 pad encoded as code 7 in the low nibble): even element in the high nibble.
		{"nf4 odd", QuantNF4, 32, []float32{2, -2, 0}, []byte{0xF0, 0x77}, []float32{2}},
		// FP4: 1 → 3, −1 → 8+3, 0 → 0, pad 0 → 0.
		{"fp4 odd", QuantFP4, 32, []float32{2, -2, 0}, []byte{0x3B, 0x00}, []float32{2}},
		// Two blocks of 2 (the reader accepts tiny blocks): the second block has its own absmax.
		{"nf4 blocks", QuantNF4, 2, []float32{0.5, -0.25, 4, 1}, []byte{0xF2, 0xFA}, []float32{0.5, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, a := Quantize4Bit(tc.q, tc.bs, tc.x)
			if string(p) != string(tc.packed) {
				t.Errorf("packed % x, want % x", p, tc.packed)
			}
			if len(a) != len(tc.absmax) {
				t.Fatalf("absmax %v, want %v", a, tc.absmax)
			}
			for i := range a {
				if a[i] != tc.absmax[i] {
					t.Errorf("absmax %v, want %v", a, tc.absmax)
				}
			}
		})
	}
}

func TestQuantize4BitRoundTrip(t *testing.T) {
	for _, q := range []Quant{QuantNF4, QuantFP4} {
		for _, bs := range []int{32, 64, 256, 4096} {
			for _, n := range []int{1, 63, 925, 4097, 70001} {
				st := newStream(int64(n), "roundtrip", valWeight, 0)
				x := make([]float32, n)
				st.fill(0, x[:min(n, tileElems)])
				if n > tileElems {
					st.fill(1, x[tileElems:])
				}
				packed, absmax := Quantize4Bit(q, bs, x)
				if len(packed) != (n+1)/2 || len(absmax) != (n+bs-1)/bs {
					t.Fatalf("%s bs=%d n=%d: sizes %d, %d", q, bs, n, len(packed), len(absmax))
				}
				got := Dequantize4Bit(q, bs, packed, absmax, n)
				cb := Codebook(q)
				for b := range absmax {
					var blockMax float32
					for _, v := range x[b*bs : min(n, (b+1)*bs)] {
						blockMax = max(blockMax, float32(math.Abs(float64(v))))
					}
					if absmax[b] != blockMax {
						t.Fatalf("%s bs=%d n=%d: absmax[%d] = %v, block max is %v", q, bs, n, b, absmax[b], blockMax)
					}
				}
				for k := range x {
					a := absmax[k/bs]
					// Per element: |x − deq| ≤ absmax · (distance of x/absmax to the nearest code) + rounding.
					bound := float64(a)*(nearestDist(cb[:], x[k]/a)+2e-7) + 1e-12
					if d := math.Abs(float64(x[k]) - float64(got[k])); d > bound {
						t.Fatalf("%s bs=%d n=%d: element %d: %v -> %v, error %g > %g", q, bs, n, k, x[k], got[k], d, bound)
					}
				}
			}
		}
	}
}

func TestQuantizeZeroBlock(t *testing.T) {
	p, a := Quantize4Bit(QuantNF4, 32, make([]float32, 4))
	if a[0] != 0 || p[0] != 0 || p[1] != 0 {
		t.Fatalf("zero block: packed % x absmax %v; the CUDA kernel gives NaN codes → 0", p, a)
	}
	got := Dequantize4Bit(QuantNF4, 32, p, a, 4)
	for _, v := range got {
		if v != 0 {
			t.Fatalf("zero block dequantizes to %v", got)
		}
	}
}

func TestDoubleQuantize(t *testing.T) {
	for _, n := range []int{1, 2, 255, 256, 257, 1000} {
		r := rand.New(rand.NewPCG(uint64(n), 9))
		absmax := make([]float32, n)
		var sum float64
		for i := range absmax {
			absmax[i] = float32(0.02 + 0.2*r.Float64())
			sum += float64(absmax[i])
		}
		nq := DoubleQuantize(absmax)
		if len(nq.Codes) != n || len(nq.Absmax) != (n+255)/256 {
			t.Fatalf("n=%d: %d codes, %d nested", n, len(nq.Codes), len(nq.Absmax))
		}
		mean := sum / float64(n)
		if math.Abs(float64(nq.Offset)-mean) > math.Abs(mean)*1e-7 {
			t.Errorf("n=%d: offset %v, mean %v", n, nq.Offset, mean)
		}
		m := DynamicMap()
		scales := nq.Scales()
		for b, na := range nq.Absmax {
			var blockMax float32
			for _, a := range absmax[b*256 : min(n, (b+1)*256)] {
				blockMax = max(blockMax, float32(math.Abs(float64(a-nq.Offset))))
			}
			if na != blockMax {
				t.Fatalf("n=%d: nested_absmax[%d] = %v, want %v", n, b, na, blockMax)
			}
		}
		for i, a := range absmax {
			v := a - nq.Offset
			na := nq.Absmax[i/256]
			y := float32(0)
			if na != 0 {
				y = v / na
			}
			bound := float64(na)*(nearestDist(m[:], y)+2e-7) + 1e-7
			if d := math.Abs(float64(scales[i]) - float64(a)); d > bound {
				t.Fatalf("n=%d: scale %d = %v, absmax %v, error %g > %g", n, i, scales[i], a, d, bound)
			}
		}
	}
}
