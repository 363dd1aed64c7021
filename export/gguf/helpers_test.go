package gguf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hubsync/hubsync/export/gguf/vocab"
	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// memSource is an in-memory Source; it records the largest single read.
type memSource struct {
	ts   []Tensor
	data map[string][]byte
	// lazy tensors get deterministic random values when first read
	lazy  map[string]bool
	mu    sync.Mutex
	max   int64
	fail  string // ReadTensor of this tensor fails
	reads []string
}

// bytes returns a tensor's data, generating a lazy one.
func (m *memSource) bytes(name string) []byte {
	if d, ok := m.data[name]; ok || !m.lazy[name] {
		return d
	}
	for _, t := range m.ts {
		if t.Name == name {
			n, _ := tensor.NumElements(t.Shape)
			b := make([]byte, n*int64(t.DType.Size()))
			tensor.EncodeFloats(t.DType, floats(name, n), b)
			m.data[name] = b
			return b
		}
	}
	return nil
}

func (m *memSource) Tensors() []Tensor { return m.ts }

func (m *memSource) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	if name == m.fail {
		return fmt.Errorf("injected read failure")
	}
	m.mu.Lock()
	m.max = max(m.max, n)
	m.reads = append(m.reads, name)
	d := m.bytes(name)
	m.mu.Unlock()
	if off < 0 || off+n > int64(len(d)) {
		return fmt.Errorf("read [%d,%d) of %s (%d bytes)", off, off+n, name, len(d))
	}
	_, err := w.Write(d[off : off+n])
	return err
}

func (m *memSource) addLazy(name string, dt tensor.DType, shape ...int64) {
	if m.data == nil {
		m.data, m.lazy = map[string][]byte{}, map[string]bool{}
	}
	m.ts = append(m.ts, Tensor{Name: name, DType: dt, Shape: shape})
	m.lazy[name] = true
}

func (m *memSource) add(t *testing.T, name string, dt tensor.DType, vals []float32, shape ...int64) {
	t.Helper()
	b := make([]byte, len(vals)*dt.Size())
	if _, err := tensor.EncodeFloats(dt, vals, b); err != nil {
		t.Fatal(err)
	}
	if m.data == nil {
		m.data = map[string][]byte{}
	}
	m.ts = append(m.ts, Tensor{Name: name, DType: dt, Shape: shape})
	m.data[name] = b
}

// floats returns n deterministic pseudo-random values (seeded by name).
func floats(name string, n int64) []float32 {
	h := sha256.Sum256([]byte(name))
	r := rand.New(rand.NewSource(int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.05)
	}
	return v
}

// modelSpec is a small model for a GGUF architecture.
type modelSpec struct {
	hfArch                                    string
	hidden, ff, layers, heads, kvHeads, vocab int
	headDim                                   int // 0: hidden/heads, not written to config
	tied, bias, qkNorm, gemma                 bool
	dtype                                     tensor.DType
	extra                                     map[string]any // more config.json keys
}

func (s modelSpec) hd() int {
	if s.headDim > 0 {
		return s.headDim
	}
	return s.hidden / s.heads
}

func (s modelSpec) config(t *testing.T) []byte {
	t.Helper()
	c := map[string]any{
		"architectures":           []string{s.hfArch},
		"hidden_size":             s.hidden,
		"intermediate_size":       s.ff,
		"num_hidden_layers":       s.layers,
		"num_attention_heads":     s.heads,
		"num_key_value_heads":     s.kvHeads,
		"vocab_size":              s.vocab,
		"max_position_embeddings": 2048,
		"rms_norm_eps":            1e-5,
		"rope_theta":              10000.0,
		"tie_word_embeddings":     s.tied,
		"torch_dtype":             "bfloat16",
	}
	if s.headDim > 0 {
		c["head_dim"] = s.headDim
	}
	for k, v := range s.extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// source builds the model's HF tensors.
func (s modelSpec) source(t *testing.T) *memSource {
	t.Helper()
	dt := s.dtype
	if dt == tensor.Invalid {
		dt = tensor.BF16
	}
	m := &memSource{}
	e, q, kv, ff := int64(s.hidden), int64(s.heads*s.hd()), int64(s.kvHeads*s.hd()), int64(s.ff)
	add := func(name string, shape ...int64) { m.addLazy(name, dt, shape...) }
	add("model.embed_tokens.weight", int64(s.vocab), e)
	add("model.norm.weight", e)
	if !s.tied {
		add("lm_head.weight", int64(s.vocab), e)
	}
	for i := range s.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", e)
		add(p+"post_attention_layernorm.weight", e)
		add(p+"self_attn.q_proj.weight", q, e)
		add(p+"self_attn.k_proj.weight", kv, e)
		add(p+"self_attn.v_proj.weight", kv, e)
		add(p+"self_attn.o_proj.weight", e, q)
		add(p+"mlp.gate_proj.weight", ff, e)
		add(p+"mlp.up_proj.weight", ff, e)
		add(p+"mlp.down_proj.weight", e, ff)
		if s.bias {
			add(p+"self_attn.q_proj.bias", q)
			add(p+"self_attn.k_proj.bias", kv)
			add(p+"self_attn.v_proj.bias", kv)
		}
		if s.qkNorm {
			add(p+"self_attn.q_norm.weight", int64(s.hd()))
			add(p+"self_attn.k_norm.weight", int64(s.hd()))
		}
		if s.gemma {
			add(p+"pre_feedforward_layernorm.weight", e)
			add(p+"post_feedforward_layernorm.weight", e)
		}
		add(p+"self_attn.rotary_emb.inv_freq", int64(s.hd()/2))
	}
	// Any order: Plan must not depend on it.
	r := rand.New(rand.NewSource(1))
	r.Shuffle(len(m.ts), func(i, j int) { m.ts[i], m.ts[j] = m.ts[j], m.ts[i] })
	return m
}

// testVocab is a stand-in for vocab.Load until the real one is used.
func testVocab(n int) *vocab.Vocab {
	v := &vocab.Vocab{Model: "gpt2", Pre: "llama-bpe", Special: map[string]uint32{"bos": 1, "eos": 2}}
	for i := range n {
		v.Tokens = append(v.Tokens, fmt.Sprintf("t%d", i))
		v.Types = append(v.Types, vocab.TypeNormal)
	}
	v.Merges = []string{"t 1"}
	yes := true
	v.AddBOS = &yes
	return v
}

func testHooks(n int) hooks {
	return hooks{
		loadVocab: func(string, int, vocab.LoadOptions) (*vocab.Vocab, error) { return testVocab(n), nil },
		encode:    ggml.QuantizeParallel,
	}
}

func plan(t *testing.T, s modelSpec, ft FileType) (*File, *memSource) {
	t.Helper()
	src := s.source(t)
	f, err := planWith(src, Options{Type: ft, Config: s.config(t), TokenizerDir: "tok", Name: "test"}, testHooks(s.vocab))
	if err != nil {
		t.Fatal(err)
	}
	return f, src
}

func writeAll(t *testing.T, f *File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if int64(b.Len()) != f.Size() {
		t.Fatalf("Write wrote %d bytes, Size is %d", b.Len(), f.Size())
	}
	return b.Bytes()
}

func kvMap(h *Header) map[string]KV {
	m := map[string]KV{}
	for _, kv := range h.KVs {
		m[kv.Key] = kv
	}
	return m
}

func tensorNames(h *Header) []string {
	var n []string
	for _, t := range h.Tensors {
		n = append(n, t.Name)
	}
	return n
}

func sortedKeys(m map[string]KV) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

var _ = strings.Contains
