package merge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge/kernels"
)

// mergeCase is one base + adapter combination checked against testmodel.ReferenceMerge.
type mergeCase struct {
	name    string
	base    testmodel.BaseSpec
	adapter testmodel.AdapterSpec
	dtype   tensor.DType // output dtype (Invalid: default)
	shard   int64        // output max shard size (0: default)
}

func tinyNF4(arch testmodel.Arch) testmodel.BaseSpec { return testmodel.Tiny(arch) }

func tiny16(arch testmodel.Arch, dt tensor.DType) testmodel.BaseSpec {
	s := testmodel.Tiny(arch)
	s.Quant, s.DoubleQuant, s.DType = testmodel.QuantNone, false, dt
	return s
}

// mergeCases covers every adapter option and base storage the merge supports.
func mergeCases() []mergeCase {
	fp4 := testmodel.Tiny(testmodel.ArchLlama)
	fp4.Quant, fp4.DoubleQuant, fp4.Blocksize, fp4.QuantStorage = testmodel.QuantFP4, false, 128, tensor.BF16
	fp4dq := testmodel.Tiny(testmodel.ArchMistral)
	fp4dq.Quant, fp4dq.Blocksize = testmodel.QuantFP4, 32
	fif := tiny16(testmodel.ArchLlama, tensor.BF16)
	fif.FanInFanOut = true
	f16 := testmodel.Tiny(testmodel.ArchLlama)
	f16.DType = tensor.F16
	sharded := testmodel.Tiny(testmodel.ArchLlama)
	sharded.ShardSize = 20000
	qwenBias := tiny16(testmodel.ArchQwen2, tensor.BF16)
	all := testmodel.AllLinear()
	return []mergeCase{
		{name: "llama-nf4-dq-default", base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 1}},
		{name: "llama-nf4-all-linear-r16", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{R: 16, Alpha: 32, TargetModules: all, Seed: 2}},
		{name: "rslora", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{R: 4, Alpha: 16, UseRSLoRA: true, TargetModules: all, Seed: 3}},
		{name: "rank-alpha-patterns", base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{
			R: 4, Alpha: 8, TargetModules: all, Seed: 4, KeepPatternOrder: true,
			RankPattern: []testmodel.RankRule{
				{Pattern: "^model.layers.0.self_attn.q_proj", R: 2}, {Pattern: "q_proj", R: 6}, {Pattern: "layers.1.mlp.*", R: 3}},
			AlphaPattern: []testmodel.AlphaRule{{Pattern: "down_proj", Alpha: 2}, {Pattern: "model.layers.1.self_attn.v_proj", Alpha: 20}},
		}},
		{name: "fan-in-fan-out", base: fif, adapter: testmodel.AdapterSpec{FanInFanOut: true, TargetModules: all, Seed: 5}},
		{name: "qwen2-lora-bias", base: qwenBias,
			adapter: testmodel.AdapterSpec{LoRABias: true, TargetModules: []string{"q_proj", "k_proj", "v_proj"}, Seed: 6}},
		{name: "qwen2-nf4-trained-bias-all", base: tinyNF4(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{Bias: testmodel.BiasAll, TargetModules: []string{"q_proj", "o_proj"}, Seed: 7}},
		{name: "qwen2-nf4-bias-lora-only+lora-bias", base: tinyNF4(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{Bias: testmodel.BiasLoRAOnly, LoRABias: true, TargetModules: []string{"k_proj"}, Seed: 8}},
		{name: "dora-linear-nf4", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{UseDoRA: true, TargetModules: all, Seed: 9}},
		{name: "dora-fan-in-fan-out", base: fif,
			adapter: testmodel.AdapterSpec{UseDoRA: true, FanInFanOut: true, TargetModules: []string{"q_proj", "down_proj"}, Seed: 10}},
		{name: "dora-embedding", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{UseDoRA: true, EmbeddingLoRA: true, Seed: 11}},
		{name: "embedding-lora-resized-qwen2-tied", base: tinyNF4(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{EmbeddingLoRA: true, ResizeVocab: 5, Seed: 12}},
		{name: "dora-embedding-qwen2-tied-untied", base: tiny16(testmodel.ArchQwen2, tensor.BF16),
			adapter: testmodel.AdapterSpec{UseDoRA: true, EmbeddingLoRA: true, TargetModules: []string{"q_proj"}, Seed: 28}},
		{name: "modules-to-save-resized", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{ModulesToSave: []string{"lm_head", "embed_tokens"}, ResizeVocab: 3, Seed: 13}},
		{name: "modules-to-save-lm-head-tied", base: tinyNF4(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{ModulesToSave: []string{"lm_head"}, Seed: 14}},
		{name: "modules-to-save-norm", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{ModulesToSave: []string{"model.norm"}, Seed: 15}},
		{name: "adapter-f16", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{DType: tensor.F16, TargetModules: all, Seed: 16}},
		{name: "adapter-bf16-dora", base: tinyNF4(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{DType: tensor.BF16, UseDoRA: true, Seed: 17}},
		{name: "fp4-nodq-bs128-bf16-storage", base: fp4, adapter: testmodel.AdapterSpec{TargetModules: all, Seed: 18}},
		{name: "mistral-fp4-dq-bs32", base: fp4dq, adapter: testmodel.AdapterSpec{TargetModules: all, Seed: 19}},
		{name: "awkward-shapes", base: testmodel.Awkward(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{TargetModules: all, R: 3, Seed: 20}},
		{name: "awkward-qwen2-dora", base: testmodel.Awkward(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{TargetModules: all, UseDoRA: true, Seed: 21}},
		{name: "out-fp32", base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{TargetModules: all, Seed: 22}, dtype: tensor.F32},
		{name: "out-fp16", base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{TargetModules: all, Seed: 23}, dtype: tensor.F16},
		{name: "fp16-base", base: f16, adapter: testmodel.AdapterSpec{Seed: 24}},
		{name: "bf16-base-to-fp32-dora", base: tiny16(testmodel.ArchLlama, tensor.BF16),
			adapter: testmodel.AdapterSpec{UseDoRA: true, TargetModules: all, Seed: 25}, dtype: tensor.F32},
		{name: "f32-base", base: tiny16(testmodel.ArchMistral, tensor.F32), adapter: testmodel.AdapterSpec{Seed: 26}},
		{name: "sharded-in-and-out", base: sharded, adapter: testmodel.AdapterSpec{TargetModules: all, Seed: 27}, shard: 30000},
	}
}

// generate writes the case's base and adapter under dir.
func (c mergeCase) generate(t testing.TB, dir string) (base, adapter string) {
	t.Helper()
	ctx := context.Background()
	base, adapter = filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	bi, err := testmodel.GenerateBase(ctx, base, c.base)
	if err != nil {
		t.Fatalf("generate base: %v", err)
	}
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, c.adapter); err != nil {
		t.Fatalf("generate adapter: %v", err)
	}
	return base, adapter
}

// roundRef rounds a float64 reference value to d as the output would be stored (via float32, as torch does).
func roundRef(d tensor.DType, x float64) float64 {
	return float64(tensor.RoundTo(d, float32(x)))
}

// compareToReference checks every output tensor against the float64 reference with testmodel.Tolerance (whose
// comment derives it): every value within 1 ulp of the output dtype plus 2⁻¹⁷·max|ref| of the tensor, and for
// 16-bit outputs at most testmodel.MaxInexactFraction of the elements different from the correctly rounded
// reference at all.
func compareToReference(t *testing.T, outDir string, ref map[string]testmodel.RefTensor, want func(name string) tensor.DType) {
	t.Helper()
	got := readOutput(t, outDir)
	var names []string
	for n := range ref {
		names = append(names, n)
	}
	sort.Strings(names)
	for n := range got {
		if _, ok := ref[n]; !ok {
			t.Errorf("output has %s, the reference does not", n)
		}
	}
	for _, n := range names {
		r := ref[n]
		g, ok := got[n]
		if !ok {
			t.Errorf("output lacks %s", n)
			continue
		}
		if !tensor.EqualShapes(g.Shape, r.Shape) {
			t.Errorf("%s: shape %v, reference %v", n, g.Shape, r.Shape)
			continue
		}
		if wd := want(n); wd != tensor.Invalid && g.DType != wd {
			t.Errorf("%s: dtype %s, want %s", n, g.DType, wd)
		}
		vals := g.floats(t)
		var maxAbs float64
		for _, v := range r.Values {
			maxAbs = max(maxAbs, math.Abs(v))
		}
		bad, inexact := 0, 0
		for i, rv := range r.Values {
			gv := float64(vals[i])
			tol := testmodel.Tolerance(g.DType, rv, maxAbs)
			if d := math.Abs(gv - rv); d > tol || math.IsNaN(gv) {
				if bad < 3 {
					t.Errorf("%s[%s]: got %v, reference %v (diff %g, tolerance %g)", n, indexString(r.Shape, int64(i)), gv, rv, d, tol)
				}
				bad++
			}
			if gv != roundRef(g.DType, rv) {
				inexact++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d elements outside the tolerance", n, bad, len(r.Values))
		}
		if g.DType != tensor.F32 && float64(inexact) > testmodel.MaxInexactFraction*float64(len(r.Values)) {
			t.Errorf("%s: %d of %d elements are not the correctly rounded reference", n, inexact, len(r.Values))
		}
	}
}

func TestMergeMatchesReference(t *testing.T) {
	for _, c := range mergeCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			base, adapter := c.generate(t, dir)
			ref, err := testmodel.ReferenceMerge(base, adapter)
			if err != nil {
				t.Fatalf("reference: %v", err)
			}
			bi, err := testmodel.LoadBaseInfo(base)
			if err != nil {
				t.Fatal(err)
			}
			want := func(name string) tensor.DType {
				if c.dtype != tensor.Invalid {
					return c.dtype
				}
				if w, ok := bi.Weight(name); ok {
					return w.DType
				}
				return bi.DType
			}
			for _, k := range kernels.Available() {
				t.Run(k.Name, func(t *testing.T) {
					out := filepath.Join(dir, "out-"+k.Name)
					res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: out, DType: c.dtype, Kernel: k,
						MaxShardSize: c.shard, Threads: 3})
					compareToReference(t, out, ref, want)
					if res.Merged == 0 && len(c.adapter.ModulesToSave) == 0 {
						t.Errorf("no tensor was merged")
					}
					checkOutputDir(t, out, res)
				})
			}
		})
	}
}

// checkOutputDir checks the non-weight files and that Result.Files describes the directory exactly.
func checkOutputDir(t *testing.T, out string, res *Result) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	if _, ok := c["quantization_config"]; ok {
		t.Error("config.json still has quantization_config")
	}
	{
		tensors := readOutput(t, out)
		if _, ok := tensors["lm_head.weight"]; ok && c["tie_word_embeddings"] == true {
			t.Error("config.json ties the embeddings although the output has its own lm_head.weight")
		}
		if e, ok := tensors["model.embed_tokens.weight"]; ok && c["vocab_size"] != float64(e.Shape[0]) {
			t.Errorf("config.json vocab_size %v, embeddings have %d rows", c["vocab_size"], e.Shape[0])
		}
	}
	if c["torch_dtype"] != res.DType.TorchName() {
		t.Errorf("config.json torch_dtype %v, result dtype %s", c["torch_dtype"], res.DType)
	}
	for _, f := range []string{"README.md", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	onDisk := map[string]bool{}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		onDisk[e.Name()] = true
	}
	for _, f := range res.Files {
		if !onDisk[f.Path] {
			t.Errorf("result lists %s, which is not in the output", f.Path)
		}
		st, err := os.Stat(filepath.Join(out, f.Path))
		if err == nil && st.Size() != f.Size {
			t.Errorf("%s: size %d, result says %d", f.Path, st.Size(), f.Size)
		}
		delete(onDisk, f.Path)
	}
	for f := range onDisk {
		t.Errorf("output file %s is not in the result", f)
	}
	parent := filepath.Dir(out)
	ents, _ = os.ReadDir(parent)
	for _, e := range ents {
		if bytes.Contains([]byte(e.Name()), []byte("hubsync-tmp")) {
			t.Errorf("temporary directory %s left behind", e.Name())
		}
	}
}

func TestMergeSameBytesForAnyWorkerCount(t *testing.T) {
	// DoRA on columns (embedding) and rows, a 4-bit base, odd tile boundaries: the worker count must not matter.
	c := mergeCase{base: testmodel.Awkward(testmodel.ArchLlama),
		adapter: testmodel.AdapterSpec{UseDoRA: true, EmbeddingLoRA: true, TargetModules: testmodel.AllLinear(), Seed: 31}}
	dir := t.TempDir()
	base, adapter := c.generate(t, dir)
	for _, k := range kernels.Available() {
		t.Run(k.Name, func(t *testing.T) {
			var first []byte
			for _, threads := range []int{1, 2, 7} {
				out := filepath.Join(dir, fmt.Sprintf("out-%s-%d", k.Name, threads))
				res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: out, Kernel: k, Threads: threads,
					Backends: smallTileBackend(101), Device: "small"})
				var sum bytes.Buffer
				for _, f := range res.Files {
					if f.Path != "README.md" {
						fmt.Fprintf(&sum, "%s %x\n", f.Path, f.SHA256)
					}
				}
				if first == nil {
					first = sum.Bytes()
				} else if !bytes.Equal(first, sum.Bytes()) {
					t.Errorf("threads=%d: output differs from threads=1:\n%s\nvs\n%s", threads, sum.Bytes(), first)
				}
			}
		})
	}
}

func TestMergeTileSizeDoesNotChangeResult(t *testing.T) {
	// Tiles of 1, 7 and 64Ki elements compute the same values (DoRA column sums aside, whose float64 reduction
	// order follows the tiles; here there is no column DoRA, so the bytes must match exactly).
	c := mergeCase{base: testmodel.Awkward(testmodel.ArchQwen2),
		adapter: testmodel.AdapterSpec{UseDoRA: true, TargetModules: testmodel.AllLinear(), Seed: 32}}
	dir := t.TempDir()
	base, adapter := c.generate(t, dir)
	var first map[string]outTensorData
	for _, elems := range []int{1, 7, 0} {
		out := filepath.Join(dir, fmt.Sprint("out-", elems))
		opts := Options{Base: base, Adapter: adapter, Out: out, Threads: 2}
		if elems > 0 {
			opts.Backends, opts.Device = smallTileBackend(elems), "small"
		}
		runMergeT(t, opts)
		got := readOutput(t, out)
		if first == nil {
			first = got
			continue
		}
		for n, g := range got {
			if !bytes.Equal(g.Raw, first[n].Raw) {
				t.Errorf("tile size %d: %s differs", elems, n)
			}
		}
	}
}

func TestMergeCancelledLeavesNothing(t *testing.T) {
	c := mergeCase{base: testmodel.Tiny(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 33}}
	dir := t.TempDir()
	base, adapter := c.generate(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := filepath.Join(dir, "out", "m")
	calls := 0
	_, err := Run(ctx, Options{Base: base, Adapter: adapter, Out: out, Threads: 3, Backends: smallTileBackend(64), Device: "small",
		Progress: func(done, total int64) {
			if calls++; calls == 5 {
				cancel()
			}
		}})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if IsBadInput(err) {
		t.Error("a cancellation is not bad input")
	}
	if ents := noEntries(t, filepath.Join(dir, "out")); len(ents) > 0 {
		t.Errorf("left behind: %v", ents)
	}
}
