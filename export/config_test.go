package export

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// A bnb-4bit Llama config as transformers writes it (trimmed), with a nested sub-config.
const bnbConfig = `{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008],
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "model_type": "llama",
  "quantization_config": {
    "_load_in_4bit": true,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_type": "nf4",
    "llm_int8_skip_modules": null,
    "quant_method": "bitsandbytes"
  },
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "text_config": {"vocab_size": 128256, "torch_dtype": "float16",
                  "quantization_config": {"quant_method": "bitsandbytes"}, "eps": 1E-6},
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.44.0",
  "unicode": "caf\u00e9 \"quoted\" \ud83d\ude00",
  "empty_obj": {},
  "empty_arr": [],
  "vocab_size": 128256
}`

func TestRewriteConfig(t *testing.T) {
	out, err := RewriteConfig([]byte(bnbConfig), tensor.BF16, 128260)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "bos_token_id": 128000,
  "eos_token_id": [
    128001,
    128008
  ],
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "model_type": "llama",
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "text_config": {
    "vocab_size": 128260,
    "torch_dtype": "bfloat16",
    "eps": 1E-6
  },
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.44.0",
  "unicode": "caf\u00e9 \"quoted\" \ud83d\ude00",
  "empty_obj": {},
  "empty_arr": [],
  "vocab_size": 128260
}
`
	if string(out) != want {
		t.Errorf("RewriteConfig =\n%s\nwant\n%s", out, want)
	}
	// Same meaning as the input, minus the rewritten keys.
	var in, got map[string]any
	if err := json.Unmarshal([]byte(bnbConfig), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	if got["unicode"] != in["unicode"] {
		t.Errorf("string changed: %q vs %q", got["unicode"], in["unicode"])
	}
}

func TestRewriteConfigCases(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		dtype tensor.DType
		vocab int64
		want  string
	}{
		{"adds torch_dtype when missing", `{"a":1}`, tensor.F16, 0, "{\n  \"a\": 1,\n  \"torch_dtype\": \"float16\"\n}\n"},
		{"v5 dtype key kept and set", `{"dtype":"float32","torch_dtype":"float32"}`, tensor.BF16, 0,
			"{\n  \"dtype\": \"bfloat16\",\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
		{"vocab added when absent", `{"torch_dtype":"bfloat16"}`, tensor.BF16, 7, "{\n  \"torch_dtype\": \"bfloat16\",\n  \"vocab_size\": 7\n}\n"},
		{"vocab only in text_config", `{"text_config":{"vocab_size":5},"torch_dtype":"x"}`, tensor.F32, 9,
			"{\n  \"text_config\": {\n    \"vocab_size\": 9\n  },\n  \"torch_dtype\": \"float32\"\n}\n"},
		{"vocab 0 leaves it", `{"vocab_size":5,"torch_dtype":"x"}`, tensor.F32, 0,
			"{\n  \"vocab_size\": 5,\n  \"torch_dtype\": \"float32\"\n}\n"},
		{"quantization_config removed at any depth", `{"torch_dtype":"x","a":[{"quantization_config":1,"b":2}],"vision_config":{"quantization_config":{}}}`, tensor.BF16, 0,
			"{\n  \"torch_dtype\": \"bfloat16\",\n  \"a\": [\n    {\n      \"b\": 2\n    }\n  ],\n  \"vision_config\": {}\n}\n"},
		{"numbers byte-identical", `{"torch_dtype":"x","n":[1e-05,-0.0,1E+400,123456789012345678901234567890,0.1000]}`, tensor.BF16, 0,
			"{\n  \"torch_dtype\": \"bfloat16\",\n  \"n\": [\n    1e-05,\n    -0.0,\n    1E+400,\n    123456789012345678901234567890,\n    0.1000\n  ]\n}\n"},
		{"python non-finite literals kept", `{"torch_dtype":"x","a":NaN,"b":-Infinity,"c":Infinity}`, tensor.BF16, 0,
			"{\n  \"torch_dtype\": \"bfloat16\",\n  \"a\": NaN,\n  \"b\": -Infinity,\n  \"c\": Infinity\n}\n"},
		{"duplicate key: last value at first position", `{"a":1,"torch_dtype":"x","a":2}`, tensor.BF16, 0,
			"{\n  \"a\": 2,\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
		{"sub-config torch_dtype only where present", `{"torch_dtype":"x","text_config":{"a":1},"vision_config":{"torch_dtype":"float32"},"other":{"torch_dtype":"keep"}}`, tensor.F16, 0,
			"{\n  \"torch_dtype\": \"float16\",\n  \"text_config\": {\n    \"a\": 1\n  },\n  \"vision_config\": {\n    \"torch_dtype\": \"float16\"\n  },\n  \"other\": {\n    \"torch_dtype\": \"keep\"\n  }\n}\n"},
		{"whitespace and escapes", " \r\n\t{ \"k\\u0041\" : \"\\/\\n\" } \n", tensor.BF16, 0,
			"{\n  \"k\\u0041\": \"\\/\\n\",\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RewriteConfig([]byte(tt.in), tt.dtype, tt.vocab)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRewriteConfigErrors(t *testing.T) {
	tests := []struct {
		name, in string
		dtype    tensor.DType
		want     string
	}{
		{"not an object", `[1]`, tensor.BF16, "not a JSON object"},
		{"truncated", `{"a":`, tensor.BF16, "unexpected end"},
		{"trailing data", `{} {}`, tensor.BF16, "after the top-level value"},
		{"trailing comma", `{"a":1,}`, tensor.BF16, "expected a string key"},
		{"single quotes", `{'a':1}`, tensor.BF16, "expected a string key"},
		{"leading zero", `{"a":01}`, tensor.BF16, "expected ','"},
		{"bad number", `{"a":1.}`, tensor.BF16, "no digits after"},
		{"bad exponent", `{"a":1e}`, tensor.BF16, "no exponent digits"},
		{"bare minus", `{"a":-}`, tensor.BF16, "invalid number"},
		{"control char in string", "{\"a\":\"x\ty\"}", tensor.BF16, "control character"},
		{"bad escape", `{"a":"\x"}`, tensor.BF16, "invalid string"},
		{"unterminated string", `{"a":"x`, tensor.BF16, "unterminated string"},
		{"invalid utf-8", "{\"a\":\"\xff\"}", tensor.BF16, "UTF-8"},
		{"byte order mark", "\ufeff{}", tensor.BF16, "unexpected character"},
		{"too deep", strings.Repeat("[", 2000) + strings.Repeat("]", 2000), tensor.BF16, "nested deeper"},
		{"dtype without torch name", `{}`, tensor.F8E4M3, "no torch name"},
		{"empty", ``, tensor.BF16, "unexpected end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RewriteConfig([]byte(tt.in), tt.dtype, 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Fatalf("err = %v, want config.json: ... %q", err, tt.want)
			}
		})
	}
}

func FuzzRewriteConfig(f *testing.F) {
	f.Add([]byte(bnbConfig), int64(0))
	f.Add([]byte(`{"a":[1,2,{"quantization_config":{}}],"torch_dtype":"float16"}`), int64(5))
	f.Add([]byte(`{"text_config":{"vocab_size":1,"torch_dtype":"x"},"dtype":"y"}`), int64(3))
	f.Add([]byte(`{"x":NaN,"y":"\u00e9\ud800"}`), int64(-1))
	f.Add([]byte(`[]`), int64(0))
	f.Fuzz(func(t *testing.T, in []byte, vocab int64) {
		out, err := RewriteConfig(in, tensor.BF16, vocab)
		if err != nil {
			return
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid input %q gave invalid output %q", in, out)
		}
		var m map[string]any
		if json.Valid(out) {
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if m["torch_dtype"] != "bfloat16" {
				t.Fatalf("torch_dtype = %v in %q", m["torch_dtype"], out)
			}
			if _, ok := m["quantization_config"]; ok {
				t.Fatalf("quantization_config kept in %q", out)
			}
		}
		// Rewriting is idempotent.
		again, err := RewriteConfig(out, tensor.BF16, vocab)
		if err != nil || string(again) != string(out) {
			t.Fatalf("second rewrite differs: %v\n%q\n%q", err, out, again)
		}
	})
}

// TestRewriteConfigMatchesPython: for a config written by transformers (json.dumps(indent=2, sort_keys=True)),
// the rewrite is byte-identical to Python's json.dumps(indent=2, sort_keys=True) of the edited dict
// (testdata generated with Python 3: del cfg["quantization_config"]; cfg["torch_dtype"] = "bfloat16").
func TestRewriteConfigMatchesPython(t *testing.T) {
	in, err := os.ReadFile("testdata/config_bnb4bit.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/config_bnb4bit.rewritten.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := RewriteConfig(in, tensor.BF16, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestUntieConfig(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"true becomes false", `{"a":1,"tie_word_embeddings":true}`, "{\n  \"a\": 1,\n  \"tie_word_embeddings\": false\n}\n"},
		{"added when the default ties", `{"a":1}`, "{\n  \"a\": 1,\n  \"tie_word_embeddings\": false\n}\n"},
		{"sub-config only where present", `{"text_config":{"tie_word_embeddings":true,"n":1e-05},"vision_config":{"x":1}}`,
			"{\n  \"text_config\": {\n    \"tie_word_embeddings\": false,\n    \"n\": 1e-05\n  },\n  \"vision_config\": {\n    \"x\": 1\n  },\n  \"tie_word_embeddings\": false\n}\n"},
		{"a string value is not a key", `{"note":"\"tie_word_embeddings\": true","tie_word_embeddings":true}`,
			"{\n  \"note\": \"\\\"tie_word_embeddings\\\": true\",\n  \"tie_word_embeddings\": false\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UntieConfig([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	if _, err := UntieConfig([]byte(`[1]`)); err == nil {
		t.Error("an array config was accepted")
	}
}
