package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// lowRankCase is one AddLowRank problem with random non-zero data.
type lowRankCase struct {
	rows, cols, r  int
	dst, coef, m   []float32
	want, absTerms []float64 // float64 reference and Σ of |terms| per element (the error bound's scale)
}

func newLowRankCase(rng *rand.Rand, rows, cols, r int) *lowRankCase {
	c := &lowRankCase{rows: rows, cols: cols, r: r,
		dst: nonZero(rng, rows*cols), coef: nonZero(rng, rows*r), m: nonZero(rng, r*cols)}
	c.want = make([]float64, rows*cols)
	c.absTerms = make([]float64, rows*cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			s, a := float64(c.dst[i*cols+j]), math.Abs(float64(c.dst[i*cols+j]))
			for t := 0; t < r; t++ {
				p := float64(c.coef[i*r+t]) * float64(c.m[t*cols+j])
				s += p
				a += math.Abs(p)
			}
			c.want[i*cols+j], c.absTerms[i*cols+j] = s, a
		}
	}
	return c
}

// lowRankTol is the error bound of r float32 multiply-adds done with at most two roundings each
// (γ_{2r+1} · Σ|terms|, u = 2⁻²⁴): |got − want| ≤ (2r+1)·2⁻²⁴·(|dst| + Σ_t |coef·m|).
func lowRankTol(r int, absTerms float64) float64 { return float64(2*r+1) * 0x1p-24 * absTerms }

func (c *lowRankCase) check(t *testing.T, name string, got []float32) {
	t.Helper()
	for e, g := range got {
		if d := math.Abs(float64(g) - c.want[e]); !(d <= lowRankTol(c.r, c.absTerms[e])) {
			t.Fatalf("%s AddLowRank rows=%d cols=%d r=%d: element (%d,%d) = %v, want %v (error %g, bound %g)",
				name, c.rows, c.cols, c.r, e/c.cols, e%c.cols, g, c.want[e], d, lowRankTol(c.r, c.absTerms[e]))
		}
	}
}

func lowRankShapes(rng *rand.Rand) [][3]int {
	var shapes [][3]int
	for rows := 1; rows <= 9; rows++ {
		for _, cols := range []int{1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 95, 96, 97, 127, 128, 129, 191, 255, 300} {
			r := 1 + rng.IntN(70)
			if cols%5 == 0 || rows == 1 {
				r = []int{1, 2, 16, 64, 70}[rng.IntN(5)]
			}
			shapes = append(shapes, [3]int{rows, cols, r})
		}
	}
	return append(shapes, [3]int{32, 2048, 16}, [3]int{5, 4096 + 13, 64}, [3]int{2, 151936, 8}, [3]int{3, 40, 256})
}

func TestAddLowRankAgainstFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, sh := range lowRankShapes(rng) {
		c := newLowRankCase(rng, sh[0], sh[1], sh[2])
		for _, im := range Available() {
			g := newGuard(append([]float32(nil), c.dst...), 1234.5)
			im.AddLowRank(g.win(), c.coef, c.m, c.rows, c.cols, c.r)
			g.check(t, fmt.Sprintf("%s AddLowRank %v", im.Name, sh))
			c.check(t, im.Name, g.win())
		}
	}
}

// TestAddLowRankEmpty: rows, cols or r of zero leave dst alone.
func TestAddLowRankEmpty(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	dst := nonZero(rng, 12)
	for _, im := range Available() {
		for _, sh := range [][3]int{{0, 4, 3}, {3, 0, 3}, {3, 4, 0}} {
			got := append([]float32(nil), dst...)
			im.AddLowRank(got, nonZero(rng, 12), nonZero(rng, 12), sh[0], sh[1], sh[2])
			if i := sameFloats(got, dst); i >= 0 {
				t.Errorf("%s AddLowRank %v changed dst[%d]", im.Name, sh, i)
			}
		}
	}
}

// TestAddLowRankTileSplit: computing rows [0,n) in one call equals computing [0,a) and [a,n) in two calls, bit
// for bit, for every implementation and every split point; this is what makes the merge output independent of
// how many threads share a tensor.
func TestAddLowRankTileSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	shapes := [][3]int{{9, 17, 5}, {13, 64, 16}, {11, 300, 64}, {7, 1, 3}, {9, 129, 70}, {6, 4096 + 5, 16}}
	for _, sh := range shapes {
		rows, cols, r := sh[0], sh[1], sh[2]
		dst, coef, m := nonZero(rng, rows*cols), nonZero(rng, rows*r), nonZero(rng, r*cols)
		for _, im := range Available() {
			whole := append([]float32(nil), dst...)
			im.AddLowRank(whole, coef, m, rows, cols, r)
			for a := 1; a < rows; a++ {
				split := append([]float32(nil), dst...)
				im.AddLowRank(split[:a*cols], coef[:a*r], m, a, cols, r)
				im.AddLowRank(split[a*cols:], coef[a*r:], m, rows-a, cols, r)
				if i := sameFloats(split, whole); i >= 0 {
					t.Fatalf("%s AddLowRank %v split at row %d: element %d = %#08x, one call gives %#08x",
						im.Name, sh, a, i, math.Float32bits(split[i]), math.Float32bits(whole[i]))
				}
			}
			// A single row computed alone equals the same row inside the tile.
			for i := 0; i < rows; i++ {
				one := append([]float32(nil), dst[i*cols:(i+1)*cols]...)
				im.AddLowRank(one, coef[i*r:(i+1)*r], m, 1, cols, r)
				if j := sameFloats(one, whole[i*cols:(i+1)*cols]); j >= 0 {
					t.Fatalf("%s AddLowRank %v: row %d alone differs at column %d", im.Name, sh, i, j)
				}
			}
		}
	}
}

// TestAddLowRankFMAImplsAgree: the assembly implementations all compute each element as the same chain of float32
// FMAs in t order, so they agree bit for bit with each other (not with generic, which rounds the product).
func TestAddLowRankFMAImplsAgree(t *testing.T) {
	impls := asmImpls()
	if len(impls) < 2 {
		t.Skipf("needs two assembly implementations, have %d", len(impls))
	}
	rng := rand.New(rand.NewPCG(13, 13))
	for _, sh := range lowRankShapes(rng) {
		c := newLowRankCase(rng, sh[0], sh[1], sh[2])
		var ref []float32
		for _, im := range impls {
			got := append([]float32(nil), c.dst...)
			im.AddLowRank(got, c.coef, c.m, c.rows, c.cols, c.r)
			if ref == nil {
				ref = got
				continue
			}
			if i := sameFloats(got, ref); i >= 0 {
				t.Fatalf("%s and %s AddLowRank %v differ at %d", im.Name, impls[0].Name, sh, i)
			}
		}
	}
}

// TestAddLowRankExactCase uses inputs for which every product and partial sum is exact in float32, so every
// implementation, fused or not, must give the exact result: a dropped, repeated or misplaced term shows.
func TestAddLowRankExactCase(t *testing.T) {
	// Inputs are multiples of 2⁻⁴ below 8 in magnitude and r ≤ 16: products are multiples of 2⁻⁸ below 64, every
	// partial sum is below 2¹¹, so 19 significant bits suffice.
	rng := rand.New(rand.NewPCG(14, 14))
	small := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.IntN(255)-127) / 16
		}
		return x
	}
	for _, sh := range [][3]int{{5, 77, 16}, {4, 64, 3}, {1, 5, 1}, {9, 300, 7}} {
		rows, cols, r := sh[0], sh[1], sh[2]
		dst, coef, m := small(rows*cols), small(rows*r), small(r*cols)
		want := make([]float32, len(dst))
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				s := float64(dst[i*cols+j])
				for t := 0; t < r; t++ {
					s += float64(coef[i*r+t]) * float64(m[t*cols+j])
				}
				want[i*cols+j] = float32(s)
			}
		}
		for _, im := range Available() {
			got := append([]float32(nil), dst...)
			im.AddLowRank(got, coef, m, rows, cols, r)
			if i := sameFloats(got, want); i >= 0 {
				t.Fatalf("%s AddLowRank %v exact case: element %d = %g, want %g", im.Name, sh, i, got[i], want[i])
			}
		}
	}
}

// TestSumSquares compares with a float64 reference; the assembly accumulates in float64 lanes, so the stated
// relative tolerance is 1e-12 (the Impl contract allows float32-level error; these implementations do better).
func TestSumSquares(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	for _, n := range testLengths() {
		x := nonZero(rng, n)
		for i := range x {
			x[i] *= float32(math.Pow(2, float64(rng.IntN(40)-20)))
		}
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		for _, im := range Available() {
			got := im.SumSquares(x)
			if d := math.Abs(got - want); !(d <= 1e-12*want) {
				t.Fatalf("%s SumSquares n=%d = %v, want %v (relative error %g)", im.Name, n, got, want, d/want)
			}
		}
	}
}
