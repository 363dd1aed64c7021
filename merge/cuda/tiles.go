//go:build cuda

package cuda

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

// Random tiles of every kind a merge can ask for: the host-side tests compare hsmath.cuh with the Go CPU backend
// on them, and the backend's self-check compares the GPU with hsmath.cuh on the host before it is used.

// randValue is a float32 around 1 in magnitude, with occasional extremes (huge, tiny, subnormal, zero, Inf, NaN)
// so that rounding edges, overflow to Inf and the first non-finite index are exercised.
func randValue(rng *rand.Rand, special bool) float32 {
	if special && rng.IntN(50) == 0 {
		switch rng.IntN(7) {
		case 0:
			return float32(math.Inf(1 - 2*rng.IntN(2)))
		case 1:
			return float32(math.NaN())
		case 2:
			return math.Float32frombits(rng.Uint32N(1 << 23)) // subnormal
		case 3:
			return 0
		case 4:
			return float32(rng.NormFloat64() * 7e4) // beyond F16
		case 5:
			return float32(rng.NormFloat64() * 3e38)
		default:
			return math.Float32frombits(rng.Uint32())
		}
	}
	return float32(rng.NormFloat64())
}

func randFloats(rng *rand.Rand, n int, scale float64, special bool) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = randValue(rng, special) * float32(scale)
	}
	return x
}

// tileCase describes one random tile.
type tileCase struct {
	packed    bool
	srcDType  tensor.DType
	blocksize int
	baseRound tensor.DType
	r         int
	dora      merge.DoRAMode
	out       tensor.DType
	rows      int
	cols      int
	row0      int
	flat      bool // no rows: a plain element range (only without R and DoRA)
	special   bool
}

func (c tileCase) String() string {
	src := c.srcDType.String()
	if c.packed {
		src = fmt.Sprintf("4bit/bs%d/round%s", c.blocksize, c.baseRound)
	}
	return fmt.Sprintf("%s_r%d_dora%d_%s_%dx%d@%d_flat%v_sp%v", src, c.r, c.dora, c.out, c.rows, c.cols, c.row0, c.flat, c.special)
}

// build makes the tile's inputs; out and work are fresh buffers so two backends can run the same case.
func (c tileCase) build(rng *rand.Rand) *merge.Tile {
	count := c.rows * c.cols
	start := int64(c.row0) * int64(c.cols)
	t := &merge.Tile{Tensor: "t", Start: start, Count: count, OutDType: c.out, R: c.r, DoRA: c.dora}
	if !c.flat {
		t.Row0, t.Rows, t.Cols = c.row0, c.rows, c.cols
	}
	if c.packed {
		last := start + int64(count) - 1
		packed := make([]byte, last/2-start/2+1)
		for i := range packed {
			packed[i] = byte(rng.Uint32())
		}
		bs := int64(c.blocksize)
		code := new([16]float32)
		for i := range code {
			code[i] = randValue(rng, c.special)
		}
		t.Source = merge.TileSource{Kind: merge.SourcePacked4, Packed: packed, Code: code, Blocksize: c.blocksize,
			Scales: randFloats(rng, int(last/bs-start/bs+1), 0.05, c.special)}
		t.BaseRound = c.baseRound
	} else {
		vals := randFloats(rng, count, 0.05, c.special)
		raw := make([]byte, count*c.srcDType.Size())
		if _, err := tensor.EncodeFloats(c.srcDType, vals, raw); err != nil {
			panic(err)
		}
		t.Source = merge.TileSource{Kind: merge.SourceFloat, DType: c.srcDType, Raw: raw}
	}
	if c.r > 0 {
		t.Coef = randFloats(rng, c.rows*c.r, 0.01, c.special)
		t.M = randFloats(rng, c.r*c.cols, 0.1, c.special)
	}
	switch c.dora {
	case merge.DoRARows:
		t.RowMagnitude = randFloats(rng, c.rows, 1, c.special)
	case merge.DoRAColumns:
		t.ColFactor = randFloats(rng, c.cols, 1, c.special)
	case merge.DoRAColumnNorms:
		t.ColSumSq = make([]float64, c.cols)
		for j := range t.ColSumSq {
			t.ColSumSq[j] = rng.Float64() * 10
		}
	}
	if c.dora != merge.DoRAColumnNorms {
		t.Out = make([]byte, count*c.out.Size())
	}
	t.Work = make([]float32, count)
	return t
}

// clone copies t's inputs and gives it fresh outputs.
func clone(t *merge.Tile) *merge.Tile {
	u := *t
	u.Out = make([]byte, len(t.Out))
	u.Work = make([]float32, len(t.Work))
	u.ColSumSq = slices.Clone(t.ColSumSq)
	return &u
}

func randCase(rng *rand.Rand) tileCase {
	c := tileCase{out: []tensor.DType{tensor.F32, tensor.F16, tensor.BF16}[rng.IntN(3)], special: rng.IntN(3) == 0}
	if c.packed = rng.IntN(2) == 0; c.packed {
		if rng.IntN(2) == 0 {
			c.blocksize = 32 << rng.IntN(8) // 32 .. 4096
		} else {
			c.blocksize = 32 + rng.IntN(4096-32+1) // any blocksize, blocks crossing rows
		}
		c.baseRound = []tensor.DType{tensor.Invalid, tensor.F32, tensor.F16, tensor.BF16}[rng.IntN(4)]
	} else {
		c.srcDType = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16}[rng.IntN(3)]
	}
	c.r = []int{0, 0, 1, 2, 3, 8, 16, 17, 64}[rng.IntN(9)]
	c.dora = merge.DoRAMode(rng.IntN(4))
	c.rows = 1 + rng.IntN(9)
	c.cols = 1 + rng.IntN(300)
	if rng.IntN(4) == 0 {
		c.cols = 1000 + rng.IntN(5000)
	}
	c.row0 = rng.IntN(7)
	c.flat = c.r == 0 && c.dora == merge.DoRANone && rng.IntN(2) == 0
	return c
}

// fuses reports whether k's AddLowRank fuses the multiply and the add (one rounding): 1+2⁻¹² squared is
// 1+2⁻¹¹+2⁻²⁴, whose last term only a fused operation keeps.
func fuses(k *kernels.Impl) bool {
	const cols = 64
	a := float32(1 + 0x1p-12)
	dst := make([]float32, cols)
	m := make([]float32, cols)
	for j := range dst {
		dst[j], m[j] = -(1 + 0x1p-11), a
	}
	k.AddLowRank(dst, []float32{a}, m, 1, cols, 1)
	return dst[0] != 0
}

// outDiff returns the first element of two encoded outputs that differs, or -1. The bytes must be identical except
// that any NaN matches any NaN: which NaN an operation on NaN operands returns is not specified (x86 keeps an
// operand's payload by operand order, a GPU returns the canonical NaN), and a NaN in a merged tensor fails the merge.
func outDiff(d tensor.DType, got, want []byte) int {
	es := d.Size()
	if len(got) != len(want) {
		return 0
	}
	g, w := make([]float32, 1), make([]float32, 1)
	for i := 0; i < len(want)/es; i++ {
		if bytes.Equal(got[i*es:(i+1)*es], want[i*es:(i+1)*es]) {
			continue
		}
		_ = tensor.DecodeFloats(d, got[i*es:], g)
		_ = tensor.DecodeFloats(d, want[i*es:], w)
		if g[0] == g[0] || w[0] == w[0] {
			return i
		}
	}
	return -1
}
