package merge

import (
	"math"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

func TestParseAdapterConfig(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		wantErr string
		check   func(t *testing.T, c *AdapterConfig)
	}{
		{name: "defaults", raw: `{"peft_type": "LORA"}`, check: func(t *testing.T, c *AdapterConfig) {
			if c.R != 8 || c.LoraAlpha != 8 || c.Bias != "none" || c.UseRSLoRA || c.UseDoRA {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "peft_type defaults to LORA", raw: `{"r": 4}`},
		{name: "full", raw: `{"peft_type": "LORA", "r": 16, "lora_alpha": 32.5, "use_rslora": true, "use_dora": true,
			"fan_in_fan_out": false, "bias": "lora_only", "lora_bias": false, "modules_to_save": ["lm_head"],
			"target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "unsloth/x", "task_type": "CAUSAL_LM",
			"layers_to_transform": null, "target_parameters": null, "layer_replication": null, "use_qalora": false,
			"alora_invocation_tokens": null, "trainable_token_indices": null, "init_lora_weights": "mica",
			"runtime_config": {"ephemeral_gpu_offload": false}, "megatron_config": null}`,
			check: func(t *testing.T, c *AdapterConfig) {
				if c.R != 16 || c.LoraAlpha != 32.5 || !c.UseRSLoRA || !c.UseDoRA || c.Bias != "lora_only" ||
					c.BaseModelNameOrPath != "unsloth/x" || len(c.ModulesToSave) != 1 || len(c.TargetModules) != 2 {
					t.Errorf("parsed: %+v", c)
				}
				s, r := c.Scaling("model.layers.0.self_attn.q_proj")
				if r != 16 || s != 32.5/4 {
					t.Errorf("rslora scaling %v rank %d", s, r)
				}
			}},
		{name: "target_modules regex", raw: `{"target_modules": ".*proj"}`, check: func(t *testing.T, c *AdapterConfig) {
			if len(c.TargetModules) != 1 || c.TargetModules[0] != ".*proj" {
				t.Errorf("target_modules %v", c.TargetModules)
			}
		}},
		{name: "pattern order is the JSON's", raw: `{"r": 8, "lora_alpha": 16,
			"rank_pattern": {"q_proj": 4, "^model.layers.0.self_attn.q_proj": 2, "layers.1.mlp.*": 3},
			"alpha_pattern": {"model.layers.1.self_attn.v_proj": 20, "v_proj": 1}}`,
			check: func(t *testing.T, c *AdapterConfig) {
				for _, tc := range []struct {
					module      string
					rank        int
					alpha, scal float64
				}{
					{"model.layers.0.self_attn.q_proj", 4, 16, 4}, // "q_proj" comes first and matches
					{"model.layers.1.self_attn.q_proj", 4, 16, 4},
					{"model.layers.1.mlp.down_proj", 3, 16, 16.0 / 3},
					{"model.layers.0.mlp.down_proj", 8, 16, 2},
					{"model.layers.1.self_attn.v_proj", 8, 20, 2.5},
					{"model.layers.0.self_attn.v_proj", 8, 1, 0.125},
					{"model.layers.0.self_attn.xq_proj", 8, 16, 2}, // (.*\.)? needs a dot before the key
				} {
					s, r := c.Scaling(tc.module)
					if r != tc.rank || c.AlphaFor(tc.module) != tc.alpha || s != tc.scal {
						t.Errorf("%s: rank %d alpha %v scaling %v, want %d %v %v", tc.module, r, c.AlphaFor(tc.module), s, tc.rank, tc.alpha, tc.scal)
					}
				}
			}},
		{name: "anchored full-name pattern", raw: `{"rank_pattern": {"^model.layers.0.self_attn.q_proj": 2, "q_proj": 4}}`,
			check: func(t *testing.T, c *AdapterConfig) {
				if c.RankFor("model.layers.0.self_attn.q_proj") != 2 || c.RankFor("model.layers.10.self_attn.q_proj") != 4 {
					t.Errorf("ranks %d %d", c.RankFor("model.layers.0.self_attn.q_proj"), c.RankFor("model.layers.10.self_attn.q_proj"))
				}
			}},
		{name: "key equal to the module name matches", raw: `{"rank_pattern": {"model.layers.0.self_attn.q_proj": 2}}`,
			check: func(t *testing.T, c *AdapterConfig) {
				if c.RankFor("model.layers.0.self_attn.q_proj") != 2 {
					t.Error("full-name key did not match")
				}
			}},
		{name: "not JSON", raw: `{`, wantErr: "not valid JSON"},
		{name: "array", raw: `[]`, wantErr: "not a JSON object"},
		{name: "trailing", raw: `{} {}`, wantErr: "trailing"},
		{name: "duplicate key", raw: `{"r": 4, "r": 8}`, wantErr: "r appears twice"},
		{name: "peft type", raw: `{"peft_type": "IA3"}`, wantErr: "peft_type"},
		{name: "zero rank", raw: `{"r": 0}`, wantErr: "r is 0"},
		{name: "fractional rank", raw: `{"r": 2.5}`, wantErr: "r is 2.5"},
		{name: "string alpha", raw: `{"lora_alpha": "16"}`, wantErr: "lora_alpha"},
		{name: "bad bias", raw: `{"bias": "some"}`, wantErr: "bias"},
		{name: "bad rslora", raw: `{"use_rslora": 1}`, wantErr: "use_rslora"},
		{name: "bad rank pattern value", raw: `{"rank_pattern": {"q": -1}}`, wantErr: "rank_pattern"},
		{name: "bad regex", raw: `{"rank_pattern": {"(?<=x)q": 2}}`, wantErr: "rank_pattern"},
		{name: "layer replication", raw: `{"layer_replication": [[0, 4], [2, 5]]}`, wantErr: "layer_replication"},
		{name: "alora", raw: `{"alora_invocation_tokens": [1, 2]}`, wantErr: "alora_invocation_tokens"},
		{name: "arrow", raw: `{"arrow_config": {"top_k": 3}}`, wantErr: "arrow_config"},
		{name: "empty variant values are fine", raw: `{"target_parameters": [], "arrow_config": {}, "use_qalora": false}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseAdapterConfig([]byte(c.raw))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, cfg)
			}
		})
	}
}

func TestParseQuantState(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		wantErr string
		want    QuantState
	}{
		{name: "nf4 double quant", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.021360794082283974}`,
			want: QuantState{QuantType: "nf4", Blocksize: 64, DType: tensor.BF16, Shape: []int64{4096, 4096}, Nested: true, NestedBlocksize: 256, NestedOffset: float32(0.021360794082283974)}},
		{name: "fp4 plain", raw: `{"quant_type": "fp4", "blocksize": 4096, "dtype": "float16", "shape": [3, 5]}`,
			want: QuantState{QuantType: "fp4", Blocksize: 4096, DType: tensor.F16, Shape: []int64{3, 5}}},
		{name: "torch prefix", raw: `{"quant_type": "nf4", "blocksize": 32, "dtype": "torch.float32", "shape": [1]}`,
			want: QuantState{QuantType: "nf4", Blocksize: 32, DType: tensor.F32, Shape: []int64{1}}},
		{name: "unknown keys ignored", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2, 2], "future": 1}`,
			want: QuantState{QuantType: "nf4", Blocksize: 64, DType: tensor.BF16, Shape: []int64{2, 2}}},
		{name: "int4", raw: `{"quant_type": "int4", "blocksize": 64, "dtype": "bfloat16", "shape": [2]}`, wantErr: "quant_type"},
		{name: "blocksize 16", raw: `{"quant_type": "nf4", "blocksize": 16, "dtype": "bfloat16", "shape": [2]}`, wantErr: "blocksize"},
		{name: "blocksize 8192", raw: `{"quant_type": "nf4", "blocksize": 8192, "dtype": "bfloat16", "shape": [2]}`, wantErr: "blocksize"},
		{name: "blocksize 96", raw: `{"quant_type": "nf4", "blocksize": 96, "dtype": "bfloat16", "shape": [2]}`, wantErr: "blocksize"},
		{name: "int dtype", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "int8", "shape": [2]}`, wantErr: "dtype"},
		{name: "no shape", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16"}`, wantErr: "shape"},
		{name: "null shape", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": null}`, wantErr: "shape"},
		{name: "negative dim", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [-2]}`, wantErr: "shape"},
		{name: "huge", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4294967296, 4294967296]}`, wantErr: "too large"},
		{name: "partial nested", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2], "nested_blocksize": 256}`, wantErr: "together"},
		{name: "nested dtype", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float16", "nested_offset": 0.1}`, wantErr: "nested_dtype"},
		{name: "nested offset", raw: `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1e300}`, wantErr: "nested_offset"},
		{name: "not an object", raw: `[1]`, wantErr: "not a JSON object"},
		{name: "null", raw: `null`, wantErr: "null"},
		{name: "trailing", raw: `{"quant_type": "nf4"} x`, wantErr: "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := ParseQuantState([]byte(c.raw))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.QuantType != c.want.QuantType || q.Blocksize != c.want.Blocksize || q.DType != c.want.DType ||
				!tensor.EqualShapes(q.Shape, c.want.Shape) || q.Nested != c.want.Nested ||
				q.NestedBlocksize != c.want.NestedBlocksize || q.NestedOffset != c.want.NestedOffset {
				t.Errorf("got %+v, want %+v", q, c.want)
			}
		})
	}
}

func FuzzParseAdapterConfig(f *testing.F) {
	for _, s := range []string{
		`{"peft_type": "LORA", "r": 16, "lora_alpha": 32, "use_rslora": true, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"^model.layers.0": 2}}`,
		`{"r": 8, "target_modules": "all-linear", "modules_to_save": ["lm_head"], "bias": "all"}`,
		`{"use_qalora": true}`, `{}`, `[]`, `{"rank_pattern": {"(": 2}}`, `{"lora_alpha": 1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseAdapterConfig(raw)
		if err != nil {
			return
		}
		if c.R < 1 || math.IsNaN(c.LoraAlpha) || math.IsInf(c.LoraAlpha, 0) {
			t.Fatalf("accepted r=%d alpha=%v", c.R, c.LoraAlpha)
		}
		for _, m := range []string{"model.layers.0.self_attn.q_proj", "lm_head", ""} {
			s, r := c.Scaling(m)
			if r < 1 || math.IsNaN(s) {
				t.Fatalf("module %q: scaling %v rank %d", m, s, r)
			}
		}
	})
}

func FuzzParseQuantState(f *testing.F) {
	for _, s := range []string{
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.0213}`,
		`{"quant_type": "fp4", "blocksize": 4096, "dtype": "float16", "shape": [3, 5]}`,
		`{"quant_type": "nf4", "blocksize": 32, "dtype": "float32", "shape": [0]}`,
		`{}`, `null`, `{"shape": [1e3]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := ParseQuantState(raw)
		if err != nil {
			return
		}
		if q.Blocksize < 32 || q.Blocksize > 4096 || q.Blocksize&(q.Blocksize-1) != 0 || CodeTable(q.QuantType) == nil || !isFloat(q.DType) {
			t.Fatalf("accepted %+v", q)
		}
		n := q.NumElements()
		if n < 0 || n > maxQuantElements || q.NumBlocks()*int64(q.Blocksize) < n {
			t.Fatalf("inconsistent sizes for %+v", q)
		}
		if q.Nested && (q.NestedBlocksize <= 0 || q.NumNestedBlocks()*int64(q.NestedBlocksize) < q.NumBlocks()) {
			t.Fatalf("inconsistent nested sizes for %+v", q)
		}
	})
}

func TestNaturalOrder(t *testing.T) {
	names := []string{
		"lm_head.weight", "model.norm.weight", "model.layers.10.self_attn.q_proj.weight",
		"model.layers.2.post_attention_layernorm.weight", "model.layers.2.input_layernorm.weight",
		"model.layers.2.mlp.down_proj.weight", "model.layers.2.mlp.up_proj.weight", "model.layers.2.mlp.gate_proj.weight",
		"model.layers.2.self_attn.v_proj.bias", "model.layers.2.self_attn.v_proj.weight",
		"model.layers.2.self_attn.o_proj.weight", "model.layers.2.self_attn.q_proj.weight", "model.embed_tokens.weight",
		"model.zzz.weight",
	}
	sortNatural(names)
	want := []string{
		"model.embed_tokens.weight",
		"model.layers.2.self_attn.q_proj.weight", "model.layers.2.self_attn.v_proj.weight", "model.layers.2.self_attn.v_proj.bias",
		"model.layers.2.self_attn.o_proj.weight",
		"model.layers.2.mlp.gate_proj.weight", "model.layers.2.mlp.up_proj.weight", "model.layers.2.mlp.down_proj.weight",
		"model.layers.2.input_layernorm.weight", "model.layers.2.post_attention_layernorm.weight",
		"model.layers.10.self_attn.q_proj.weight",
		"model.norm.weight", "model.zzz.weight", "lm_head.weight",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("order:\n%s", strings.Join(names, "\n"))
	}
}
