package llamacpp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// testModel is one of the suite's generated models.
type testModel struct {
	name string
	spec testmodel.BaseSpec
}

// testModels are the models every GGUF type is checked on: GGUF-friendly shapes (rows multiples of 256, so
// every type holds every matrix), 2 layers, bf16 like the checkpoints users merge, each with one of testmodel's
// real tokenizers.
func testModels() []testModel {
	spec := func(a testmodel.Arch, tok testmodel.TokenizerKind) testmodel.BaseSpec {
		s := testmodel.GGUFSmall(a)
		s.Tokenizer = tok
		return s
	}
	l3 := spec(testmodel.ArchLlama, testmodel.TokenizerLlama3)
	l3.Llama3Rope = true // Llama 3.1: rope_freqs.weight
	spm := spec(testmodel.ArchLlama, testmodel.TokenizerSPM)
	spm.Seed = 8
	return []testModel{
		{"llama", l3},
		{"llama-spm", spm},
		{"qwen2", spec(testmodel.ArchQwen2, testmodel.TokenizerQwen2)},
		{"mistral", spec(testmodel.ArchMistral, testmodel.TokenizerSPM)},
		{"qwen3", spec(testmodel.ArchQwen3, testmodel.TokenizerQwen2)},
		// Gemma's own tokenizer is a SentencePiece model without the dummy prefix (the converter writes
		// add_space_prefix false for gemma2), which none of testmodel's tokenizers is; a byte-level BPE one keeps
		// the tokenization check meaningful.
		{"gemma2", spec(testmodel.ArchGemma2, testmodel.TokenizerLlama3)},
	}
}

// prepareModel generates m under dir.
func prepareModel(t *testing.T, dir string, m testModel) string {
	t.Helper()
	return genModel(t, dir, m.name, m.spec)
}

// tokenizeTexts are the strings tokenized by llama.cpp and by @huggingface/tokenizers (the convert_hf_to_gguf
// check string's ingredients: ASCII, whitespace runs, digits 3…33333333, Unicode, CJK, emoji, contractions).
var tokenizeTexts = []string{
	"Hello world",
	"hello, world! The quick brown fox jumps over the lazy dog.",
	" leading space and trailing space ",
	"tabs\tand\nnewlines\n\n\n   three spaces    four\t\t",
	"3 33 333 3333 33333 333333 3333333 33333333",
	"3.14159 and 1,000,000 and 0x1F",
	"I'm sure you're right, they've said it's what we'd do, we'll see",
	"Привет мир, Ελληνικά, עברית, العربية",
	"中文测试：你好，世界。日本語のテキスト、한국어",
	"emoji 🦙🚀 and 👍🏽 and a ZWJ 👨‍👩‍👧",
	"ក្រមុំ Khmer and ⅷ roman and ①②",
	" \"\"\"quotes\"\"\" ``` --- ***",
	"",
}

// specialTexts are per tokenizer kind: strings with the tokenizer's special tokens, tokenized with special
// tokens recognised.
var specialTexts = map[testmodel.TokenizerKind][]string{
	testmodel.TokenizerLlama3: {"<|begin_of_text|>Hello<|eot_id|>", "a<|start_header_id|>user<|end_header_id|>\n\nhi"},
	testmodel.TokenizerQwen2:  {"<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "x<|endoftext|>y"},
	testmodel.TokenizerSPM:    {"<s>Hello</s>", "a</s>b <s> c"},
}

// testTokens are the token sequences whose last-position logits are compared (ids below every test vocab).
var testTokens = [][]int{
	{1, 17, 300, 42, 999, 5, 77, 512, 3, 250, 128, 640},
	{7},
	{2, 900, 901, 902, 33},
	{64, 64, 64, 64, 64, 64, 64, 64},
	{1000, 1, 500, 20, 730, 11, 400},
	{15, 260, 80, 333},
}

// Tolerances, relative to max|logit|, of llama.cpp's logits against the float64 reference forward pass.
//
// F32: llama.cpp computes in float32 (SIMD sums in another order) on float32 weights, with the K/V cache set to
// F32 by oracle.mjs, so logits differ from float64 by rounding only: a few float32 ulps per dot product,
// amplified by at most the layers. Measured ≤ 5.2e-7 for llama, mistral, qwen2 and qwen3 (llama3 rope scaling
// included); f32Tolerance leaves a margin of more than a hundred.
//
// Gemma 2 is looser: llama.cpp's CPU GeLU reads a float16 table (input and output rounded to float16, relative
// error up to 2^-11 per activation), which moves logits by up to 4.3e-4 × max|logit| here (rounding the
// reference's GeLU the same way brings it to 1.8e-5); gemmaTolerance is about 5× that.
//
// F16: llama.cpp's CPU matrix product of F16 weights first rounds the activations to float16 (relative error
// 2^-11 ≈ 4.9e-4 per value); measured ≤ 6.2e-4 (gemma2 9.5e-4), f16Tolerance is 10 × 2^-11.
const (
	f32Tolerance   = 1e-4
	gemmaTolerance = 2e-3
	f16Tolerance   = 5e-3
)

// klBound bounds KL(F32 ‖ type) in nats per type, each 2.4–3× the largest value measured over the test models
// and sequences (gemma2, whose logits are the most peaked, sets all of them): BF16 3.3e-5, Q8_0 1.6e-3, Q6_K
// 8.7e-3, Q5_K_M 2.1e-2, Q4_K_M 9.5e-2, Q4_0 0.12.
var klBound = map[gguf.FileType]float64{
	gguf.FileBF16: 1e-4, gguf.FileQ8_0: 5e-3, gguf.FileQ6_K: 2e-2, gguf.FileQ5_KM: 5e-2, gguf.FileQ4_KM: 0.3,
	gguf.FileQ4_0: 0.3,
}

// marginSigmas says where the top-1 token must agree with the reference (the float64 forward pass of the file's
// dequantized weights): random test models have flat logits, and where the reference's two best tokens are
// closer than llama.cpp's arithmetic noise a swap says nothing. So the top-1 token is checked wherever the
// reference margin (best logit minus second best) exceeds marginSigmas × σ, σ being the standard deviation of
// llama.cpp's logit error against the reference over the vocabulary on that sequence: a swap needs the error
// difference of two tokens, of standard deviation √2·σ, to exceed the margin, which for a Gaussian error at 5σ
// happens with probability about 2e-4 per check. (Against the F32 file's top-1 the 4-bit types' noise is too
// large for a random model: their top-1 can only be compared where the margin exceeds their whole rounding
// error; KL(F32 ‖ type) covers that distance.)
const marginSigmas = 5

// quantTolerance bounds max|Δlogit| / max|logit| between llama.cpp on a BF16 or quantized file and the float64
// forward pass of the same file's weights dequantized by internal/ggml. llama.cpp's CPU dot products do not see
// the activations exactly: for BF16 weights they are rounded to bf16 (2^-8 relative), for quantized weights
// quantized to Q8_0 (Q8_0, Q4_0) or Q8_K (k-quants), 8-bit codes with one scale per 32 or 256 values. Measured:
// BF16 ≤ 5.4e-3 (gemma2 7.5e-3), quantized ≤ 3.4e-2; the bounds are about 3× that. This is ten times tighter
// than the distance to the F32 logits (Q4_0: 0.3 × max|logit|), so it shows that llama.cpp decodes every block
// as hubsync meant it.
func quantTolerance(a testmodel.Arch, ft gguf.FileType) float64 {
	if ft == gguf.FileBF16 {
		return 2e-2
	}
	return 0.1
}

// tolerance is the bound on max|Δlogit| / max|logit| against the reference forward pass.
func tolerance(a testmodel.Arch, ft gguf.FileType) float64 {
	tol := f32Tolerance
	if ft == gguf.FileF16 {
		tol = f16Tolerance
	}
	if a == testmodel.ArchGemma2 {
		tol = max(tol, gemmaTolerance)
	}
	return tol
}

// TestConsumers builds every file first and runs them all through the real consumers, in one python3 and one
// node process:
//   - Harness: the suite's own F32 writer (independent of export/gguf) loaded by llama.cpp gives the logits of
//     the float64 reference forward pass (this checks the oracle itself);
//   - LoadsAndComputes: hubsync's GGUF of every type of every test model loads in llama.cpp; F32 and F16 logits
//     equal the reference forward pass within the stated tolerance; for the other types KL(F32 ‖ type) stays
//     under the type's bound, and the logits equal the reference forward pass of the file's own weights
//     dequantized by internal/ggml within quantTolerance, with the same top-1 token wherever its margin exceeds
//     marginSigmas;
//   - TopOne: on models with a clear winner by construction (peakedModels), every quantized and 16-bit type's
//     top-1 token equals the F32 file's on every sequence (checkTopOne);
//   - Tokenization: llama.cpp's tokenization (special tokens parsed) of sample strings from each F32 file equals
//     @huggingface/tokenizers' encoding with the model's tokenizer.json;
//   - WholeFile: hubsync's BF16 file quantized by llama.cpp's llama_model_quantize (quantize.py) to each
//     quantized type equals hubsync's own file of that type (compareFiles);
//   - HuggingFaceGGUF: @huggingface/gguf parses every file to the same tensor infos as hubsync's reader and this
//     suite's;
//   - BadInput: a truncated file is rejected by llama.cpp.
func TestConsumers(t *testing.T) {
	o := Find(t)
	dir := t.TempDir()
	models := testModels()
	var j job
	dirs := map[string]string{}
	for _, m := range models {
		md := prepareModel(t, dir, m)
		dirs[m.name] = md
		p := filepath.Join(dir, m.name+"-harness.gguf")
		writeF32GGUF(t, md, p)
		j.Models = append(j.Models, modelJob{Path: p, Logits: testTokens})
		for _, ft := range allTypes {
			p := filepath.Join(dir, m.name+"-"+ft.String()+".gguf")
			if err := exportGGUF(md, ft, p); err != nil {
				t.Fatalf("%s %s: %v", m.name, ft, err)
			}
			mj := modelJob{Path: p, Logits: testTokens}
			if ft == gguf.FileF32 {
				mj.Tokenize = texts(m.spec.Tokenizer)
			}
			j.Models = append(j.Models, mj)
			j.GGUF = append(j.GGUF, p)
		}
		j.Tokenizers = append(j.Tokenizers, tokenizerJob{JSON: filepath.Join(md, "tokenizer.json"),
			Config: filepath.Join(md, "tokenizer_config.json"), Texts: texts(m.spec.Tokenizer)})
	}
	peaked, peakedDirs := addPeakedJobs(t, dir, &j)
	// A truncated file: the first half of the llama Q8_0 file.
	whole, err := os.ReadFile(filepath.Join(dir, "llama-Q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	if err := os.WriteFile(truncated, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	j.Models = append(j.Models, modelJob{Path: truncated, Logits: testTokens[:1]})
	// llama-quantize's path: hubsync's BF16 file requantized by llama.cpp to each quantized type.
	var qjobs []quantizeJob
	for _, m := range models {
		for _, ft := range quantTypes {
			qjobs = append(qjobs, quantizeJob{Src: filepath.Join(dir, m.name+"-BF16.gguf"),
				Dst: filepath.Join(dir, m.name+"-"+ft.String()+"-llama-quantize.gguf"), FType: int(ft)})
		}
	}
	runQuantize(t, o, qjobs)
	r := runOracle(t, o, j)
	byPath := map[string]int{}
	for i, m := range r.Models {
		byPath[m.Path] = i
	}
	logits := func(t *testing.T, p string) [][]float64 {
		t.Helper()
		m := r.Models[byPath[p]]
		if m.Error != "" {
			t.Fatalf("%s: llama.cpp: %s\n%s", filepath.Base(p), m.Error, m.Log)
		}
		if len(m.Logits) != len(testTokens) {
			t.Fatalf("%s: %d logit vectors", filepath.Base(p), len(m.Logits))
		}
		return m.Logits
	}
	refs := map[string][][]float64{}
	for _, m := range models {
		for _, toks := range testTokens {
			ref, err := testmodel.ForwardDir(dirs[m.name], toks)
			if err != nil {
				t.Fatal(err)
			}
			refs[m.name] = append(refs[m.name], ref)
		}
	}
	compareRef := func(t *testing.T, m testModel, label string, got [][]float64, tol float64) {
		t.Helper()
		worst := 0.0
		for s := range testTokens {
			d, sc := logitStats(got[s], refs[m.name][s])
			worst = math.Max(worst, d/sc)
			if d > tol*sc {
				t.Errorf("%s, sequence %d: max |Δlogit| %.3g > %g × max|logit| %.3g", label, s, d, tol, sc)
			}
		}
		t.Logf("%s: max |Δlogit| vs the float64 reference ≤ %.3g × max|logit| (bound %g)", label, worst, tol)
	}

	t.Run("Harness", func(t *testing.T) {
		for _, m := range models {
			compareRef(t, m, m.name+" (suite's F32 writer)", logits(t, filepath.Join(dir, m.name+"-harness.gguf")),
				tolerance(m.spec.Arch, gguf.FileF32))
		}
	})

	t.Run("LoadsAndComputes", func(t *testing.T) {
		for _, m := range models {
			f32 := logits(t, filepath.Join(dir, m.name+"-F32.gguf"))
			for _, ft := range allTypes {
				label := m.name + "/" + ft.String()
				got := logits(t, filepath.Join(dir, m.name+"-"+ft.String()+".gguf"))
				if ft == gguf.FileF32 || ft == gguf.FileF16 {
					compareRef(t, m, label, got, tolerance(m.spec.Arch, ft))
					continue
				}
				// The reference for this file: Forward on its own weights, dequantized by internal/ggml.
				cfgData, err := os.ReadFile(filepath.Join(dirs[m.name], "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				fc, err := testmodel.ParseForwardConfig(cfgData)
				if err != nil {
					t.Fatal(err)
				}
				dq := dequantizedWeights(t, filepath.Join(dir, m.name+"-"+ft.String()+".gguf"), fc)
				var worstKL, worstDiff, worstRel float64
				checked := 0
				for s, toks := range testTokens {
					kl := klDivergence(f32[s], got[s])
					d, _ := logitStats(got[s], f32[s])
					worstKL, worstDiff = math.Max(worstKL, kl), math.Max(worstDiff, d)
					if kl > klBound[ft] {
						t.Errorf("%s, sequence %d: KL(F32 ‖ %s) %.3g > %g", label, s, ft, kl, klBound[ft])
					}
					ref, err := testmodel.Forward(cfgData, dq, toks)
					if err != nil {
						t.Fatal(err)
					}
					dr, sc := logitStats(got[s], ref)
					worstRel = math.Max(worstRel, dr/sc)
					tol := quantTolerance(m.spec.Arch, ft)
					if dr > tol*sc {
						t.Errorf("%s, sequence %d: max |Δlogit| vs the dequantized reference %.3g > %g × %.3g", label,
							s, dr, tol, sc)
					}
					want, margin := top2(ref)
					sigma := errorStd(got[s], ref)
					if margin < marginSigmas*sigma {
						continue
					}
					checked++
					if top, _ := top2(got[s]); top != want {
						t.Errorf("%s, sequence %d: top-1 token %d, the dequantized reference says %d (margin %.3g, "+
							"σ %.3g)", label, s, top, want, margin, sigma)
					}
				}
				t.Logf("%s: KL(F32 ‖ %s) ≤ %.3g (bound %g), max |Δlogit| vs F32 %.3g; vs the dequantized reference "+
					"≤ %.3g × max|logit| (bound %g), top-1 agrees on %d of %d sequences (those with a margin ≥ %dσ)",
					label, ft, worstKL, klBound[ft], worstDiff, worstRel, quantTolerance(m.spec.Arch, ft), checked,
					len(testTokens), marginSigmas)
			}
		}
	})

	t.Run("TopOne", func(t *testing.T) { checkTopOne(t, dir, peaked, peakedDirs, logits) })

	t.Run("Tokenization", func(t *testing.T) {
		for i, m := range models {
			lc := r.Models[byPath[filepath.Join(dir, m.name+"-F32.gguf")]]
			hf := r.Tokenizers[i]
			if lc.Error != "" || hf.Error != "" {
				t.Errorf("%s: llama.cpp: %q, @huggingface/tokenizers: %q", m.name, lc.Error, hf.Error)
				continue
			}
			tx := texts(m.spec.Tokenizer)
			same := 0
			for k, x := range tx {
				if slices.Equal(lc.Tokens[k], hf.Tokens[k]) {
					same++
					continue
				}
				t.Errorf("%s (%s): %q:\n  llama.cpp               %v\n  @huggingface/tokenizers %v", m.name,
					m.spec.Tokenizer, x.Text, lc.Tokens[k], hf.Tokens[k])
			}
			t.Logf("%s (%s): %d of %d strings tokenized identically", m.name, m.spec.Tokenizer, same, len(tx))
		}
	})

	t.Run("WholeFile", func(t *testing.T) {
		for _, q := range qjobs {
			ours := strings.Replace(q.Dst, "-llama-quantize.gguf", ".gguf", 1)
			var moved map[string]string
			if gguf.FileType(q.FType) == gguf.FileQ8_0 {
				moved = metadataMoved
			}
			compareFiles(t, ours, q.Dst, moved)
		}
	})

	t.Run("HuggingFaceGGUF", func(t *testing.T) {
		for _, g := range r.GGUF {
			name := filepath.Base(g.Path)
			if g.Error != "" {
				t.Errorf("%s: @huggingface/gguf: %s", name, g.Error)
				continue
			}
			data, err := os.ReadFile(g.Path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := gguf.Parse(data)
			if err != nil {
				t.Errorf("%s: hubsync's reader: %v", name, err)
				continue
			}
			own, err := parseGGUF(g.Path)
			if err != nil {
				t.Errorf("%s: suite's reader: %v", name, err)
				continue
			}
			if len(g.Tensors) != len(h.Tensors) || len(g.Tensors) != len(own.Tensors) {
				t.Errorf("%s: %d tensors (@huggingface/gguf), %d (hubsync), %d (suite)", name, len(g.Tensors),
					len(h.Tensors), len(own.Tensors))
				continue
			}
			if g.TensorDataOffset != h.DataOffset {
				t.Errorf("%s: data offset %d (@huggingface/gguf) vs %d", name, g.TensorDataOffset, h.DataOffset)
			}
			for i, ti := range g.Tensors {
				hi, oi := h.Tensors[i], own.Tensors[i]
				if ti.Name != hi.Name || !slices.Equal(ti.Shape, hi.Dims) || ti.DType != uint32(hi.Type) ||
					ti.Offset != hi.Offset || ti.Name != oi.Name || !slices.Equal(ti.Shape, oi.Dims) ||
					ti.DType != oi.Type || uint64(ti.Offset) != oi.Offset {
					t.Errorf("%s: tensor %d: @huggingface/gguf %+v, hubsync %+v, suite %+v", name, i, ti, hi,
						[]any{oi.Name, oi.Dims, oi.Type, oi.Offset})
				}
			}
			if got := g.Metadata["general.architecture"]; got != h.KVs[0].Value {
				t.Errorf("%s: general.architecture %v, hubsync's reader %v", name, got, h.KVs[0].Value)
			}
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		m := r.Models[byPath[truncated]]
		if m.Error == "" {
			t.Fatalf("llama.cpp loaded a truncated file")
		}
		t.Logf("truncated file: llama.cpp says %q %s", m.Error, firstLine(m.Log, "not within the file bounds"))
	})
}

// quantTypes are the types llama-quantize makes from a 16-bit GGUF (their FileType values are llama_ftype's).
var quantTypes = []gguf.FileType{gguf.FileQ8_0, gguf.FileQ4_0, gguf.FileQ4_KM, gguf.FileQ5_KM, gguf.FileQ6_K}

// metadataMoved are the metadata keys whose position may differ between hubsync's Q8_0 file and
// llama_model_quantize's Q8_0 output from hubsync's BF16 file (types and values must still be equal).
// llama.cpp copies the input's keys and then sets these two (src/llama-quant.cpp), which moves them to the end.
// hubsync's Q4_0 and k-quant files put them last too, so their metadata is identical and nothing is allowed to
// differ. Its Q8_0 file is the one `convert_hf_to_gguf --outtype q8_0` writes, with the two keys after the
// hyper-parameters.
var metadataMoved = map[string]string{
	"general.file_type":            "set again by llama_model_quantize, so moved to the end",
	"general.quantization_version": "set by llama_model_quantize, so moved to the end",
}

// compareFiles checks that hubsync's file ours and llama.cpp's file theirs hold the same tensors (names, order,
// types, dims, data bytes) and the same metadata (keys, types, values; and order, except for the keys in moved).
func compareFiles(t *testing.T, ours, theirs string, moved map[string]string) {
	t.Helper()
	a, err := parseGGUF(ours)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseGGUF(theirs)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(ours)
	if len(a.Tensors) != len(b.Tensors) {
		t.Errorf("%s: %d tensors, llama-quantize wrote %d", name, len(a.Tensors), len(b.Tensors))
		return
	}
	bad := 0
	for i, x := range a.Tensors {
		y := b.Tensors[i]
		switch {
		case x.Name != y.Name || !slices.Equal(x.Dims, y.Dims) || x.Type != y.Type:
			t.Errorf("%s: tensor %d is %s %v type %d, llama-quantize wrote %s %v type %d", name, i, x.Name, x.Dims,
				x.Type, y.Name, y.Dims, y.Type)
			bad++
		case !bytes.Equal(x.Data, y.Data):
			t.Errorf("%s: tensor %s (type %d): data differs from llama-quantize's", name, x.Name, x.Type)
			bad++
		}
		if bad > 5 {
			t.Errorf("%s: stopping after 5 tensor differences", name)
			break
		}
	}
	filter := func(keys []string) []string {
		var out []string
		for _, k := range keys {
			if _, ok := moved[k]; !ok {
				out = append(out, k)
			}
		}
		return out
	}
	ka, kb := filter(a.Keys), filter(b.Keys)
	if !slices.Equal(ka, kb) {
		t.Errorf("%s: metadata keys\n  hubsync        %v\n  llama-quantize %v", name, ka, kb)
	}
	for k := range moved {
		if _, ok := a.KV[k]; !ok {
			t.Errorf("%s: no %s", name, k)
		}
		ka = append(ka, k)
	}
	for _, k := range ka {
		x, y := a.KV[k], b.KV[k]
		if x.Type != y.Type || !bytes.Equal(x.Raw, y.Raw) {
			t.Errorf("%s: metadata %s differs: type %d %.80q, llama-quantize type %d %.80q", name, k, x.Type, x.Raw,
				y.Type, y.Raw)
		}
	}
}

// texts are the tokenization checks of a tokenizer kind (special tokens recognised, as transformers does).
func texts(k testmodel.TokenizerKind) []textJob {
	var out []textJob
	for _, x := range append(slices.Clone(tokenizeTexts), specialTexts[k]...) {
		out = append(out, textJob{Text: x, Special: true})
	}
	return out
}

// firstLine returns the first line of log containing s, or the first line.
func firstLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for _, l := range lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return lines[0]
}

// TestExportRefusesBadInput checks the Go API's refusals: an unknown architecture (naming architectures[0]) and
// a model without a tokenizer fail at Plan, and no file is left behind.
func TestExportRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	md := genModel(t, dir, "m", testmodel.GGUFSmall(testmodel.ArchLlama))
	cases := []struct {
		name  string
		edit  func(t *testing.T, d string)
		wants []string
	}{
		{"unknown architecture", func(t *testing.T, d string) {
			cfg, err := os.ReadFile(filepath.Join(d, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			cfg = bytes.Replace(cfg, []byte("LlamaForCausalLM"), []byte("FancyNewForCausalLM"), 1)
			if err := os.WriteFile(filepath.Join(d, "config.json"), cfg, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"FancyNewForCausalLM"}},
		{"missing tokenizer", func(t *testing.T, d string) {
			for _, f := range []string{"tokenizer.json", "tokenizer.model"} {
				if err := os.Remove(filepath.Join(d, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, []string{"tokenizer"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(dir, fmt.Sprint("case", i))
			if err := os.CopyFS(d, os.DirFS(md)); err != nil {
				t.Fatal(err)
			}
			c.edit(t, d)
			out := filepath.Join(dir, fmt.Sprint("out", i, ".gguf"))
			err := exportGGUF(d, gguf.FileQ8_0, out)
			if err == nil {
				t.Fatal("export succeeded")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("a file was left at %s (%v)", out, serr)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
}
