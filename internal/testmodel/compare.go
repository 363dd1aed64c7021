package testmodel

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// Tolerance is how far a merged value stored in dtype d may be from the float64 reference value ref, in a tensor
// whose largest reference magnitude is maxAbs.
//
// The merge computes W + scaling·(B·A) (and DoRA) in float32 and rounds once to the output dtype, so
// |got − ref| ≤ ½ulp_out(got) + e32, where e32, the float32 computation error, is bounded by (r+4)·2⁻²⁴·Σ|terms|.
// The tolerance is 1 ulp_out(ref) (½ulp plus a rounding-boundary crossing caused by e32) plus 2⁻¹⁷·maxAbs (e32
// for r ≤ 16 with a margin for DoRA's norm and division). That absolute term is 2⁹ times smaller than a bf16 ulp
// of the tensor's largest values, so errors of merge semantics (a wrong scaling, transpose, missing base rounding
// or DoRA factor) cannot hide in it.
func Tolerance(d tensor.DType, ref, maxAbs float64) float64 {
	return tensor.ULP(d, ref) + math.Ldexp(maxAbs, -17)
}

// MaxInexactFraction is the largest fraction of a 16-bit output tensor's elements that may differ from the
// correctly rounded reference at all (the float32 error only matters next to rounding boundaries).
const MaxInexactFraction = 0.01

// Comparison is the result of checking a merged model against the float64 reference.
type Comparison struct {
	Tensors    int
	Elements   int64
	MaxAbs     float64 // largest |merged − reference|
	WorstRatio float64 // largest |merged − reference| / Tolerance (≤ 1 passes)
	Problems   []string
}

// CompareDir checks every tensor of the merged model in dir (its *.safetensors files) against ref: the same
// tensor names and shapes, every value within Tolerance, and, for 16-bit outputs, at most MaxInexactFraction of
// the elements different from the correctly rounded reference. Problems lists what fails; the error is for I/O
// and format trouble only.
func CompareDir(dir string, ref map[string]RefTensor) (*Comparison, error) {
	c := &Comparison{}
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range files {
		if err := c.compareFile(p, ref, seen); err != nil {
			return nil, err
		}
	}
	var missing []string
	for n := range ref {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		c.Problems = append(c.Problems, fmt.Sprintf("%s: in the reference, not in the merged model", n))
	}
	return c, nil
}

func (c *Comparison) compareFile(path string, ref map[string]RefTensor, seen map[string]bool) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, t := range f.Tensors {
		r, ok := ref[t.Name]
		if !ok {
			c.Problems = append(c.Problems, fmt.Sprintf("%s (%s): not in the reference", t.Name, filepath.Base(path)))
			continue
		}
		seen[t.Name] = true
		if !tensor.EqualShapes(t.Shape, r.Shape) {
			c.Problems = append(c.Problems, fmt.Sprintf("%s: shape %v, reference %v", t.Name, t.Shape, r.Shape))
			continue
		}
		raw, err := f.ReadTensor(t)
		if err != nil {
			return err
		}
		vals := make([]float32, t.NumElements())
		if err := tensor.DecodeFloats(t.DType, raw, vals); err != nil {
			return fmt.Errorf("%s: %s: %w", path, t.Name, err)
		}
		c.compareValues(t.Name, t.DType, vals, r.Values)
	}
	return nil
}

func (c *Comparison) compareValues(name string, d tensor.DType, got []float32, ref []float64) {
	var maxRef float64
	for _, v := range ref {
		maxRef = max(maxRef, math.Abs(v))
	}
	bad, inexact := 0, 0
	var first string
	for i, rv := range ref {
		gv := float64(got[i])
		diff := math.Abs(gv - rv)
		tol := Tolerance(d, rv, maxRef)
		if diff > tol || math.IsNaN(gv) {
			if bad == 0 {
				first = fmt.Sprintf(" (first at flat index %d: got %v, reference %v, tolerance %g)", i, gv, rv, tol)
			}
			bad++
		}
		c.MaxAbs = max(c.MaxAbs, diff)
		c.WorstRatio = max(c.WorstRatio, diff/tol)
		if float32(gv) != tensor.RoundTo(d, float32(rv)) {
			inexact++
		}
	}
	c.Tensors++
	c.Elements += int64(len(ref))
	if bad > 0 {
		c.Problems = append(c.Problems, fmt.Sprintf("%s: %d of %d elements outside the tolerance%s", name, bad, len(ref), first))
	}
	if d != tensor.F32 && float64(inexact) > MaxInexactFraction*float64(len(ref)) {
		c.Problems = append(c.Problems, fmt.Sprintf("%s: %d of %d elements are not the correctly rounded reference",
			name, inexact, len(ref)))
	}
}
