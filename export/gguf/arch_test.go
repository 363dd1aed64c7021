package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export/gguf/vocab"
	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

var (
	llamaSpec  = modelSpec{hfArch: "LlamaForCausalLM", hidden: 64, ff: 96, layers: 2, heads: 4, kvHeads: 2, vocab: 40}
	qwen2Spec  = modelSpec{hfArch: "Qwen2ForCausalLM", hidden: 64, ff: 96, layers: 2, heads: 4, kvHeads: 2, vocab: 40, tied: true, bias: true}
	qwen3Spec  = modelSpec{hfArch: "Qwen3ForCausalLM", hidden: 64, ff: 96, layers: 2, heads: 4, kvHeads: 2, vocab: 40, headDim: 32, qkNorm: true}
	gemma2Spec = modelSpec{hfArch: "Gemma2ForCausalLM", hidden: 64, ff: 96, layers: 2, heads: 4, kvHeads: 2, vocab: 40, headDim: 16, tied: true, gemma: true,
		extra: map[string]any{"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096}}
)

func blockNames(n int, parts ...string) []string {
	var out []string
	for i := range n {
		for _, p := range parts {
			out = append(out, "blk."+string(rune('0'+i))+"."+p)
		}
	}
	return out
}

func TestArchitectures(t *testing.T) {
	llama3 := llamaSpec
	llama3.headDim = 16
	llama3.extra = map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "rope_theta": 500000.0}
	mistral := llamaSpec
	mistral.hfArch = "MistralForCausalLM"
	mistral.extra = map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2.0}}
	qwen2yarn := qwen2Spec
	qwen2yarn.extra = map[string]any{"rope_scaling": map[string]any{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, "rope_theta": 1000000.0}
	textCfg := qwen3Spec
	textCfg.extra = map[string]any{"text_config": map[string]any{"rms_norm_eps": 1e-6}}

	base := []string{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}
	for _, tc := range []struct {
		name   string
		spec   modelSpec
		kvs    map[string]any // exact values (and so types)
		absent []string
		top    []string // non-block tensors
		block  []string // per-block tensors
	}{
		{"llama", llamaSpec, map[string]any{
			"general.architecture": "llama", "general.type": "model", "general.name": "test",
			"llama.block_count": uint32(2), "llama.context_length": uint32(2048), "llama.embedding_length": uint32(64),
			"llama.feed_forward_length": uint32(96), "llama.attention.head_count": uint32(4), "llama.attention.head_count_kv": uint32(2),
			"llama.rope.freq_base": float32(10000), "llama.attention.layer_norm_rms_epsilon": float32(1e-5),
			"general.file_type": uint32(1), "general.quantization_version": uint32(2), "llama.vocab_size": uint32(40),
			"llama.rope.dimension_count": uint32(16), "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
			"tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(2), "tokenizer.ggml.add_bos_token": true,
		}, []string{"llama.attention.key_length", "llama.rope.scaling.type"}, []string{"output.weight", "output_norm.weight", "token_embd.weight"}, base},
		{"llama3 rope + head_dim", llama3, map[string]any{
			"llama.rope.freq_base": float32(500000), "llama.attention.key_length": uint32(16), "llama.attention.value_length": uint32(16),
			"llama.rope.dimension_count": uint32(16),
		}, []string{"llama.rope.scaling.type"}, []string{"output.weight", "output_norm.weight", "rope_freqs.weight", "token_embd.weight"}, base},
		{"mistral linear", mistral, map[string]any{
			"general.architecture": "llama", "llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(2),
		}, nil, []string{"output.weight", "output_norm.weight", "token_embd.weight"}, base},
		{"qwen2 tied, yarn", qwen2yarn, map[string]any{
			"general.architecture": "qwen2", "qwen2.block_count": uint32(2), "qwen2.rope.freq_base": float32(1e6),
			"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": float32(4), "qwen2.rope.scaling.original_context_length": uint32(32768),
		}, []string{"qwen2.vocab_size", "qwen2.rope.dimension_count", "llama.block_count"}, []string{"output_norm.weight", "token_embd.weight"},
			append(slices.Clone(base), "attn_q.bias", "attn_k.bias", "attn_v.bias")},
		{"qwen3", qwen3Spec, map[string]any{
			"general.architecture": "qwen3", "qwen3.attention.key_length": uint32(32), "qwen3.attention.value_length": uint32(32),
			"qwen3.attention.layer_norm_rms_epsilon": float32(1e-5),
		}, nil, []string{"output.weight", "output_norm.weight", "token_embd.weight"}, append(slices.Clone(base), "attn_q_norm.weight", "attn_k_norm.weight")},
		{"text_config merged", textCfg, map[string]any{"qwen3.attention.layer_norm_rms_epsilon": float32(1e-6)}, nil,
			[]string{"output.weight", "output_norm.weight", "token_embd.weight"}, append(slices.Clone(base), "attn_q_norm.weight", "attn_k_norm.weight")},
		{"gemma2", gemma2Spec, map[string]any{
			"general.architecture": "gemma2", "gemma2.attention.key_length": uint32(16), "gemma2.attention.value_length": uint32(16),
			"gemma2.attn_logit_softcapping": float32(50), "gemma2.final_logit_softcapping": float32(30),
			"gemma2.attention.sliding_window": uint32(4096), "gemma2.attention.head_count_kv": uint32(2), "tokenizer.ggml.add_space_prefix": false,
		}, []string{"gemma2.rope.freq_base", "gemma2.vocab_size"}, []string{"output_norm.weight", "token_embd.weight"},
			append(slices.Clone(base), "post_attention_norm.weight", "post_ffw_norm.weight")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := plan(t, tc.spec, FileF16)
			b := writeAll(t, f)
			h, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.KVs[0].Key != "general.architecture" {
				t.Errorf("first key %s", h.KVs[0].Key)
			}
			m := kvMap(h)
			for k, want := range tc.kvs {
				kv, ok := m[k]
				if !ok {
					t.Errorf("missing %s", k)
					continue
				}
				if !reflect.DeepEqual(kv.Value, want) {
					t.Errorf("%s = %T %v, want %T %v", k, kv.Value, kv.Value, want, want)
				}
			}
			for _, k := range tc.absent {
				if _, ok := m[k]; ok {
					t.Errorf("%s is written", k)
				}
			}
			if tt, ok := m["tokenizer.ggml.token_type"]; !ok || tt.ElemType != TypeInt32 {
				t.Errorf("token_type %+v", tt)
			}
			want := slices.Clone(tc.top)
			for i := range tc.spec.layers {
				for _, p := range tc.block {
					want = append(want, "blk."+string(rune('0'+i))+"."+p)
				}
			}
			got := tensorNames(h)
			slices.Sort(want)
			gs := slices.Clone(got)
			slices.Sort(gs)
			if !slices.Equal(gs, want) {
				t.Errorf("tensors %v\nwant %v", gs, want)
			}
			// File order is llama.cpp's (block, then name).
			if !slices.IsSortedFunc(got, func(a, b string) int {
				if la, lb := blkIndex(a), blkIndex(b); la != lb {
					return la - lb
				}
				return strings.Compare(a, b)
			}) {
				t.Errorf("tensor order %v", got)
			}
			hd := uint64(tc.spec.hd())
			for _, ti := range h.Tensors {
				want := map[string][]uint64{
					"token_embd.weight": {64, 40}, "output.weight": {64, 40}, "output_norm.weight": {64},
					"rope_freqs.weight": {hd / 2}, "blk.0.attn_q.weight": {64, 4 * hd}, "blk.0.attn_k.weight": {64, 2 * hd},
					"blk.0.attn_output.weight": {4 * hd, 64}, "blk.0.ffn_down.weight": {96, 64}, "blk.0.attn_q_norm.weight": {hd},
					"blk.0.attn_k.bias": {2 * hd},
				}[ti.Name]
				if want != nil && !slices.Equal(ti.Dims, want) {
					t.Errorf("%s dims %v, want %v", ti.Name, ti.Dims, want)
				}
				oneD := len(ti.Dims) == 1
				if oneD != (ti.Type == ggml.F32) || (!oneD && ti.Type != ggml.F16) {
					t.Errorf("%s %v is %s", ti.Name, ti.Dims, ti.Type)
				}
			}
		})
	}
}

// f32Tensor returns a tensor's values from a parsed F32-or-F16 file.
func tensorValues(t *testing.T, b []byte, h *Header, name string) []float32 {
	t.Helper()
	ti, ok := h.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	raw := b[h.DataOffset+ti.Offset : h.DataOffset+ti.Offset+ti.Bytes]
	d, ok := tensorDType(ti.Type)
	if !ok {
		t.Fatalf("%s is %s", name, ti.Type)
	}
	v := make([]float32, len(raw)/d.Size())
	if err := tensor.DecodeFloats(d, raw, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func srcValues(t *testing.T, m *memSource, name string) []float32 {
	t.Helper()
	for _, ts := range m.ts {
		if ts.Name == name {
			d := m.bytes(name)
			v := make([]float32, len(d)/ts.DType.Size())
			if err := tensor.DecodeFloats(ts.DType, d, v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no source tensor %s", name)
	return nil
}

func TestQKPermutation(t *testing.T) {
	for _, tc := range []struct {
		spec    modelSpec
		permute bool
	}{{llamaSpec, true}, {qwen2Spec, false}, {qwen3Spec, false}} {
		f, src := plan(t, tc.spec, FileF32)
		b := writeAll(t, f)
		h, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		hd := tc.spec.hd()
		for _, c := range []struct {
			hf, gg string
			heads  int
		}{
			{"model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight", tc.spec.heads},
			{"model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", tc.spec.kvHeads},
			{"model.layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight", 0},
		} {
			in, out := srcValues(t, src, c.hf), tensorValues(t, b, h, c.gg)
			cols := tc.spec.hidden
			for r := range len(in) / cols {
				from := r
				if tc.permute && c.heads > 0 {
					// output row h·d + 2i + j takes input row h·d + j·d/2 + i
					hh, rem := r/hd, r%hd
					i, j := rem/2, rem%2
					from = hh*hd + j*hd/2 + i
				}
				if !slices.Equal(out[r*cols:(r+1)*cols], in[from*cols:(from+1)*cols]) {
					t.Fatalf("%s %s: row %d is not input row %d", tc.spec.hfArch, c.gg, r, from)
				}
			}
		}
		if tc.spec.bias {
			in, out := srcValues(t, src, "model.layers.0.self_attn.q_proj.bias"), tensorValues(t, b, h, "blk.0.attn_q.bias")
			if !slices.Equal(in, out) {
				t.Errorf("qwen2 bias changed")
			}
		}
	}
	// llama's Q and K biases are permuted like the rows (attention_bias: true).
	s := llamaSpec
	s.bias = true
	f, src := plan(t, s, FileF32)
	b := writeAll(t, f)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	in, out := srcValues(t, src, "model.layers.0.self_attn.k_proj.bias"), tensorValues(t, b, h, "blk.0.attn_k.bias")
	hd := s.hd()
	for r := range out {
		hh, rem := r/hd, r%hd
		if from := hh*hd + (rem%2)*hd/2 + rem/2; out[r] != in[from] {
			t.Fatalf("k bias[%d] = %v, want input[%d] = %v", r, out[r], from, in[from])
		}
	}
	if v := srcValues(t, src, "model.layers.0.self_attn.v_proj.bias"); !slices.Equal(v, tensorValues(t, b, h, "blk.0.attn_v.bias")) {
		t.Error("v bias was changed")
	}
}

func TestGemmaNormsPlusOne(t *testing.T) {
	f, src := plan(t, gemma2Spec, FileBF16)
	b := writeAll(t, f)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for hf, gg := range map[string]string{
		"model.norm.weight": "output_norm.weight", "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
		"model.layers.1.post_attention_layernorm.weight":   "blk.1.post_attention_norm.weight",
		"model.layers.1.pre_feedforward_layernorm.weight":  "blk.1.ffn_norm.weight",
		"model.layers.0.post_feedforward_layernorm.weight": "blk.0.post_ffw_norm.weight",
	} {
		in, out := srcValues(t, src, hf), tensorValues(t, b, h, gg)
		for i := range in {
			if out[i] != in[i]+1 {
				t.Fatalf("%s[%d] = %v, want %v+1", gg, i, out[i], in[i])
			}
		}
	}
	if _, ok := h.Tensor("output.weight"); ok {
		t.Error("gemma2 wrote output.weight")
	}
	// Non-norm weights are copied bit for bit (BF16 in, BF16 out).
	ti, _ := h.Tensor("blk.0.attn_q.weight")
	if got := b[h.DataOffset+ti.Offset : h.DataOffset+ti.Offset+ti.Bytes]; string(got) != string(src.bytes("model.layers.0.self_attn.q_proj.weight")) {
		t.Error("attn_q bytes differ from the BF16 source")
	}
}

func TestGemmaNormsPlusOneF16(t *testing.T) {
	// An F16 checkpoint: the converter adds 1 in float16, so the F32 norm holds the f16-rounded sum.
	s := gemma2Spec
	s.dtype = tensor.F16
	f, src := plan(t, s, FileF16)
	b := writeAll(t, f)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	in, out := srcValues(t, src, "model.norm.weight"), tensorValues(t, b, h, "output_norm.weight")
	for i := range in {
		if want := tensor.RoundTo(tensor.F16, in[i]+1); out[i] != want {
			t.Fatalf("output_norm[%d] = %v, want %v", i, out[i], want)
		}
	}
}

func TestRopeFreqs(t *testing.T) {
	s := llamaSpec
	s.extra = map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}, "rope_theta": 500000.0, "original_max_position_embeddings": 8192}
	f, _ := plan(t, s, FileQ8_0)
	b := writeAll(t, f)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	v := tensorValues(t, b, h, "rope_freqs.weight")
	if len(v) != 8 {
		t.Fatalf("%d rope factors", len(v))
	}
	// transformers 5 keeps rope_theta inside rope_parameters: same factors.
	s5 := s
	s5.extra = map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}, "original_max_position_embeddings": 8192, "rope_theta": nil}
	f5, _ := plan(t, s5, FileQ8_0)
	b5 := writeAll(t, f5)
	h5, err := Parse(b5)
	if err != nil {
		t.Fatal(err)
	}
	if v5 := tensorValues(t, b5, h5, "rope_freqs.weight"); !slices.Equal(v5, v) {
		t.Errorf("rope_parameters: factors %v, want %v", v5, v)
	}
	if kv, _ := h5.Get("llama.rope.freq_base"); kv.Value != float32(500000) {
		t.Errorf("rope_parameters: freq_base %v", kv.Value)
	}
	// float64 reference of the converter's formula
	for k := range v {
		freq := 1 / math.Pow(500000, float64(2*k)/16)
		wl := 2 * math.Pi / freq
		want := 1.0
		switch {
		case wl < 8192/4.0:
		case wl > 8192:
			want = 8
		default:
			sm := (8192/wl - 1) / 3
			want = 1 / ((1-sm)/8 + sm)
		}
		if math.Abs(float64(v[k])-want) > 1e-5*want {
			t.Errorf("rope factor %d = %v, want %v", k, v[k], want)
		}
	}
	ti, _ := h.Tensor("rope_freqs.weight")
	if ti.Type != ggml.F32 {
		t.Errorf("rope_freqs is %s", ti.Type)
	}
}

func TestBadInput(t *testing.T) {
	errVocab := errors.New("vocab: no tokenizer.json or tokenizer.model in tok")
	for _, tc := range []struct {
		name   string
		spec   modelSpec
		ft     FileType
		mutate func(m *memSource, cfg []byte) []byte
		vocab  func(string, int, vocab.LoadOptions) (*vocab.Vocab, error)
		want   []string
	}{
		{"unknown arch", modelSpec{hfArch: "PhiForCausalLM", hidden: 64, ff: 96, layers: 1, heads: 4, kvHeads: 4, vocab: 40}, FileF16, nil, nil,
			[]string{"config.json", `"PhiForCausalLM"`}},
		{"no config", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte { return nil }, nil, []string{"config.json"}},
		{"missing tokenizer", llamaSpec, FileF16, nil, func(string, int, vocab.LoadOptions) (*vocab.Vocab, error) { return nil, errVocab }, []string{"no tokenizer.json"}},
		{"vocab size mismatch", llamaSpec, FileF16, nil, func(string, int, vocab.LoadOptions) (*vocab.Vocab, error) { return testVocab(39), nil }, []string{"39 tokens", "40 rows"}},
		{"wrong shape", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte {
			for i := range m.ts {
				if m.ts[i].Name == "model.layers.1.mlp.up_proj.weight" {
					m.ts[i].Shape = []int64{95, 64}
				}
			}
			return cfg
		}, nil, []string{"model.layers.1.mlp.up_proj.weight", "[95, 64]", "[96, 64]"}},
		{"unmappable tensor", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte {
			m.ts = append(m.ts, Tensor{Name: "model.vision_tower.x.weight", DType: tensor.BF16, Shape: []int64{2}})
			return cfg
		}, nil, []string{"model.vision_tower.x.weight"}},
		{"block beyond num_hidden_layers", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte {
			m.ts = append(m.ts, Tensor{Name: "model.layers.2.input_layernorm.weight", DType: tensor.BF16, Shape: []int64{64}})
			return cfg
		}, nil, []string{"model.layers.2.input_layernorm.weight", "block 2"}},
		{"missing tensor", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte {
			m.ts = slices.DeleteFunc(m.ts, func(t Tensor) bool { return t.Name == "model.layers.0.mlp.down_proj.weight" })
			return cfg
		}, nil, []string{"blk.0.ffn_down.weight"}},
		{"int tensor", llamaSpec, FileF16, func(m *memSource, cfg []byte) []byte {
			m.ts[0].DType = tensor.I32
			return cfg
		}, nil, []string{"I32"}},
		{"q4_0 row not a multiple of 32", modelSpec{hfArch: "LlamaForCausalLM", hidden: 48, ff: 96, layers: 1, heads: 2, kvHeads: 2, vocab: 40}, FileQ4_0, nil, nil,
			[]string{"output.weight", "48 elements", "no fallback"}},
		{"unsupported rope scaling", modelSpec{hfArch: "LlamaForCausalLM", hidden: 64, ff: 96, layers: 1, heads: 4, kvHeads: 4, vocab: 40,
			extra: map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}}, FileF16, nil, nil, []string{"dynamic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.spec.source(t)
			cfg := tc.spec.config(t)
			if tc.mutate != nil {
				cfg = tc.mutate(src, cfg)
			}
			h := testHooks(tc.spec.vocab)
			if tc.vocab != nil {
				h.loadVocab = tc.vocab
			}
			_, err := planWith(src, Options{Type: tc.ft, Config: cfg, TokenizerDir: "tok"}, h)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.vocab != nil && errors.Is(errVocab, errVocab) && tc.name == "missing tokenizer" && !errors.Is(err, errVocab) {
				t.Errorf("vocab error not wrapped: %v", err)
			}
		})
	}
}

func TestFileTypes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FileType
	}{{"q4_k_m", FileQ4_KM}, {"Q4_K_M", FileQ4_KM}, {"f16", FileF16}, {"BF16", FileBF16}, {"q8_0", FileQ8_0}, {"q4_0", FileQ4_0}, {"Q5_K_M", FileQ5_KM}, {"q6_k", FileQ6_K}, {"F32", FileF32}} {
		got, err := ParseFileType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFileType(%q) = %v, %v", tc.in, got, err)
		}
		if s := got.String(); !strings.EqualFold(s, tc.in) {
			t.Errorf("%v.String() = %s", got, s)
		}
	}
	if _, err := ParseFileType("q4_k_s"); err == nil {
		t.Error("q4_k_s accepted")
	}
	if l, err := ParseFileTypes("q4_k_m,Q8_0"); err != nil || !slices.Equal(l, []FileType{FileQ4_KM, FileQ8_0}) {
		t.Errorf("ParseFileTypes = %v, %v", l, err)
	}
	if _, err := ParseFileTypes("q8_0,Q8_0"); err == nil {
		t.Error("duplicate accepted")
	}
}

var _ = binary.LittleEndian
var _ = context.Background

func TestQuantizedKeyOrder(t *testing.T) {
	// llama_model_quantize re-sets general.quantization_version and general.file_type, which moves them to the
	// end; hubsync writes its quantized files the same way (and its converter types in the converter's order).
	for _, tc := range []struct {
		ft   FileType
		last []string
	}{
		{FileQ4_KM, []string{"general.quantization_version", "general.file_type"}},
		{FileQ4_0, []string{"general.quantization_version", "general.file_type"}},
		{FileQ8_0, []string{"tokenizer.ggml.add_bos_token"}},
		{FileBF16, []string{"tokenizer.ggml.add_bos_token"}},
	} {
		f, _ := plan(t, modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 2, kvHeads: 2, vocab: 8}, tc.ft)
		h, err := ReadHeader(bytes.NewReader(f.header))
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]string, len(h.KVs))
		for i, kv := range h.KVs {
			keys[i] = kv.Key
		}
		if got := keys[len(keys)-len(tc.last):]; !slices.Equal(got, tc.last) {
			t.Errorf("%s: last keys %v, want %v", tc.ft, got, tc.last)
		}
		if kv, _ := h.Get("general.file_type"); kv.Value != uint32(tc.ft) {
			t.Errorf("%s: file_type %v", tc.ft, kv.Value)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	t := &testing.T{}
	for _, s := range []modelSpec{llamaSpec, qwen2Spec, qwen3Spec, gemma2Spec} {
		f.Add(s.config(t))
	}
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"text_config":{"hidden_size":-1}}`))
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"num_hidden_layers":2000000000,"max_position_embeddings":8,"hidden_size":8,"intermediate_size":8,"num_attention_heads":2,"head_dim":2000000000,"rms_norm_eps":1e-5,"rope_scaling":{"rope_type":"llama3"}}`))
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"num_hidden_layers":1,"max_position_embeddings":8,"hidden_size":8,"intermediate_size":8,"num_attention_heads":2,"rms_norm_eps":1e-5,"rope_scaling":{"rope_type":"yarn","factor":"x"}}`))
	f.Fuzz(func(t *testing.T, cfg []byte) {
		hp, err := parseConfig(cfg)
		if err != nil {
			if !strings.Contains(err.Error(), "config.json") {
				t.Fatalf("error does not name config.json: %v", err)
			}
			return
		}
		if hp.nLayer > maxLayers || hp.headDim > maxHeadDim || hp.nLayer <= 0 || hp.nEmbd <= 0 || hp.nHead <= 0 || hp.nHeadKV <= 0 || hp.headDim <= 0 || hp.nHead%hp.nHeadKV != 0 {
			t.Fatalf("accepted %+v", hp)
		}
		if kvs, err := hp.metadata(FileQ4_KM, ""); err == nil {
			if _, err := encodeHeader(kvs, nil); err != nil {
				t.Fatal(err)
			}
		}
		hp.ropeFreqs()
		hp.ggufName("model.layers.0.self_attn.q_proj.weight")
	})
}
