package llamacpp

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// peakShift is the testmodel.Peak shift of the top-1 models: o_proj and down_proj scaled by 1/16.
const peakShift = 4

// minPeakMargin is the margin (best logit minus second best, over max|logit|) that the float64 reference forward
// pass of every top-1 model must show on every sequence before any type is compared. By construction (tied
// embeddings, peakShift) the last token wins by about √hidden = 16 standard deviations of the other logits:
// measured ≥ 0.68 × max|logit| on both models and all testTokens. The largest logit error of any type against
// F32 is measured ≤ 0.055 × max|logit| (Q4_0), so a swap needs the error to exceed six times that: a top-1
// difference is a decoding bug, not noise.
const minPeakMargin = 0.5

// peakedModels are the models with a clear top-1 winner (testmodel.Peak on a tied GGUFSmall base): llama with
// the Llama 3 tokenizer and qwen2 (tied, q/k/v biases) with its own.
func peakedModels() []testModel {
	l := testmodel.GGUFSmall(testmodel.ArchLlama)
	l.Tied, l.Tokenizer, l.Seed = true, testmodel.TokenizerLlama3, 11
	q := testmodel.GGUFSmall(testmodel.ArchQwen2)
	q.Tokenizer, q.Seed = testmodel.TokenizerQwen2, 12
	return []testModel{{"peaked-llama", l}, {"peaked-qwen2", q}}
}

// topOneTypes are the types whose top-1 token must equal the F32 file's on the peaked models.
var topOneTypes = []gguf.FileType{gguf.FileF16, gguf.FileBF16, gguf.FileQ8_0, gguf.FileQ4_0, gguf.FileQ4_KM,
	gguf.FileQ5_KM, gguf.FileQ6_K}

// addPeakedJobs generates the peaked models under dir, exports each as F32 and as every topOneTypes type, and
// adds the files to j (so they run in TestConsumers' one node process). It returns the models and their dirs.
func addPeakedJobs(t *testing.T, dir string, j *job) ([]testModel, map[string]string) {
	t.Helper()
	models := peakedModels()
	dirs := map[string]string{}
	for _, m := range models {
		md := prepareModel(t, dir, m)
		if err := testmodel.Peak(md, peakShift); err != nil {
			t.Fatal(err)
		}
		dirs[m.name] = md
		for _, ft := range append([]gguf.FileType{gguf.FileF32}, topOneTypes...) {
			p := peakedPath(dir, m, ft)
			if err := exportGGUF(md, ft, p); err != nil {
				t.Fatalf("%s %s: %v", m.name, ft, err)
			}
			j.Models = append(j.Models, modelJob{Path: p, Logits: testTokens})
		}
	}
	return models, dirs
}

// peakedPath is where addPeakedJobs writes model m's file of type ft.
func peakedPath(dir string, m testModel, ft gguf.FileType) string {
	return filepath.Join(dir, m.name+"-"+ft.String()+".gguf")
}

// checkTopOne is TestConsumers' TopOne subtest: on every peaked model and sequence the float64 reference has a
// margin ≥ minPeakMargin, llama.cpp's F32 top-1 is the reference's, and for every topOneTypes type llama.cpp's
// top-1 equals its F32 top-1 and KL(F32 ‖ type) stays under klBound (F16: the BF16 bound).
func checkTopOne(t *testing.T, dir string, models []testModel, dirs map[string]string,
	logits func(*testing.T, string) [][]float64) {
	for _, m := range models {
		f32 := logits(t, peakedPath(dir, m, gguf.FileF32))
		minMargin := math.Inf(1)
		for s, toks := range testTokens {
			ref, err := testmodel.ForwardDir(dirs[m.name], toks)
			if err != nil {
				t.Fatal(err)
			}
			want, margin := top2(ref)
			_, sc := logitStats(ref, ref)
			minMargin = math.Min(minMargin, margin/sc)
			if margin < minPeakMargin*sc {
				t.Errorf("%s, sequence %d: reference margin %.3g × max|logit| < %g: the model is not peaked", m.name,
					s, margin/sc, minPeakMargin)
			}
			if top, _ := top2(f32[s]); top != want {
				t.Errorf("%s/F32, sequence %d: top-1 token %d, the float64 reference says %d", m.name, s, top, want)
			}
		}
		for _, ft := range topOneTypes {
			label := m.name + "/" + ft.String()
			got := logits(t, peakedPath(dir, m, ft))
			bound := klBound[ft]
			if ft == gguf.FileF16 {
				bound = klBound[gguf.FileBF16]
			}
			var worstKL, worstRel float64
			for s := range testTokens {
				want, _ := top2(f32[s])
				if top, _ := top2(got[s]); top != want {
					t.Errorf("%s, sequence %d: top-1 token %d, the F32 file's is %d", label, s, top, want)
				}
				kl := klDivergence(f32[s], got[s])
				d, sc := logitStats(got[s], f32[s])
				worstKL, worstRel = math.Max(worstKL, kl), math.Max(worstRel, d/sc)
				if kl > bound {
					t.Errorf("%s, sequence %d: KL(F32 ‖ %s) %.3g > %g", label, s, ft, kl, bound)
				}
			}
			t.Logf("%s: top-1 equals F32's on all %d sequences (reference margin ≥ %.3g × max|logit|); "+
				"KL(F32 ‖ %s) ≤ %.3g (bound %g), max |Δlogit| vs F32 ≤ %.3g × max|logit|", label, len(testTokens),
				minMargin, ft, worstKL, bound, worstRel)
		}
	}
}
