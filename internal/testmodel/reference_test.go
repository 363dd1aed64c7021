package testmodel

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// Helpers to build tiny hand-made checkpoints.

func tF32(name string, shape []int64, v ...float32) safetensors.Data {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return safetensors.Data{Entry: safetensors.Entry{Name: name, DType: tensor.F32, Shape: shape}, Bytes: b}
}

func t16(dt tensor.DType, name string, shape []int64, v ...float32) safetensors.Data {
	b := make([]byte, 2*len(v))
	if _, err := tensor.EncodeFloats(dt, v, b); err != nil {
		panic(err)
	}
	for _, x := range v {
		if tensor.RoundTo(dt, x) != x {
			panic("hand value not exact in " + dt.String())
		}
	}
	return safetensors.Data{Entry: safetensors.Entry{Name: name, DType: dt, Shape: shape}, Bytes: b}
}

func tU8(name string, shape []int64, b ...byte) safetensors.Data {
	return safetensors.Data{Entry: safetensors.Entry{Name: name, DType: tensor.U8, Shape: shape}, Bytes: b}
}

func tBlob(name, blob string) safetensors.Data {
	return tU8(name, []int64{int64(len(blob))}, []byte(blob)...)
}

// quant4 returns the §3.2 tensors of a hand-quantized weight (no double quant).
func quant4(w string, q Quant, packed []byte, absmax []float32, blob string) []safetensors.Data {
	cb := Codebook(q)
	return []safetensors.Data{
		tU8(w, []int64{int64(len(packed)), 1}, packed...),
		tF32(w+".absmax", []int64{int64(len(absmax))}, absmax...),
		tF32(w+".quant_map", []int64{16}, cb[:]...),
		tBlob(w+".quant_state.bitsandbytes__"+string(q), blob),
	}
}

func writeST(t *testing.T, path string, ts []safetensors.Data) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := safetensors.WriteTensors(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// handCase writes a base and an adapter and runs ReferenceMerge.
func handCase(t *testing.T, base []safetensors.Data, cfg map[string]any, adapter []safetensors.Data) (map[string]RefTensor, error) {
	t.Helper()
	dir := t.TempDir()
	writeST(t, filepath.Join(dir, "base", "model.safetensors"), base)
	writeST(t, filepath.Join(dir, "adapter", "adapter_model.safetensors"), adapter)
	full := map[string]any{"peft_type": "LORA", "task_type": "CAUSAL_LM"}
	for k, v := range cfg {
		full[k] = v
	}
	if err := WriteAdapterConfig(filepath.Join(dir, "adapter"), full); err != nil {
		t.Fatal(err)
	}
	return ReferenceMerge(filepath.Join(dir, "base"), filepath.Join(dir, "adapter"))
}

func expect(t *testing.T, out map[string]RefTensor, name string, shape []int64, want ...float64) {
	t.Helper()
	got, ok := out[name]
	if !ok {
		t.Fatalf("no output %s (have %v)", name, slices.Sorted(func(y func(string) bool) {
			for k := range out {
				if !y(k) {
					return
				}
			}
		}))
	}
	if !slices.Equal(got.Shape, shape) || !slices.Equal(got.Values, want) {
		t.Errorf("%s = %v %v, want %v %v", name, got.Shape, got.Values, shape, want)
	}
}

const (
	pq = "base_model.model.model.layers.0.self_attn.q_proj"
	q0 = "model.layers.0.self_attn.q_proj"
)

func TestReferenceMergeHand(t *testing.T) {
	// 0.07958029955625534 (NF4 code 8) · 0.5 = 0x3d22faff in float32, which rounds to bf16 0x3d23 =
	// 0.039794921875.
	const nf4c8half = 0.039794921875
	// Double quant, code 0 of the dynamic map (0xbf7e3333) · 0.25 + 0.5: the exact sum is 16895181·2⁻²⁶, which
	// float32 rounds (a tie, to even) to 8447590·2⁻²⁵.
	const dqScale1 = 8447590.0 / (1 << 25)
	dm := DynamicMap()
	cases := []struct {
		name    string
		base    []safetensors.Data
		cfg     map[string]any
		adapter []safetensors.Data
		check   func(t *testing.T, out map[string]RefTensor)
	}{
		{"nf4 bf16 r=1", append(quant4(q0+".weight", QuantNF4, []byte{0xF0, 0x78}, []float32{0.5},
			`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2, 2]}`),
			t16(tensor.BF16, "model.norm.weight", []int64{2}, 1, 2)),
			map[string]any{"r": 1, "lora_alpha": 2},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 0.5, -0.25),
				tF32(pq+".lora_B.weight", []int64{2, 1}, 0.25, 1)},
			func(t *testing.T, out map[string]RefTensor) {
				// base [[0.5, -0.5], [0, nf4c8half]] + 2·[0.25, 1]ᵀ[0.5, -0.25]
				expect(t, out, q0+".weight", []int64{2, 2}, 0.75, -0.625, 1.0, nf4c8half-0.5)
				expect(t, out, "model.norm.weight", []int64{2}, 1, 2)
				if len(out) != 2 {
					t.Errorf("outputs %d, want 2 (quant-state keys must be dropped)", len(out))
				}
			}},
		{"nf4 double quant f32 rslora r=4", []safetensors.Data{
			tU8(q0+".weight", []int64{2, 1}, 0xF0, 0x7F),
			tU8(q0+".weight.absmax", []int64{2}, 255, 0),
			tF32(q0+".weight.quant_map", []int64{16}, func() []float32 { c := Codebook(QuantNF4); return c[:] }()...),
			tF32(q0+".weight.nested_absmax", []int64{1}, 0.25),
			tF32(q0+".weight.nested_quant_map", []int64{256}, dm[:]...),
			tBlob(q0+".weight.quant_state.bitsandbytes__nf4", `{"quant_type": "nf4", "blocksize": 2, "dtype": "float32", `+
				`"shape": [2, 2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5}`)},
			map[string]any{"r": 4, "lora_alpha": 4, "use_rslora": true},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{4, 2}, 1, 0, 0, 1, 0, 0, 0, 0),
				tF32(pq+".lora_B.weight", []int64{2, 4}, 1, 0, 5, 5, 0, 2, 5, 5)},
			func(t *testing.T, out map[string]RefTensor) {
				// scales 1·0.25+0.5 = 0.75 and dqScale1; codes [15 0 | 7 15]; B·A = diag(1, 2); 4/sqrt(4) = 2.
				expect(t, out, q0+".weight", []int64{2, 2}, 0.75+2, -0.75, 0, dqScale1+4)
			}},
		{"fp4 f32 lora_bias", append(quant4(q0+".weight", QuantFP4, []byte{0x3B, 0x5E}, []float32{0.5},
			`{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]}`),
			t16(tensor.BF16, q0+".bias", []int64{2}, 0.5, -1)),
			map[string]any{"r": 1, "lora_alpha": 2, "lora_bias": true},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 0, 0),
				tF32(pq+".lora_B.weight", []int64{2, 1}, 1, 1), tF32(pq+".lora_B.bias", []int64{2}, 1, 2)},
			func(t *testing.T, out map[string]RefTensor) {
				// FP4 codes 3 (1), 11 (−1), 5 (0.5), 14 (−0x3e2aaaab) times 0.5.
				expect(t, out, q0+".weight", []int64{2, 2}, 0.5, -0.5, 0.25,
					float64(math.Float32frombits(0xbdaaaaab)))
				expect(t, out, q0+".bias", []int64{2}, 2.5, 3)
			}},
		{"fan_in_fan_out 16-bit", []safetensors.Data{tF32(q0+".weight", []int64{2, 3}, 1, 2, 3, 4, 5, 6)},
			map[string]any{"r": 1, "lora_alpha": 1, "fan_in_fan_out": true},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 1, -1),
				tF32(pq+".lora_B.weight", []int64{3, 1}, 1, 2, 3)},
			func(t *testing.T, out map[string]RefTensor) {
				// (B·A)ᵀ = [[1 2 3] [−1 −2 −3]]
				expect(t, out, q0+".weight", []int64{2, 3}, 2, 4, 6, 3, 3, 3)
			}},
		{"fan_in_fan_out dora", []safetensors.Data{tF32(q0+".weight", []int64{2, 3}, 2, 0, 4, 4, 2, 8)},
			map[string]any{"r": 1, "lora_alpha": 1, "fan_in_fan_out": true, "use_dora": true},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 1, 0),
				tF32(pq+".lora_B.weight", []int64{3, 1}, 1, 0, 2),
				tF32(pq+".lora_magnitude_vector", []int64{3}, 5, 1, 5)},
			func(t *testing.T, out map[string]RefTensor) {
				// logical rows (3,4) (0,2) (6,8): norms 5, 2, 10
				expect(t, out, q0+".weight", []int64{2, 3}, 3, 0, 3, 4, 1, 4)
			}},
		{"dora linear", []safetensors.Data{t16(tensor.BF16, q0+".weight", []int64{2, 2}, 2, 4, 0, 2)},
			map[string]any{"r": 1, "lora_alpha": 1, "use_dora": true},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 1, 0),
				tF32(pq+".lora_B.weight", []int64{2, 1}, 1, 0),
				tF32(pq+".lora_magnitude_vector", []int64{2}, 10, 1)},
			func(t *testing.T, out map[string]RefTensor) {
				expect(t, out, q0+".weight", []int64{2, 2}, 6, 8, 0, 1)
			}},
		{"embedding", []safetensors.Data{t16(tensor.BF16, "model.embed_tokens.weight", []int64{3, 2}, 1, 2, 3, 4, 5, 6)},
			map[string]any{"r": 1, "lora_alpha": 2, "target_modules": []string{"embed_tokens"}},
			[]safetensors.Data{tF32("base_model.model.model.embed_tokens.lora_embedding_A", []int64{1, 3}, 1, 0, -1),
				tF32("base_model.model.model.embed_tokens.lora_embedding_B", []int64{2, 1}, 0.5, 1)},
			func(t *testing.T, out map[string]RefTensor) {
				expect(t, out, "model.embed_tokens.weight", []int64{3, 2}, 2, 4, 3, 4, 4, 4)
			}},
		{"embedding dora", []safetensors.Data{t16(tensor.F16, "model.embed_tokens.weight", []int64{2, 2}, 2, 0, 4, 2)},
			map[string]any{"r": 1, "lora_alpha": 1, "use_dora": true},
			[]safetensors.Data{tF32("base_model.model.model.embed_tokens.lora_embedding_A", []int64{1, 2}, 1, 0),
				tF32("base_model.model.model.embed_tokens.lora_embedding_B", []int64{2, 1}, 1, 0),
				tF32("base_model.model.model.embed_tokens.lora_magnitude_vector", []int64{2}, 10, 1)},
			func(t *testing.T, out map[string]RefTensor) {
				// V = [[3 0] [4 2]]: column norms 5 and 2.
				expect(t, out, "model.embed_tokens.weight", []int64{2, 2}, 6, 0, 8, 1)
			}},
		{"saved modules and biases", []safetensors.Data{
			t16(tensor.BF16, "model.embed_tokens.weight", []int64{2, 2}, 1, 2, 3, 4),
			t16(tensor.BF16, "lm_head.weight", []int64{2, 2}, 1, 1, 1, 1),
			t16(tensor.BF16, q0+".weight", []int64{2, 2}, 1, 0, 0, 1),
			t16(tensor.BF16, q0+".bias", []int64{2}, 1, 1),
			t16(tensor.BF16, "model.layers.0.self_attn.k_proj.bias", []int64{1}, 1),
			t16(tensor.BF16, "model.layers.0.self_attn.k_proj.weight", []int64{1, 2}, 1, 1)},
			map[string]any{"r": 1, "lora_alpha": 1, "bias": "all", "modules_to_save": []string{"lm_head"}},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 1, 1),
				tF32(pq+".lora_B.weight", []int64{2, 1}, 1, -1),
				tF32(pq+".base_layer.bias", []int64{2}, 7, 8),
				tF32("base_model.model.model.layers.0.self_attn.k_proj.bias", []int64{1}, 9),
				tF32("base_model.model.lm_head.weight", []int64{3, 2}, 1, 2, 3, 4, 5, 6),
				tF32("base_model.model.model.embed_tokens.base_layer.weight", []int64{3, 2}, 1, 2, 3, 4, 0.5, 0.25)},
			func(t *testing.T, out map[string]RefTensor) {
				expect(t, out, q0+".weight", []int64{2, 2}, 2, 1, -1, 0)
				expect(t, out, q0+".bias", []int64{2}, 7, 8)
				expect(t, out, "model.layers.0.self_attn.k_proj.bias", []int64{1}, 9)
				expect(t, out, "model.layers.0.self_attn.k_proj.weight", []int64{1, 2}, 1, 1)
				expect(t, out, "lm_head.weight", []int64{3, 2}, 1, 2, 3, 4, 5, 6)
				expect(t, out, "model.embed_tokens.weight", []int64{3, 2}, 1, 2, 3, 4, 0.5, 0.25)
			}},
		{"tied lm_head saved", []safetensors.Data{t16(tensor.BF16, "model.embed_tokens.weight", []int64{1, 2}, 1, 2),
			t16(tensor.BF16, q0+".weight", []int64{1, 1}, 1)},
			map[string]any{"r": 1, "lora_alpha": 1},
			[]safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 1}, 1), tF32(pq+".lora_B.weight", []int64{1, 1}, 1),
				tF32("base_model.model.lm_head.weight", []int64{1, 2}, 3, 4)},
			func(t *testing.T, out map[string]RefTensor) {
				expect(t, out, "lm_head.weight", []int64{1, 2}, 3, 4)
				expect(t, out, q0+".weight", []int64{1, 1}, 2)
			}},
		{"tied embedding LoRA untied", []safetensors.Data{t16(tensor.BF16, "model.embed_tokens.weight", []int64{2, 1}, 1, 2)},
			map[string]any{"r": 1, "lora_alpha": 1},
			[]safetensors.Data{tF32("base_model.model.model.embed_tokens.lora_embedding_A", []int64{1, 2}, 1, 2),
				tF32("base_model.model.model.embed_tokens.lora_embedding_B", []int64{1, 1}, 3)},
			func(t *testing.T, out map[string]RefTensor) {
				// (B·A)ᵀ = [[3] [6]]: the embedding moves, lm_head keeps the original rows.
				expect(t, out, "model.embed_tokens.weight", []int64{2, 1}, 4, 8)
				expect(t, out, "lm_head.weight", []int64{2, 1}, 1, 2)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := handCase(t, tc.base, tc.cfg, tc.adapter)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, out)
		})
	}
}

func TestReferenceMergePatterns(t *testing.T) {
	q1 := "model.layers.1.self_attn.q_proj"
	base := []safetensors.Data{tF32(q0+".weight", []int64{1, 1}, 0), tF32(q1+".weight", []int64{1, 1}, 0)}
	adapter := []safetensors.Data{
		tF32(pq+".lora_A.weight", []int64{1, 1}, 1), tF32(pq+".lora_B.weight", []int64{1, 1}, 1),
		tF32("base_model.model."+q1+".lora_A.weight", []int64{1, 1}, 1),
		tF32("base_model.model."+q1+".lora_B.weight", []int64{1, 1}, 1)}
	cases := []struct {
		name   string
		cfg    string // the pattern part of the config, written verbatim to keep its key order
		l0, l1 float64
	}{
		{"first match wins (short key first)", `"alpha_pattern": {"q_proj": 4, "model.layers.0.self_attn.q_proj": 8}`, 4, 4},
		{"first match wins (full key first)", `"alpha_pattern": {"model.layers.0.self_attn.q_proj": 8, "q_proj": 4}`, 8, 4},
		{"anchored at a dot", `"alpha_pattern": {"proj": 8, "layers.1.self_attn.q_proj": 6}`, 3, 6},
		{"rank pattern", `"r": 2, "rank_pattern": {"q_proj": 1}`, 3, 3},
		{"regex key", `"alpha_pattern": {"model\\.layers\\.[1-9]\\..*": 5}`, 3, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeST(t, filepath.Join(dir, "base", "model.safetensors"), base)
			writeST(t, filepath.Join(dir, "adapter", "adapter_model.safetensors"), adapter)
			cfg := `{"peft_type": "LORA", "r": 1, "lora_alpha": 3, ` + tc.cfg + `}`
			cfg = strings.Replace(cfg, `"r": 1, "lora_alpha": 3, "r": 2,`, `"lora_alpha": 3, "r": 2,`, 1)
			if err := os.WriteFile(filepath.Join(dir, "adapter", "adapter_config.json"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := ReferenceMerge(filepath.Join(dir, "base"), filepath.Join(dir, "adapter"))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, out, q0+".weight", []int64{1, 1}, tc.l0)
			expect(t, out, q1+".weight", []int64{1, 1}, tc.l1)
		})
	}
}

func TestReferenceMergeErrors(t *testing.T) {
	w := []safetensors.Data{tF32(q0+".weight", []int64{2, 2}, 1, 2, 3, 4)}
	ab := []safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 2}, 1, 1), tF32(pq+".lora_B.weight", []int64{2, 1}, 1, 1)}
	cases := []struct {
		name    string
		base    []safetensors.Data
		cfg     map[string]any
		adapter []safetensors.Data
		msg     string
	}{
		{"rank mismatch", w, map[string]any{"r": 2}, ab, "rank"},
		{"magnitude without use_dora", w, map[string]any{"r": 1},
			append(slices.Clone(ab), tF32(pq+".lora_magnitude_vector", []int64{2}, 1, 1)), "use_dora"},
		{"use_dora without magnitude", w, map[string]any{"r": 1, "use_dora": true}, ab, "use_dora"},
		{"lora bias without base bias", w, map[string]any{"r": 1},
			append(slices.Clone(ab), tF32(pq+".lora_B.bias", []int64{2}, 1, 1)), "bias"},
		{"no prefix", w, map[string]any{"r": 1}, []safetensors.Data{tF32("model.x.lora_A.weight", []int64{1, 2}, 1, 1)}, "base_model.model."},
		{"unknown tensor", w, map[string]any{"r": 1}, append(slices.Clone(ab), tF32(pq+".lora_C", []int64{1}, 1)), "neither"},
		{"missing base module", w, map[string]any{"r": 1}, []safetensors.Data{
			tF32("base_model.model.model.layers.3.mlp.up_proj.lora_A.weight", []int64{1, 2}, 1, 1),
			tF32("base_model.model.model.layers.3.mlp.up_proj.lora_B.weight", []int64{2, 1}, 1, 1)}, "no model.layers.3"},
		{"shape mismatch", w, map[string]any{"r": 1}, []safetensors.Data{tF32(pq+".lora_A.weight", []int64{1, 3}, 1, 1, 1),
			tF32(pq+".lora_B.weight", []int64{2, 1}, 1, 1)}, "base weight"},
		{"only A", w, map[string]any{"r": 1}, ab[:1], "needs"},
		{"not lora", w, map[string]any{"r": 1, "peft_type": "LOHA"}, ab, "LORA"},
		{"replaces nothing", w, map[string]any{"r": 1}, append(slices.Clone(ab), tF32("base_model.model.foo.weight", []int64{1}, 1)), "does not have"},
		{"quant type mismatch", quant4(q0+".weight", QuantNF4, []byte{0, 0}, []float32{1},
			`{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]}`), map[string]any{"r": 1}, ab, "quant_type"},
		{"absmax count", quant4(q0+".weight", QuantNF4, []byte{0, 0}, []float32{1, 1},
			`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]}`), map[string]any{"r": 1}, ab, "absmax"},
		{"short codes", quant4(q0+".weight", QuantNF4, []byte{0}, []float32{1},
			`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]}`), map[string]any{"r": 1}, ab, "packed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handCase(t, tc.base, tc.cfg, tc.adapter)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestReferenceMergeGenerated checks generator and oracle against each other on generated models: untouched
// weights equal the dequantized base; targeted ones differ by scaling·B·A with the generator's resolved scaling,
// and DoRA rows have the magnitude's norm.
func TestReferenceMergeGenerated(t *testing.T) {
	fifo := Awkward(ArchLlama)
	fifo.Quant, fifo.DoubleQuant, fifo.FanInFanOut = QuantNone, false, true
	fp4 := Tiny(ArchQwen2)
	fp4.Quant, fp4.DoubleQuant, fp4.DType = QuantFP4, false, tensor.F16
	cases := []struct {
		name string
		base BaseSpec
		spec AdapterSpec
	}{
		{"awkward all-linear patterns", Awkward(ArchLlama), AdapterSpec{R: 4, Alpha: 8, TargetModules: AllLinear(),
			RankPattern: []RankRule{{"down_proj", 2}}, AlphaPattern: []AlphaRule{{"model.layers.1.mlp.up_proj", 3}}}},
		{"qwen2 fp4 dora rslora bias", fp4, AdapterSpec{R: 3, Alpha: 5, UseRSLoRA: true, UseDoRA: true,
			TargetRegex: `.*\.(q|v|down)_proj`, Bias: BiasAll, DType: tensor.BF16}},
		{"qwen2 lora bias embedding", Tiny(ArchQwen2), AdapterSpec{R: 2, TargetModules: []string{"k_proj"},
			LoRABias: true, EmbeddingLoRA: true, ResizeVocab: 2, ModulesToSave: []string{"lm_head"}}},
		{"fifo 16-bit dora", fifo, AdapterSpec{R: 2, TargetModules: []string{"o_proj", "up_proj"}, FanInFanOut: true,
			UseDoRA: true, DType: tensor.F16}},
		{"llama embedding dora modules_to_save", Tiny(ArchLlama), AdapterSpec{R: 2, EmbeddingLoRA: true, UseDoRA: true,
			TargetModules: []string{"gate_proj"}, ModulesToSave: []string{"lm_head"}, ResizeVocab: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := genBase(t, tc.base)
			adir := filepath.Join(t.TempDir(), "adapter")
			ai, err := GenerateAdapter(context.Background(), adir, base, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			out, err := ReferenceMerge(base.Dir, adir)
			if err != nil {
				t.Fatal(err)
			}
			baseVals, err := loadReferenceBase(base.Dir)
			if err != nil {
				t.Fatal(err)
			}
			adapter, err := readAllFloats(filepath.Join(adir, "adapter_model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			files := openAll(t, base)
			// Untargeted weights are the base's, and 4-bit ones equal Dequantize4Bit rounded to the dtype.
			for _, w := range base.Weights {
				got, ok := out[w.Name]
				if !ok {
					t.Fatalf("no output %s", w.Name)
				}
				if !w.Quantized {
					continue
				}
				s := base.Spec
				n := len(got.Values)
				var scales []float32
				if s.DoubleQuant {
					qs, _ := ParseQuantState(files[w.Name+".quant_state.bitsandbytes__"+string(s.Quant)].read(t))
					scales = NestedQuant{Codes: files[w.Name+".absmax"].read(t),
						Absmax: f32s(files[w.Name+".nested_absmax"].read(t)), Offset: qs.NestedOffset}.Scales()
				} else {
					scales = f32s(files[w.Name+".absmax"].read(t))
				}
				deq := Dequantize4Bit(s.Quant, s.Blocksize, files[w.Name].read(t), scales, n)
				for i, v := range deq {
					if baseVals[w.Name].Values[i] != float64(tensor.RoundTo(s.DType, v)) {
						t.Fatalf("%s[%d]: oracle base %v, Dequantize4Bit %v", w.Name, i, baseVals[w.Name].Values[i], v)
					}
				}
			}
			for _, m := range ai.Modules {
				name := m.Path + ".weight"
				got, bv := out[name], baseVals[name]
				var a, b RefTensor
				pre := "base_model.model." + m.Path
				if m.Kind == KindEmbedding {
					a, b = adapter[pre+".lora_embedding_A"], adapter[pre+".lora_embedding_B"]
					bv = adapter[pre+".base_layer.weight"]
				} else {
					a, b = adapter[pre+".lora_A.weight"], adapter[pre+".lora_B.weight"]
				}
				rows, cols, r := b.Shape[0], a.Shape[1], int64(m.R)
				if a.Shape[0] != r {
					t.Fatalf("%s: A has %d rows, rank %d", name, a.Shape[0], r)
				}
				idx := func(i, j int64) int64 { return i*cols + j }
				if m.Kind == KindEmbedding || ai.Spec.FanInFanOut {
					idx = func(i, j int64) int64 { return j*rows + i }
				}
				mag, dora := adapter[pre+".lora_magnitude_vector"]
				for i := range rows {
					var norm float64
					for j := range cols {
						var ba float64
						for k := range r {
							ba += b.Values[i*r+k] * a.Values[k*cols+j]
						}
						v := bv.Values[idx(i, j)] + m.Scaling*ba
						norm += v * v
						if !dora && math.Abs(got.Values[idx(i, j)]-v) > 1e-12 {
							t.Fatalf("%s (%d,%d): merged %v, base + scaling·BA %v", name, i, j, got.Values[idx(i, j)], v)
						}
					}
					if dora {
						var gn float64
						for j := range cols {
							gn += got.Values[idx(i, j)] * got.Values[idx(i, j)]
						}
						if math.Abs(math.Sqrt(gn)-mag.Values[i]) > 1e-9*mag.Values[i] {
							t.Fatalf("%s row %d: norm %v, magnitude %v", name, i, math.Sqrt(gn), mag.Values[i])
						}
					}
				}
			}
		})
	}
}
