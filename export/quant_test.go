package export

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

func TestSetQuantizationConfig(t *testing.T) {
	in := []byte("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"quantization_config\": {\"load_in_4bit\": false},\n  \"torch_dtype\": \"bfloat16\"\n}\n")
	for _, tc := range []struct {
		name string
		q    QuantConfig
		want []string
		err  string
	}{
		{"nf4 dq", QuantConfig{QuantType: "nf4", DoubleQuant: true, ComputeDType: tensor.BF16, Storage: tensor.U8},
			[]string{`"bnb_4bit_quant_type": "nf4"`, `"bnb_4bit_use_double_quant": true`, `"bnb_4bit_compute_dtype": "bfloat16"`,
				`"bnb_4bit_quant_storage": "uint8"`, `"llm_int8_skip_modules": null`, `"quant_method": "bitsandbytes"`, `"load_in_4bit": true`}, ""},
		{"fp4 skip bf16 storage", QuantConfig{QuantType: "fp4", ComputeDType: tensor.F16, Storage: tensor.BF16, SkipModules: []string{"lm_head", "mlp.down_proj"}},
			[]string{`"bnb_4bit_quant_type": "fp4"`, `"bnb_4bit_use_double_quant": false`, `"bnb_4bit_quant_storage": "bfloat16"`,
				"\"llm_int8_skip_modules\": [\n      \"lm_head\",\n      \"mlp.down_proj\"\n    ]"}, ""},
		{"bad type", QuantConfig{QuantType: "int4", ComputeDType: tensor.BF16, Storage: tensor.U8}, nil, "not nf4 or fp4"},
		{"no dtype", QuantConfig{QuantType: "nf4", Storage: tensor.U8}, nil, "no torch name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := SetQuantizationConfig(in, tc.q)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %s:\n%s", w, out)
				}
			}
			var v map[string]any
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatal(err)
			}
			if strings.Count(string(out), "quantization_config") != 1 {
				t.Errorf("quantization_config not replaced:\n%s", out)
			}
		})
	}
}

func TestModelCardQuant(t *testing.T) {
	card := string(ModelCard(CardInfo{BaseModel: "me/base", DType: tensor.BF16, Quant: &QuantReport{
		Config:    QuantConfig{QuantType: "nf4", DoubleQuant: true, ComputeDType: tensor.BF16, Storage: tensor.U8},
		Blocksize: 64, Quantized: 154, Kept: 45, RMSE: 0.0034, Max: 0.021,
		Worst: TensorError{Name: "model.layers.3.mlp.down_proj.weight", RMSE: 0.005, Max: 0.021}}}))
	for _, w := range []string{"merged 4-bit (bitsandbytes nf4)", "## 4-bit quantization", "RMSE 0.0034, max |error| 0.021",
		"`model.layers.3.mlp.down_proj.weight`", "- 4-bit", "- bitsandbytes"} {
		if !strings.Contains(card, w) {
			t.Errorf("card lacks %q:\n%s", w, card)
		}
	}
	if strings.Contains(string(ModelCard(CardInfo{BaseModel: "me/base"})), "4-bit") {
		t.Error("a 16-bit card mentions 4-bit")
	}
}

// FuzzSetQuantizationConfig: any config.json either fails cleanly or yields valid JSON with exactly one
// quantization_config object.
func FuzzSetQuantizationConfig(f *testing.F) {
	f.Add([]byte(`{"a": 1, "quantization_config": {"x": [1, 2]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := SetQuantizationConfig(in, QuantConfig{QuantType: "nf4", ComputeDType: tensor.BF16, Storage: tensor.U8})
		if err != nil {
			return
		}
		var v map[string]json.RawMessage
		if err := json.Unmarshal(out, &v); err != nil {
			if json.Valid(in) {
				t.Fatalf("valid input %q gave invalid output %q: %v", in, out, err)
			}
			return
		}
		var qc map[string]any
		if err := json.Unmarshal(v["quantization_config"], &qc); err != nil || qc["quant_method"] != "bitsandbytes" {
			t.Fatalf("quantization_config %s", v["quantization_config"])
		}
	})
}
