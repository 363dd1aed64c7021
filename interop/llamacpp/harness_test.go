package llamacpp

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// logitStats compares logits with the reference: the largest absolute difference, and the largest absolute
// reference logit (the scale).
func logitStats(got []float64, ref []float64) (maxDiff, scale float64) {
	for i, r := range ref {
		maxDiff = math.Max(maxDiff, math.Abs(got[i]-r))
		scale = math.Max(scale, math.Abs(r))
	}
	return maxDiff, scale
}

// Logit tolerances relative to max|logit| (derivation on TestHarnessForwardMatchesLlamaCpp).
const (
	f32Tolerance   = 1e-4
	gemmaTolerance = 2e-3
)

// testTokens are the token sequences whose last-position logits are compared (ids below every test vocab).
var testTokens = [][]int{{1, 17, 300, 42, 999, 5, 77, 512, 3, 250, 128, 640}, {7}}

// TestHarnessForwardMatchesLlamaCpp checks the oracle itself: the float64 reference forward pass of a generated
// model equals llama.cpp's logits on an F32 GGUF written by this suite's own minimal writer (independent of
// export/gguf). Tolerance: llama.cpp computes in float32 (SIMD sums in another order) on float32 weights, so
// logits differ from float64 by rounding only: a few float32 ulps per dot product, amplified by at most the
// layers; measured ≤ 4e-7 × max|logit| for llama, mistral, qwen2, qwen3 (llama3 rope scaling included), so
// f32Tolerance leaves a margin of several hundred. Gemma 2 is looser (gemmaTolerance): llama.cpp's CPU GeLU
// reads a float16 table (input and output rounded to float16, relative error up to 2^-11 per activation), which
// moves logits by up to 4.3e-4 × max|logit| here; rounding the reference's GeLU the same way brings it to 1.8e-5.
func TestHarnessForwardMatchesLlamaCpp(t *testing.T) {
	o := Find(t)
	dir := t.TempDir()
	specs := []testmodel.BaseSpec{testmodel.GGUFSmall(testmodel.ArchLlama), testmodel.GGUFSmall(testmodel.ArchQwen2),
		testmodel.GGUFSmall(testmodel.ArchMistral), testmodel.GGUFSmall(testmodel.ArchQwen3),
		testmodel.GGUFSmall(testmodel.ArchGemma2)}
	l3 := testmodel.GGUFSmall(testmodel.ArchLlama)
	l3.Llama3Rope, l3.Seed = true, 11
	specs = append(specs, l3)
	var j job
	var dirs []string
	for i, s := range specs {
		md := filepath.Join(dir, fmt.Sprintf("m%d", i))
		if _, err := testmodel.GenerateBase(context.Background(), md, s); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("m%d.gguf", i))
		writeF32GGUF(t, md, p)
		dirs = append(dirs, md)
		j.Models = append(j.Models, modelJob{Path: p, Logits: testTokens})
	}
	r := runOracle(t, o, j)
	for i, s := range specs {
		m := r.Models[i]
		name := fmt.Sprintf("%s/llama3rope=%v", s.Arch, s.Llama3Rope)
		if m.Error != "" {
			t.Errorf("%s: llama.cpp: %s", name, m.Error)
			continue
		}
		for k, toks := range testTokens {
			ref, err := testmodel.ForwardDir(dirs[i], toks)
			if err != nil {
				t.Fatal(err)
			}
			d, sc := logitStats(m.Logits[k], ref)
			t.Logf("%s, %d tokens: max |Δlogit| %.3g, max |logit| %.3g (relative %.3g)", name, len(toks), d, sc, d/sc)
			tol := f32Tolerance
			if s.Arch == testmodel.ArchGemma2 {
				tol = gemmaTolerance
			}
			if d > tol*sc {
				t.Errorf("%s, %d tokens: max |Δlogit| %.3g > %g × %.3g", name, len(toks), d, tol, sc)
			}
		}
	}
}
