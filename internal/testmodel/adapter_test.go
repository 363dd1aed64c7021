package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// genBase generates a base into a temp dir.
func genBase(t *testing.T, s BaseSpec) *BaseInfo {
	t.Helper()
	info, err := GenerateBase(context.Background(), filepath.Join(t.TempDir(), "base"), s)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// openAdapter returns the adapter's tensors and parsed config.
func openAdapter(t *testing.T, dir string) (map[string]fileTensor, map[string]any, []byte) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if f.Metadata["format"] != "pt" {
		t.Errorf("adapter metadata %v", f.Metadata)
	}
	out := map[string]fileTensor{}
	for _, ti := range f.Tensors {
		out[ti.Name] = fileTensor{f, ti}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return out, cfg, raw
}

type keySpec struct {
	dt    tensor.DType
	shape []int64
}

func TestGenerateAdapterKeys(t *testing.T) {
	llama := Tiny(ArchLlama) // hidden 40, q 40, kv 20, inter 100, vocab 131, untied, 4-bit
	qwen := Tiny(ArchQwen2)  // + q/k/v biases, tied
	fifo := Tiny(ArchLlama)  // 16-bit, Conv1D-style
	fifo.Quant, fifo.DoubleQuant, fifo.FanInFanOut = QuantNone, false, true
	const pre = "base_model.model."
	lin := func(m string, r, in, out int64, dt tensor.DType) map[string]keySpec {
		return map[string]keySpec{pre + m + ".lora_A.weight": {dt, []int64{r, in}},
			pre + m + ".lora_B.weight": {dt, []int64{out, r}}}
	}
	merge := func(ms ...map[string]keySpec) map[string]keySpec {
		out := map[string]keySpec{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	layers := func(f func(l int) map[string]keySpec) map[string]keySpec {
		return merge(f(0), f(1))
	}
	L := func(l int, m string) string { return fmt.Sprintf("model.layers.%d.%s", l, m) }
	cases := []struct {
		name string
		base BaseSpec
		spec AdapterSpec
		want map[string]keySpec
		cfg  map[string]any // expected config values (JSON-decoded)
	}{
		{"defaults", llama, AdapterSpec{}, layers(func(l int) map[string]keySpec {
			return merge(lin(L(l, "self_attn.q_proj"), 8, 40, 40, tensor.F32), lin(L(l, "self_attn.v_proj"), 8, 40, 20, tensor.F32))
		}), map[string]any{"r": 8.0, "lora_alpha": 8.0, "target_modules": []any{"q_proj", "v_proj"},
			"peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none", "use_dora": false, "use_rslora": false,
			"fan_in_fan_out": false, "lora_bias": false, "modules_to_save": nil}},
		{"all-linear patterns", llama, AdapterSpec{R: 4, Alpha: 16, TargetModules: AllLinear(),
			RankPattern:  []RankRule{{"q_proj", 6}, {"model.layers.0.self_attn.q_proj", 2}, {"mlp.down_proj", 3}},
			AlphaPattern: []AlphaRule{{"v_proj", 2.5}}},
			layers(func(l int) map[string]keySpec {
				rq := int64(6)
				if l == 0 {
					rq = 2 // sorted order puts the full name before "q_proj"
				}
				return merge(lin(L(l, "self_attn.q_proj"), rq, 40, 40, tensor.F32),
					lin(L(l, "self_attn.k_proj"), 4, 40, 20, tensor.F32), lin(L(l, "self_attn.v_proj"), 4, 40, 20, tensor.F32),
					lin(L(l, "self_attn.o_proj"), 4, 40, 40, tensor.F32), lin(L(l, "mlp.gate_proj"), 4, 40, 100, tensor.F32),
					lin(L(l, "mlp.up_proj"), 4, 40, 100, tensor.F32), lin(L(l, "mlp.down_proj"), 3, 100, 40, tensor.F32))
			}), map[string]any{"r": 4.0, "lora_alpha": 16.0, "alpha_pattern": map[string]any{"v_proj": 2.5},
				"rank_pattern": map[string]any{"q_proj": 6.0, "model.layers.0.self_attn.q_proj": 2.0, "mlp.down_proj": 3.0}}},
		{"keep pattern order", llama, AdapterSpec{R: 4, KeepPatternOrder: true,
			RankPattern: []RankRule{{"q_proj", 6}, {"model.layers.0.self_attn.q_proj", 2}}},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.q_proj"), 6, 40, 40, tensor.F32), lin(L(l, "self_attn.v_proj"), 4, 40, 20, tensor.F32))
			}), nil},
		{"regex all-linear string", llama, AdapterSpec{R: 2, TargetRegex: "all-linear", DType: tensor.BF16},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.q_proj"), 2, 40, 40, tensor.BF16),
					lin(L(l, "self_attn.k_proj"), 2, 40, 20, tensor.BF16), lin(L(l, "self_attn.v_proj"), 2, 40, 20, tensor.BF16),
					lin(L(l, "self_attn.o_proj"), 2, 40, 40, tensor.BF16), lin(L(l, "mlp.gate_proj"), 2, 40, 100, tensor.BF16),
					lin(L(l, "mlp.up_proj"), 2, 40, 100, tensor.BF16), lin(L(l, "mlp.down_proj"), 2, 100, 40, tensor.BF16))
			}), map[string]any{"target_modules": "all-linear"}},
		{"regex layer 1", llama, AdapterSpec{R: 2, TargetRegex: `.*\.layers\.1\..*(k|o)_proj`, DType: tensor.F16},
			merge(lin(L(1, "self_attn.k_proj"), 2, 40, 20, tensor.F16), lin(L(1, "self_attn.o_proj"), 2, 40, 40, tensor.F16)),
			map[string]any{"target_modules": `.*\.layers\.1\..*(k|o)_proj`}},
		{"dora", llama, AdapterSpec{R: 2, TargetModules: []string{"o_proj", "down_proj"}, UseDoRA: true},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.o_proj"), 2, 40, 40, tensor.F32), lin(L(l, "mlp.down_proj"), 2, 100, 40, tensor.F32),
					map[string]keySpec{pre + L(l, "self_attn.o_proj") + ".lora_magnitude_vector": {tensor.F32, []int64{40}},
						pre + L(l, "mlp.down_proj") + ".lora_magnitude_vector": {tensor.F32, []int64{40}}})
			}), map[string]any{"use_dora": true}},
		{"embedding dora resized", llama, AdapterSpec{R: 3, TargetModules: []string{"k_proj"}, EmbeddingLoRA: true,
			UseDoRA: true, ResizeVocab: 5},
			merge(layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.k_proj"), 3, 40, 20, tensor.F32),
					map[string]keySpec{pre + L(l, "self_attn.k_proj") + ".lora_magnitude_vector": {tensor.F32, []int64{20}}})
			}), map[string]keySpec{
				pre + "model.embed_tokens.lora_embedding_A":      {tensor.F32, []int64{3, 136}},
				pre + "model.embed_tokens.lora_embedding_B":      {tensor.F32, []int64{40, 3}},
				pre + "model.embed_tokens.lora_magnitude_vector": {tensor.F32, []int64{40}},
				pre + "model.embed_tokens.base_layer.weight":     {tensor.BF16, []int64{136, 40}},
			}), map[string]any{"target_modules": []any{"k_proj", "embed_tokens"}}},
		{"modules to save resized", llama, AdapterSpec{R: 2, TargetModules: []string{"q_proj"},
			ModulesToSave: []string{"lm_head", "embed_tokens"}, ResizeVocab: 3, DType: tensor.BF16},
			merge(layers(func(l int) map[string]keySpec { return lin(L(l, "self_attn.q_proj"), 2, 40, 40, tensor.BF16) }),
				map[string]keySpec{pre + "lm_head.weight": {tensor.BF16, []int64{134, 40}},
					pre + "model.embed_tokens.weight": {tensor.BF16, []int64{134, 40}}}),
			map[string]any{"modules_to_save": []any{"lm_head", "embed_tokens"}}},
		{"tied lm_head saved", qwen, AdapterSpec{R: 2, TargetModules: []string{"up_proj"}, ModulesToSave: []string{"lm_head"}},
			merge(layers(func(l int) map[string]keySpec { return lin(L(l, "mlp.up_proj"), 2, 40, 100, tensor.F32) }),
				map[string]keySpec{pre + "lm_head.weight": {tensor.F32, []int64{131, 40}}}), nil},
		{"lora bias", qwen, AdapterSpec{R: 2, TargetModules: []string{"q_proj", "k_proj"}, LoRABias: true},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.q_proj"), 2, 40, 40, tensor.F32), lin(L(l, "self_attn.k_proj"), 2, 40, 20, tensor.F32),
					map[string]keySpec{pre + L(l, "self_attn.q_proj") + ".lora_B.bias": {tensor.F32, []int64{40}},
						pre + L(l, "self_attn.k_proj") + ".lora_B.bias": {tensor.F32, []int64{20}}})
			}), map[string]any{"lora_bias": true}},
		{"bias all", qwen, AdapterSpec{R: 2, TargetModules: []string{"q_proj"}, Bias: BiasAll},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.q_proj"), 2, 40, 40, tensor.F32), map[string]keySpec{
					pre + L(l, "self_attn.q_proj") + ".base_layer.bias": {tensor.F32, []int64{40}},
					pre + L(l, "self_attn.k_proj") + ".bias":            {tensor.F32, []int64{20}},
					pre + L(l, "self_attn.v_proj") + ".bias":            {tensor.F32, []int64{20}}})
			}), map[string]any{"bias": "all"}},
		{"bias lora_only", qwen, AdapterSpec{R: 2, TargetModules: []string{"q_proj"}, Bias: BiasLoRAOnly},
			layers(func(l int) map[string]keySpec {
				return merge(lin(L(l, "self_attn.q_proj"), 2, 40, 40, tensor.F32), map[string]keySpec{
					pre + L(l, "self_attn.q_proj") + ".base_layer.bias": {tensor.F32, []int64{40}}})
			}), map[string]any{"bias": "lora_only"}},
		{"fan in fan out", fifo, AdapterSpec{R: 2, TargetModules: []string{"gate_proj"}, FanInFanOut: true, UseRSLoRA: true},
			layers(func(l int) map[string]keySpec { return lin(L(l, "mlp.gate_proj"), 2, 40, 100, tensor.F32) }),
			map[string]any{"fan_in_fan_out": true, "use_rslora": true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := genBase(t, tc.base)
			dir := filepath.Join(t.TempDir(), "adapter")
			info, err := GenerateAdapter(context.Background(), dir, base, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, cfg, _ := openAdapter(t, dir)
			if len(got) != len(tc.want) {
				t.Errorf("%d tensors, want %d", len(got), len(tc.want))
			}
			for name, w := range tc.want {
				g, ok := got[name]
				if !ok {
					t.Errorf("missing %s", name)
					continue
				}
				if g.ti.DType != w.dt || !slices.Equal(g.ti.Shape, w.shape) {
					t.Errorf("%s: %s %v, want %s %v", name, g.ti.DType, g.ti.Shape, w.dt, w.shape)
				}
				vals := floats(t, g.ti.DType, g.read(t))
				for i, v := range vals {
					if v == 0 {
						t.Fatalf("%s[%d] is 0 (LoRA B must be trained, not PEFT's zero init)", name, i)
					}
				}
			}
			for k, v := range tc.cfg {
				if gv := cfg[k]; mustJSON(t, gv) != mustJSON(t, v) {
					t.Errorf("config %s = %s, want %s", k, mustJSON(t, gv), mustJSON(t, v))
				}
			}
			if cfg["base_model_name_or_path"] != base.Dir {
				t.Errorf("base_model_name_or_path %v", cfg["base_model_name_or_path"])
			}
			if len(info.Tensors) != len(got) {
				t.Errorf("AdapterInfo lists %d tensors, file has %d", len(info.Tensors), len(got))
			}
			// A saved embedding base layer holds the base's rows exactly.
			if ft, ok := got[pre+"model.embed_tokens.base_layer.weight"]; ok {
				bf := openAll(t, base)["model.embed_tokens.weight"]
				bb := bf.read(t)
				if ab := ft.read(t); !bytes.Equal(ab[:len(bb)], bb) {
					t.Error("saved embedding base layer differs from the base's embedding")
				}
			}
		})
	}
}

func TestAdapterPatternOrderInJSON(t *testing.T) {
	base := genBase(t, Tiny(ArchLlama))
	spec := AdapterSpec{RankPattern: []RankRule{{"v_proj", 2}, {"q_proj", 4}}, AlphaPattern: []AlphaRule{{"z", 1}, {"a", 2}}}
	for _, keep := range []bool{false, true} {
		spec.KeepPatternOrder = keep
		dir := filepath.Join(t.TempDir(), "a")
		if _, err := GenerateAdapter(context.Background(), dir, base, spec); err != nil {
			t.Fatal(err)
		}
		_, _, raw := openAdapter(t, dir)
		first := strings.Index(string(raw), `"v_proj": 2`) < strings.Index(string(raw), `"q_proj": 4`)
		if first != keep {
			t.Errorf("KeepPatternOrder=%v: config\n%s", keep, raw)
		}
	}
}

func TestGenerateAdapterErrors(t *testing.T) {
	llama := Tiny(ArchLlama)
	fifo := Tiny(ArchLlama)
	fifo.Quant, fifo.DoubleQuant, fifo.FanInFanOut = QuantNone, false, true
	cases := []struct {
		name string
		base BaseSpec
		spec AdapterSpec
		msg  string
	}{
		{"lora bias without base bias", llama, AdapterSpec{LoRABias: true}, "no base bias"},
		{"fifo mismatch", llama, AdapterSpec{FanInFanOut: true}, "fan_in_fan_out"},
		{"fifo base, plain adapter", fifo, AdapterSpec{}, "fan_in_fan_out"},
		{"fifo lm_head", fifo, AdapterSpec{FanInFanOut: true, TargetModules: []string{"lm_head"}}, "lm_head"},
		{"target and save", llama, AdapterSpec{TargetModules: []string{"lm_head"}, ModulesToSave: []string{"lm_head"}}, "both"},
		{"no match", llama, AdapterSpec{TargetModules: []string{"c_attn"}}, "matched no module"},
		{"dora lora bias", llama, AdapterSpec{UseDoRA: true, LoRABias: true}, "DoRA"},
		{"bias value", llama, AdapterSpec{Bias: "some"}, "bias"},
		{"regex", llama, AdapterSpec{TargetRegex: "("}, "regex"},
		{"pattern regex", llama, AdapterSpec{RankPattern: []RankRule{{"(", 2}}}, "pattern"},
		{"resize nothing", llama, AdapterSpec{ResizeVocab: 2}, "ResizeVocab"},
		{"save 4-bit module", llama, AdapterSpec{TargetModules: []string{"q_proj"}, ModulesToSave: []string{"o_proj"}}, "4-bit"},
		{"embedding regex", llama, AdapterSpec{TargetRegex: ".*q_proj", EmbeddingLoRA: true}, "embed_tokens"},
		{"dtype", llama, AdapterSpec{DType: tensor.U8}, "dtype"},
		{"both target forms", llama, AdapterSpec{TargetRegex: "all-linear", TargetModules: []string{"q_proj"}}, "not both"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := genBase(t, tc.base)
			dir := filepath.Join(t.TempDir(), "a")
			_, err := GenerateAdapter(context.Background(), dir, base, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.msg)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a rejected spec created %s", dir)
			}
		})
	}
}

func TestWriteAdapterConfig(t *testing.T) {
	dir := t.TempDir()
	base := genBase(t, Awkward(ArchLlama))
	cfg, err := AdapterConfig(base, AdapterSpec{R: 4})
	if err != nil {
		t.Fatal(err)
	}
	cfg["r"] = 5
	cfg["peft_type"] = "LOHA"
	if err := WriteAdapterConfig(dir, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"r": 5,`) || !strings.Contains(string(data), `"peft_type": "LOHA"`) {
		t.Errorf("config %s", data)
	}
	if err := WriteAdapterConfig(dir, json.RawMessage(`{"r": "x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := WriteAdapterConfig(dir, func() {}); err == nil {
		t.Error("an unmarshalable config was accepted")
	}
}
