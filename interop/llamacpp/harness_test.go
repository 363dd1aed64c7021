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

// TestHarnessQuantizeDriver checks quantize.py: llama_model_quantize turns the suite's F32 file into Q4_K_M with
// llama.cpp's mix (attn_v and ffn_down of the use_more_bits layers, and output.weight, in Q6_K; norms F32) and
// that llama.cpp loads the result.
func TestHarnessQuantizeDriver(t *testing.T) {
	o := Find(t)
	dir := t.TempDir()
	md := filepath.Join(dir, "m")
	if _, err := testmodel.GenerateBase(context.Background(), md, testmodel.GGUFSmall(testmodel.ArchLlama)); err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "f32.gguf"), filepath.Join(dir, "q4km.gguf")
	writeF32GGUF(t, md, src)
	runQuantize(t, o, []quantizeJob{{src, dst, 15}})
	f, err := parseGGUF(dst)
	if err != nil {
		t.Fatal(err)
	}
	// With 2 layers use_more_bits(i, 2) holds for layer 1 only (i >= 7·2/8).
	want := map[string]uint32{"token_embd.weight": 12, "blk.0.attn_v.weight": 12, "blk.1.attn_v.weight": 14,
		"blk.0.ffn_down.weight": 12, "blk.1.ffn_down.weight": 14, "blk.0.attn_q.weight": 12,
		"blk.0.attn_norm.weight": 0, "output.weight": 14}
	for _, ti := range f.Tensors {
		if w, ok := want[ti.Name]; ok && ti.Type != w {
			t.Errorf("%s: type %d, want %d", ti.Name, ti.Type, w)
		}
	}
	r := runOracle(t, o, job{Models: []modelJob{{Path: src, Logits: testTokens[:1]}, {Path: dst, Logits: testTokens[:1]}}})
	for _, m := range r.Models {
		if m.Error != "" {
			t.Fatal(m.Error)
		}
	}
	kl, top := klDivergence(r.Models[0].Logits[0], r.Models[1].Logits[0])
	t.Logf("Q4_K_M of the harness F32 file: KL %.3g, top-1 agrees %v", kl, top)
}

// klDivergence is KL(softmax(p) ‖ softmax(q)) in nats, and whether both logit vectors have the same argmax.
func klDivergence(p, q []float64) (float64, bool) {
	lse := func(x []float64) float64 {
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, v)
		}
		var s float64
		for _, v := range x {
			s += math.Exp(v - m)
		}
		return m + math.Log(s)
	}
	lp, lq := lse(p), lse(q)
	var kl float64
	for i := range p {
		pi := math.Exp(p[i] - lp)
		kl += pi * ((p[i] - lp) - (q[i] - lq))
	}
	return kl, argmax(p) == argmax(q)
}

func argmax(x []float64) int {
	b := 0
	for i, v := range x {
		if v > x[b] {
			b = i
		}
	}
	return b
}
