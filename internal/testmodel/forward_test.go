package testmodel

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The forward pass itself is checked against llama.cpp in interop/llamacpp (TestConsumers/Harness); these tests
// pin its building blocks and the new architectures' files.

func TestRopeRotateHalf(t *testing.T) {
	inv := []float64{1, 0.1, 0.01}
	cases := []struct {
		name string
		pos  int
		x    []float64
		want []float64
	}{
		{"position 0 is the identity", 0, []float64{1, 2, 3, 4, 5, 6}, []float64{1, 2, 3, 4, 5, 6}},
		// Element i pairs with i+3: (1, 0) turned by 1 rad, (0, 1) by 0.1 rad, nothing in the third pair.
		{"pairs i and i+d/2", 1, []float64{1, 0, 0, 0, 1, 0},
			[]float64{math.Cos(1), -math.Sin(0.1), 0, math.Sin(1), math.Cos(0.1), 0}},
		{"angle grows with position", 2, []float64{1, 0, 0, 0, 0, 0},
			[]float64{math.Cos(2), 0, 0, math.Sin(2), 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := slices.Clone(c.x)
			rope(x, inv, c.pos)
			for i := range x {
				if math.Abs(x[i]-c.want[i]) > 1e-15 {
					t.Fatalf("got %v, want %v", x, c.want)
				}
			}
		})
	}
}

func TestRopeInvFreqLlama3(t *testing.T) {
	cfg, err := ParseForwardConfig([]byte(`{"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 1,
		"num_attention_heads": 4, "vocab_size": 8, "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0,
		"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
		"rope_type": "llama3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	inv := ropeInvFreq(cfg)
	cfg.RopeScaling = nil
	plain := ropeInvFreq(cfg)
	for i, f := range plain {
		wavelen := 2 * math.Pi / f
		var want float64
		switch {
		case wavelen < 8192.0/4: // high frequencies are kept
			want = f
		case wavelen > 8192: // low frequencies are divided by the factor
			want = f / 8
		default: // in between, interpolated
			smooth := (8192/wavelen - 1) / 3
			want = (1-smooth)*f/8 + smooth*f
			if inv[i] <= f/8 || inv[i] >= f {
				t.Errorf("frequency %d: %g is not between %g and %g", i, inv[i], f/8, f)
			}
		}
		if math.Abs(inv[i]-want) > 1e-18 {
			t.Errorf("frequency %d: %g, want %g", i, inv[i], want)
		}
	}
	if inv[0] != plain[0] || inv[len(inv)-1] != plain[len(plain)-1]/8 {
		t.Errorf("the first frequency must be kept and the last divided by 8: %v", inv)
	}
}

func TestParseForwardConfigErrors(t *testing.T) {
	cases := []struct{ name, cfg, want string }{
		{"unknown model type", `{"model_type": "gpt2", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 4}`, "gpt2"},
		{"missing sizes", `{"model_type": "llama"}`, "hidden_size"},
		{"bad heads", `{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2, "head_dim": 4, "vocab_size": 4}`, "KV heads"},
		{"not json", `{`, "config.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseForwardConfig([]byte(c.cfg))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// TestForwardArchitectures generates a tiny 16-bit model of every architecture and checks the forward pass
// runs on its files, is deterministic, gives finite logits over the vocabulary, and refuses bad input.
func TestForwardArchitectures(t *testing.T) {
	dir := t.TempDir()
	for _, a := range []Arch{ArchLlama, ArchQwen2, ArchMistral, ArchQwen3, ArchGemma2} {
		t.Run(string(a), func(t *testing.T) {
			s := Tiny(a)
			s.Quant, s.DoubleQuant = QuantNone, false
			if a == ArchGemma2 || a == ArchQwen3 {
				s.Tied, s.Bias = true, false
			}
			md := filepath.Join(dir, string(a))
			if _, err := GenerateBase(context.Background(), md, s); err != nil {
				t.Fatal(err)
			}
			toks := []int{1, 5, 9, 130}
			l1, err := ForwardDir(md, toks)
			if err != nil {
				t.Fatal(err)
			}
			l2, _ := ForwardDir(md, toks)
			if len(l1) != s.Vocab || !slices.Equal(l1, l2) {
				t.Fatalf("%d logits (want %d), deterministic %v", len(l1), s.Vocab, slices.Equal(l1, l2))
			}
			for _, v := range l1 {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("non-finite logit %v", v)
				}
			}
			if _, err := ForwardDir(md, []int{s.Vocab}); err == nil {
				t.Error("a token outside the vocabulary was accepted")
			}
			if _, err := ForwardDir(md, nil); err == nil {
				t.Error("an empty sequence was accepted")
			}
			w, _ := LoadWeights(md)
			delete(w, "model.layers.0.mlp.up_proj.weight")
			cfg, _ := os.ReadFile(filepath.Join(md, "config.json"))
			if _, err := Forward(cfg, w, toks); err == nil || !strings.Contains(err.Error(), "up_proj") {
				t.Errorf("missing tensor: %v", err)
			}
		})
	}
}

func TestNewArchitectureFiles(t *testing.T) {
	cases := []struct {
		name    string
		spec    BaseSpec
		arch    string
		has     []string
		hasNot  []string
		cfgKeys map[string]any
	}{
		{"qwen3", GGUFSmall(ArchQwen3), "Qwen3ForCausalLM",
			[]string{"model.layers.1.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"},
			[]string{"lm_head.weight", "model.layers.0.self_attn.q_proj.bias"},
			map[string]any{"head_dim": 64.0, "model_type": "qwen3"}},
		{"gemma2", GGUFSmall(ArchGemma2), "Gemma2ForCausalLM",
			[]string{"model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"},
			[]string{"lm_head.weight"},
			map[string]any{"final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
				"query_pre_attn_scalar": 64.0, "hidden_activation": "gelu_pytorch_tanh"}},
		{"llama3 rope", func() BaseSpec { s := GGUFSmall(ArchLlama); s.Llama3Rope = true; return s }(),
			"LlamaForCausalLM", []string{"lm_head.weight"}, nil,
			map[string]any{"rope_scaling": map[string]any{"factor": 8.0, "low_freq_factor": 1.0,
				"high_freq_factor": 4.0, "original_max_position_embeddings": 8192.0, "rope_type": "llama3"}}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			md := filepath.Join(dir, string(rune('a'+i)))
			info, err := GenerateBase(context.Background(), md, c.spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range c.has {
				if _, ok := info.Tensor(n); !ok {
					t.Errorf("no tensor %s", n)
				}
			}
			for _, n := range c.hasNot {
				if _, ok := info.Tensor(n); ok {
					t.Errorf("unexpected tensor %s", n)
				}
			}
			data, err := os.ReadFile(filepath.Join(md, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := json.Unmarshal(data, &cfg); err != nil {
				t.Fatal(err)
			}
			if got := cfg["architectures"].([]any)[0]; got != c.arch {
				t.Errorf("architectures[0] %v, want %s", got, c.arch)
			}
			for k, v := range c.cfgKeys {
				g, _ := json.Marshal(cfg[k])
				w, _ := json.Marshal(v)
				if string(g) != string(w) {
					t.Errorf("config %s = %s, want %s", k, g, w)
				}
			}
			back, err := LoadBaseInfo(md)
			if err != nil {
				t.Fatal(err)
			}
			if back.Spec.Llama3Rope != c.spec.Llama3Rope || back.Spec.Arch != c.spec.Arch {
				t.Errorf("sidecar round trip: %+v", back.Spec)
			}
		})
	}
}

func TestNewArchitectureSpecErrors(t *testing.T) {
	cases := []struct {
		name string
		spec BaseSpec
		want string
	}{
		{"gemma2 untied", func() BaseSpec { s := GGUFSmall(ArchGemma2); s.Tied = false; return s }(), "ties"},
		{"qwen3 bias", func() BaseSpec { s := GGUFSmall(ArchQwen3); s.Bias = true; return s }(), "bias"},
		{"llama3 rope on qwen2", func() BaseSpec { s := GGUFSmall(ArchQwen2); s.Llama3Rope = true; return s }(), "llama only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := PlanBase(c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
		})
	}
}

// FuzzParseForwardConfig: any config.json either fails to parse or yields a configuration the forward pass can
// index (positive sizes, heads a multiple of KV heads, an even head_dim).
func FuzzParseForwardConfig(f *testing.F) {
	f.Add([]byte(`{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 4}`))
	f.Add([]byte(`{"model_type": "gemma2", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 6, "vocab_size": 4, "rope_scaling": {"rope_type": "llama3", "factor": 8}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseForwardConfig(data)
		if err != nil {
			return
		}
		if c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.Vocab <= 0 ||
			c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 {
			t.Fatalf("accepted %+v", c)
		}
	})
}
