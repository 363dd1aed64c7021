package ggml

import (
	"math"
	"math/rand/v2"

	"github.com/hubsync/hubsync/internal/tensor"
)

// matrix is a named test-input generator: n values laid out in rows of ncols.
type matrix struct {
	name string
	gen  func(r *rand.Rand, n, ncols int) []float32
}

func fill(n int, f func(i int) float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = f(i)
	}
	return x
}

// tDist2 draws from Student's t with 2 degrees of freedom (heavy tails): z / sqrt(χ²₂/2), χ²₂ = -2 ln U.
func tDist2(r *rand.Rand) float32 {
	return float32(r.NormFloat64() / math.Sqrt(-math.Log(1-r.Float64())))
}

// matrices are the random and adversarial inputs every quantizer is checked on. They must all be finite.
var matrices = []matrix{
	{"gauss", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return float32(r.NormFloat64() * 0.02) })
	}},
	{"uniform", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return float32(r.Float64()*2 - 1) })
	}},
	{"zeros", func(_ *rand.Rand, n, _ int) []float32 { return make([]float32, n) }},
	{"const32", func(r *rand.Rand, n, _ int) []float32 { // constant 32-blocks, some zero, some negative
		v := float32(0)
		return fill(n, func(i int) float32 {
			if i%32 == 0 {
				v = []float32{0, 1, -1, 0.5, -3.25, 1e-3, float32(r.NormFloat64())}[r.IntN(7)]
			}
			return v
		})
	}},
	{"const16", func(r *rand.Rand, n, _ int) []float32 { // constant 16-element sub-blocks among random ones
		v := float32(0)
		return fill(n, func(i int) float32 {
			if i%16 == 0 {
				v = float32(r.NormFloat64())
				if r.IntN(3) == 0 {
					v = 0
				}
			}
			if (i/16)%3 == 2 {
				return float32(r.NormFloat64())
			}
			return v
		})
	}},
	{"ties", func(r *rand.Rand, n, _ int) []float32 { // halves on the codes' grid: x·id lands exactly on .5
		amps := []int{8, 16, 127, 15, 31, 32, 63}
		var a int
		var s float32
		return fill(n, func(i int) float32 {
			if i%32 == 0 {
				a = amps[r.IntN(len(amps))]
				s = float32(math.Ldexp(1, r.IntN(12)-8))
				if r.IntN(2) == 0 {
					s = -s
				}
				return float32(a) * s
			}
			return float32(r.IntN(4*a+1)-2*a) / 2 * s
		})
	}},
	{"t2", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return tDist2(r) * 0.05 })
	}},
	{"tiny", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return float32(r.NormFloat64() * 1e-20) })
	}},
	{"tinyblocks", func(r *rand.Rand, n, _ int) []float32 { // 1e-20 32-blocks among normal ones
		tiny := false
		return fill(n, func(i int) float32 {
			if i%32 == 0 {
				tiny = r.IntN(2) == 0
			}
			if tiny {
				return float32(r.NormFloat64() * 1e-20)
			}
			return float32(r.NormFloat64())
		})
	}},
	{"huge", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return float32(r.NormFloat64() * 3e4) })
	}},
	{"overflow", func(r *rand.Rand, n, _ int) []float32 { // scales beyond fp16's range: d and dmin become Inf
		return fill(n, func(int) float32 { return float32(r.NormFloat64() * 1e7) })
	}},
	{"intgrid", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return float32(r.IntN(17) - 8) })
	}},
	{"bf16", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return tensor.RoundTo(tensor.BF16, float32(r.NormFloat64()*0.03)) })
	}},
	{"fp16", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 { return tensor.RoundTo(tensor.F16, float32(r.NormFloat64()*0.03)) })
	}},
	{"negdominant", func(r *rand.Rand, n, _ int) []float32 { // one large negative value per 32, and shifted blocks
		return fill(n, func(i int) float32 {
			v := float32(r.NormFloat64())
			switch {
			case i%32 == 7:
				return -8*absf(v) - 4
			case (i/256)%2 == 1:
				return v - 3
			}
			return v
		})
	}},
	{"positive", func(r *rand.Rand, n, _ int) []float32 { // min > 0: the K-quants' min clamps to 0
		return fill(n, func(int) float32 { return float32(0.5 + r.Float64()/2) })
	}},
	{"sparse", func(r *rand.Rand, n, _ int) []float32 {
		return fill(n, func(int) float32 {
			if r.IntN(20) == 0 {
				return float32(r.NormFloat64())
			}
			return 0
		})
	}},
	{"cos", func(_ *rand.Rand, n, _ int) []float32 { // llama.cpp test-quantize-fns's data
		return fill(n, func(i int) float32 { return float32(0.1 + 2*math.Cos(float64(i))) })
	}},
}

// specials are float inputs the 16-bit conversions must handle (NaN payloads, ±Inf, subnormals, overflow,
// rounding ties); they are checked for F32/F16/BF16 only, whose conversions are total.
func specials(r *rand.Rand, n, _ int) []float32 {
	vals := []float32{
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
		math.Float32frombits(0x7F800001), math.Float32frombits(0xFFC00123), math.Float32frombits(0x7FBFFFFF),
		1e-45, -1e-40, 6e-8, 65504, 65519.99, 65520, -1e9, 3e38,
		math.Float32frombits(0x3F808000), math.Float32frombits(0x3F818000), math.Float32frombits(0x3F801000),
		math.Float32frombits(0x3F803000),
	}
	return fill(n, func(i int) float32 {
		if i < len(vals) {
			return vals[i]
		}
		if r.IntN(2) == 0 {
			return vals[r.IntN(len(vals))]
		}
		return math.Float32frombits(r.Uint32())
	})
}
