package ggml

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestNearestIntRoundsHalfToEven(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want int32
	}{
		{0, 0}, {0.5, 0}, {1.5, 2}, {2.5, 2}, {3.5, 4}, {-0.5, 0}, {-1.5, -2}, {-2.5, -2},
		{0.49999997, 0}, {0.50000006, 1}, {-7.6, -8}, {15.4, 15}, {4194303, 4194303}, {-4194303, -4194303},
	} {
		if got := nearestInt(c.in); got != c.want {
			t.Errorf("nearestInt(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestRoundfRoundsHalfAwayFromZero(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{0.5, 1}, {1.5, 2}, {2.5, 3}, {-0.5, -1}, {-2.5, -3}, {0.49999997, 0}, {126.5, 127},
	} {
		if got := roundf(c.in); got != c.want {
			t.Errorf("roundf(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestCvttIsX86Truncation(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		in   float32
		want int32
	}{
		{8.99, 8}, {-8.99, -8}, {0.5, 0}, {2147483520, 2147483520}, {-2147483648, math.MinInt32},
		{2147483648, math.MinInt32}, {float32(math.Inf(-1)), math.MinInt32}, {nan, math.MinInt32},
	} {
		if got := cvtt(c.in); got != c.want {
			t.Errorf("cvtt(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestBF16NaNRule(t *testing.T) {
	for _, c := range []struct {
		bits uint32
		want uint16
	}{
		{0x7FC00000, 0x7FC0}, // quiet NaN stays
		{0x7F800001, 0x7FC0}, // signalling NaN, payload below the kept bits: forced quiet
		{0xFF812345, 0xFFC1}, // sign and top payload bits kept
		{0x7F800000, 0x7F80}, // +Inf is not a NaN
		{0x3F808000, 0x3F80}, // tie to even (down)
		{0x3F818000, 0x3F82}, // tie to even (up)
		{0x7F7FFFFF, 0x7F80}, // rounds up to Inf
	} {
		if got := bf16(math.Float32frombits(c.bits)); got != c.want {
			t.Errorf("bf16(%#08x) = %#04x, want %#04x", c.bits, got, c.want)
		}
	}
}

func TestQuantizeRejectsBadShapes(t *testing.T) {
	for _, c := range []struct {
		name  string
		t     Type
		dst   int
		src   int
		ncols int
		want  string
	}{
		{"k-type row not a multiple of 256", Q4_K, 144, 128, 128, "cannot be stored as Q4_K"},
		{"q8_0 row not a multiple of 32", Q8_0, 34, 48, 48, "cannot be stored as Q8_0"},
		{"unknown type", Type(99), 0, 32, 32, "unknown tensor type 99"},
		{"values not whole rows", Q8_0, 34, 40, 32, "do not match"},
		{"dst too short", Q8_0, 33, 32, 32, "do not match"},
		{"zero columns", F32, 0, 0, 0, "do not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Quantize(c.t, make([]byte, c.dst), make([]float32, c.src), c.ncols)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Quantize: %v, want an error containing %q", err, c.want)
			}
			err = Dequantize(c.t, make([]float32, c.src), make([]byte, c.dst), c.ncols)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Dequantize: %v, want an error containing %q", err, c.want)
			}
			err = QuantizeParallel(context.Background(), c.t, make([]byte, c.dst), make([]float32, c.src), c.ncols, 2)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("QuantizeParallel: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// quantizeAll quantizes x (rows of ncols) as t, failing the test on error.
func quantizeAll(t testing.TB, ty Type, x []float32, ncols int) []byte {
	t.Helper()
	rs, err := ty.RowSize(ncols)
	if err != nil {
		t.Fatal(err)
	}
	q := make([]byte, len(x)/ncols*rs)
	if err := Quantize(ty, q, x, ncols); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQuantizationError bounds Dequantize(Quantize(x)) against the float64 input without any oracle, with
// llama.cpp's test-quantize-fns data (0.1 + 2cos(i + offset), n 4096) and measure (sqrt(Σdiff²)/n, below
// MAX_QUANTIZATION_TOTAL_ERROR 0.002), plus a relative RMS bound per type on Gaussian weights.
func TestQuantizationError(t *testing.T) {
	const n = 4096
	gaussRows := 64
	if raceEnabled {
		gaussRows = 4
	}
	gauss := make([]float32, gaussRows*n)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range gauss {
		gauss[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, c := range []struct {
		t      Type
		relRMS float64 // bound on RMS(error)/RMS(x) for Gaussian data (measured values are about half of it)
	}{
		{F32, 0}, {F16, 1e-3}, {BF16, 4e-3}, {Q8_0, 0.01}, {Q6_K, 0.02}, {Q5_0, 0.05}, {Q5_1, 0.05},
		{Q5_K, 0.04}, {Q4_0, 0.1}, {Q4_1, 0.1}, {Q4_K, 0.08},
	} {
		t.Run(c.t.String(), func(t *testing.T) {
			for _, offset := range []float64{0, 0.5, 1000} {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(0.1 + 2*math.Cos(float64(i)+offset))
				}
				y := make([]float32, n)
				if err := Dequantize(c.t, y, quantizeAll(t, c.t, x, n), n); err != nil {
					t.Fatal(err)
				}
				var s float64
				for i := range x {
					d := float64(y[i]) - (0.1 + 2*math.Cos(float64(i)+offset))
					s += d * d
				}
				if e := math.Sqrt(s) / n; e > 0.002 {
					t.Errorf("offset %v: test-quantize-fns error %.6f > 0.002", offset, e)
				}
			}
			y := make([]float32, len(gauss))
			if err := Dequantize(c.t, y, quantizeAll(t, c.t, gauss, n), n); err != nil {
				t.Fatal(err)
			}
			var se, sx float64
			for i, v := range gauss {
				d := float64(y[i]) - float64(v)
				se += d * d
				sx += float64(v) * float64(v)
			}
			if rel := math.Sqrt(se / sx); rel > c.relRMS {
				t.Errorf("relative RMS error on Gaussian weights %.5f > %.5f", rel, c.relRMS)
			}
		})
	}
}

// TestQuantizeParallelIsWorkerCountIndependent checks that every worker count gives Quantize's bytes.
func TestQuantizeParallelIsWorkerCountIndependent(t *testing.T) {
	const ncols, rows = 512, 77 // not a multiple of the chunk size
	r := rand.New(rand.NewPCG(3, 4))
	x := matrices[0].gen(r, rows*ncols, ncols)
	for _, ty := range allTypes {
		want := quantizeAll(t, ty, x, ncols)
		for _, w := range []int{-1, 0, 1, 2, 3, 8, 200} {
			got := make([]byte, len(want))
			if err := QuantizeParallel(context.Background(), ty, got, x, ncols, w); err != nil {
				t.Fatalf("%s, %d workers: %v", ty, w, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %d workers differ from Quantize", ty, w)
			}
		}
	}
}

func TestQuantizeParallelHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, w := range []int{1, 4} {
		err := QuantizeParallel(ctx, Q4_K, make([]byte, 64*144), make([]float32, 64*256), 256, w)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%d workers: %v, want context.Canceled", w, err)
		}
	}
}

// TestFloatTypesRoundTrip checks that F32 is exact and F16/BF16 are the nearest 16-bit values.
func TestFloatTypesRoundTrip(t *testing.T) {
	x := []float32{1, -2.5, 65504, 1e-8, 3.14159, float32(math.Inf(1))}
	for _, c := range []struct {
		t    Type
		want []float32
	}{
		{F32, x},
		{F16, []float32{1, -2.5, 65504, 0, 3.140625, float32(math.Inf(1))}},
		{BF16, []float32{1, -2.5, 65536, 1.0011718e-08, 3.140625, float32(math.Inf(1))}},
	} {
		y := make([]float32, len(x))
		if err := Dequantize(c.t, y, quantizeAll(t, c.t, x, len(x)), len(x)); err != nil {
			t.Fatal(err)
		}
		for i := range y {
			if y[i] != c.want[i] {
				t.Errorf("%s: %v → %v, want %v", c.t, x[i], y[i], c.want[i])
			}
		}
	}
}

// FuzzQuantize checks, for arbitrary bytes read as float32 rows, that no type panics, that the row size is
// consistent, and that Dequantize(Quantize(x)) is finite whenever x is finite and small enough for fp16 scales.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{}, uint8(0), uint8(1))
	f.Add(bytes.Repeat([]byte{0, 0, 0x80, 0x3F}, 256), uint8(9), uint8(1))
	f.Add(bytes.Repeat([]byte{0xFF, 0xFF, 0x7F, 0x7F}, 512), uint8(10), uint8(2))
	f.Add(bytes.Repeat([]byte{1, 0, 0, 0}, 256), uint8(8), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, ti, rows uint8) {
		ty := allTypes[int(ti)%len(allTypes)]
		be := ty.BlockElems()
		if be == 1 {
			be = 32
		}
		nr := int(rows%4) + 1
		ncols := be * max(1, (len(data)/4/nr+be-1)/be)
		x := make([]float32, nr*ncols)
		finite := true
		for i := range x {
			if 4*i+4 <= len(data) {
				x[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
			}
			// fp16 scales overflow above ~65504·nmax; ggml's codes are then undefined, so only check finiteness below.
			if !(absf(x[i]) <= 1e4) {
				finite = false
			}
		}
		rs, err := ty.RowSize(ncols)
		if err != nil {
			t.Fatal(err)
		}
		if rs != ncols/ty.BlockElems()*ty.BlockBytes() {
			t.Fatalf("RowSize(%d) = %d", ncols, rs)
		}
		q := make([]byte, nr*rs)
		if err := Quantize(ty, q, x, ncols); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(ty, y, q, ncols); err != nil {
			t.Fatal(err)
		}
		if !finite {
			return
		}
		for i, v := range y {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: x[%d] = %v dequantizes to %v", ty, i, x[i], v)
			}
		}
	})
}
