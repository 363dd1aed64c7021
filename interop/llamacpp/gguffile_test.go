package llamacpp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// This file holds the suite's own minimal GGUF reader and an F32-only GGUF writer. The writer is independent of
// export/gguf on purpose: it checks the harness itself (the float64 reference forward pass against llama.cpp),
// so that a disagreement in the export tests points at the exporter, not at the oracle.

// ggufKV is one metadata key of a parsed GGUF file: its value type and raw value bytes.
type ggufKV struct {
	Type uint32
	Raw  []byte
}

// ggufTensor is one tensor of a parsed GGUF file.
type ggufTensor struct {
	Name   string
	Dims   []uint64
	Type   uint32
	Offset uint64
	Data   []byte
}

// ggufFile is a parsed GGUF file.
type ggufFile struct {
	Keys    []string
	KV      map[string]ggufKV
	Tensors []ggufTensor
}

// parseGGUF reads a whole (small) GGUF v3 file.
func parseGGUF(path string) (*ggufFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseGGUFBytes(path, data)
}

// parseGGUFBytes parses a GGUF v3 file held in memory; path only names it in errors.
func parseGGUFBytes(path string, data []byte) (*ggufFile, error) {
	r := &byteReader{b: data}
	if string(r.next(4)) != "GGUF" || r.u32() != 3 {
		return nil, fmt.Errorf("%s: not a GGUF v3 file", path)
	}
	nt, nkv := r.u64(), r.u64()
	if nt > 1<<20 || nkv > 1<<20 {
		return nil, fmt.Errorf("%s: %d tensors, %d keys", path, nt, nkv)
	}
	f := &ggufFile{KV: map[string]ggufKV{}}
	for range nkv {
		k := r.str()
		typ := r.u32()
		start := r.off
		r.skipValue(typ)
		if r.err != nil {
			break
		}
		f.Keys = append(f.Keys, k)
		f.KV[k] = ggufKV{Type: typ, Raw: data[start:r.off]}
	}
	align := uint64(32)
	if kv, ok := f.KV["general.alignment"]; ok && kv.Type == 4 {
		align = uint64(binary.LittleEndian.Uint32(kv.Raw))
		if align == 0 || align&(align-1) != 0 {
			return nil, fmt.Errorf("%s: alignment %d", path, align)
		}
	}
	for range nt {
		var t ggufTensor
		t.Name = r.str()
		nd := r.u32()
		if nd > 4 {
			return nil, fmt.Errorf("%s: tensor %q has %d dimensions", path, t.Name, nd)
		}
		for range nd {
			t.Dims = append(t.Dims, r.u64())
		}
		t.Type, t.Offset = r.u32(), r.u64()
		f.Tensors = append(f.Tensors, t)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	base := (uint64(r.off) + align - 1) / align * align
	for i := range f.Tensors {
		t := &f.Tensors[i]
		end := uint64(len(data))
		if i+1 < len(f.Tensors) {
			end = base + f.Tensors[i+1].Offset
		}
		if t.Offset > uint64(len(data)) || base+t.Offset > end || end > uint64(len(data)) {
			return nil, fmt.Errorf("%s: tensor %s lies outside the file", path, t.Name)
		}
		t.Data = data[base+t.Offset : end]
	}
	return f, nil
}

type byteReader struct {
	b   []byte
	off int
	err error
}

func (r *byteReader) next(n int) []byte {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		if r.err == nil {
			r.err = io.ErrUnexpectedEOF
		}
		return make([]byte, max(n, 0))
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *byteReader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *byteReader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }

func (r *byteReader) str() string {
	n := r.u64()
	if n > 1<<30 {
		r.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	return string(r.next(int(n)))
}

// skipValue skips one value of GGUF type typ.
func (r *byteReader) skipValue(typ uint32) {
	switch typ {
	case 0, 1, 7:
		r.next(1)
	case 2, 3:
		r.next(2)
	case 4, 5, 6:
		r.next(4)
	case 10, 11, 12:
		r.next(8)
	case 8:
		r.str()
	case 9:
		et, n := r.u32(), r.u64()
		if et == 9 || n > 1<<30 {
			r.err = fmt.Errorf("array of %d elements of type %d", n, et)
			return
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.skipValue(et)
		}
	default:
		r.err = fmt.Errorf("unknown value type %d", typ)
	}
}

// ggufWriter builds a GGUF v3 file in memory (F32 tensors only).
type ggufWriter struct {
	kv      bytes.Buffer
	nkv     int
	names   []string
	dims    [][]uint64
	data    [][]float32
	putStr  func(*bytes.Buffer, string)
	putU32  func(*bytes.Buffer, uint32)
	putU64  func(*bytes.Buffer, uint64)
	putF32  func(*bytes.Buffer, float32)
	putI32s func(*bytes.Buffer, []int32)
}

func newGGUFWriter() *ggufWriter {
	w := &ggufWriter{}
	w.putU32 = func(b *bytes.Buffer, v uint32) { binary.Write(b, binary.LittleEndian, v) }
	w.putU64 = func(b *bytes.Buffer, v uint64) { binary.Write(b, binary.LittleEndian, v) }
	w.putF32 = func(b *bytes.Buffer, v float32) { binary.Write(b, binary.LittleEndian, v) }
	w.putStr = func(b *bytes.Buffer, s string) { w.putU64(b, uint64(len(s))); b.WriteString(s) }
	return w
}

func (w *ggufWriter) key(k string, typ uint32) { w.nkv++; w.putStr(&w.kv, k); w.putU32(&w.kv, typ) }
func (w *ggufWriter) str(k, v string)          { w.key(k, 8); w.putStr(&w.kv, v) }
func (w *ggufWriter) u32(k string, v uint32)   { w.key(k, 4); w.putU32(&w.kv, v) }
func (w *ggufWriter) f32(k string, v float32)  { w.key(k, 6); w.putF32(&w.kv, v) }

func (w *ggufWriter) strs(k string, v []string) {
	w.key(k, 9)
	w.putU32(&w.kv, 8)
	w.putU64(&w.kv, uint64(len(v)))
	for _, s := range v {
		w.putStr(&w.kv, s)
	}
}

func (w *ggufWriter) i32s(k string, v []int32) {
	w.key(k, 9)
	w.putU32(&w.kv, 5)
	w.putU64(&w.kv, uint64(len(v)))
	for _, x := range v {
		w.putU32(&w.kv, uint32(x))
	}
}

// tensor adds an F32 tensor with torch shape shape (written reversed, in ggml order).
func (w *ggufWriter) tensor(name string, shape []int64, v []float64) {
	d := make([]uint64, len(shape))
	for i, s := range shape {
		d[len(shape)-1-i] = uint64(s)
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	w.names, w.dims, w.data = append(w.names, name), append(w.dims, d), append(w.data, f)
}

func (w *ggufWriter) bytes() []byte {
	var b bytes.Buffer
	b.WriteString("GGUF")
	w.putU32(&b, 3)
	w.putU64(&b, uint64(len(w.names)))
	w.putU64(&b, uint64(w.nkv))
	b.Write(w.kv.Bytes())
	pad := func(n int) int { return (n + 31) / 32 * 32 }
	off := 0
	for i, n := range w.names {
		w.putStr(&b, n)
		w.putU32(&b, uint32(len(w.dims[i])))
		for _, d := range w.dims[i] {
			w.putU64(&b, d)
		}
		w.putU32(&b, 0) // F32
		w.putU64(&b, uint64(off))
		off += pad(4 * len(w.data[i]))
	}
	b.Write(make([]byte, pad(b.Len())-b.Len()))
	for _, d := range w.data {
		for _, x := range d {
			w.putF32(&b, x)
		}
		b.Write(make([]byte, pad(4*len(d))-4*len(d)))
	}
	return b.Bytes()
}

// writeF32GGUF writes the F32 GGUF of a generated 16-bit model directory as llama.cpp's converter would (names,
// the llama Q/K permutation, Gemma's norm+1), with a plain token list as the vocabulary (the logits tests do not
// tokenize). It is the harness's independent writer.
func writeF32GGUF(t *testing.T, dir, out string) {
	t.Helper()
	cfgData, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := testmodel.ParseForwardConfig(cfgData)
	if err != nil {
		t.Fatal(err)
	}
	var extra struct {
		MaxPos int `json:"max_position_embeddings"`
	}
	json.Unmarshal(cfgData, &extra)
	weights, err := testmodel.LoadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	arch := c.ModelType
	if arch == "mistral" {
		arch = "llama"
	}
	w := newGGUFWriter()
	w.str("general.architecture", arch)
	w.str("general.name", "harness")
	inter := weights["model.layers.0.mlp.gate_proj.weight"].Shape[0]
	w.u32(arch+".context_length", uint32(extra.MaxPos))
	w.u32(arch+".embedding_length", uint32(c.Hidden))
	w.u32(arch+".block_count", uint32(c.Layers))
	w.u32(arch+".feed_forward_length", uint32(inter))
	w.u32(arch+".attention.head_count", uint32(c.Heads))
	w.u32(arch+".attention.head_count_kv", uint32(c.KVHeads))
	w.f32(arch+".rope.freq_base", float32(c.RopeTheta))
	w.f32(arch+".attention.layer_norm_rms_epsilon", float32(c.RMSNormEps))
	w.u32(arch+".attention.key_length", uint32(c.HeadDim))
	w.u32(arch+".attention.value_length", uint32(c.HeadDim))
	w.u32(arch+".rope.dimension_count", uint32(c.HeadDim))
	if arch == "gemma2" {
		w.f32(arch+".attn_logit_softcapping", float32(c.AttnLogitSoftcapping))
		w.f32(arch+".final_logit_softcapping", float32(c.FinalLogitSoftcapping))
		w.u32(arch+".attention.sliding_window", uint32(extra.MaxPos))
	}
	w.u32("general.file_type", 0)
	tokens := make([]string, c.Vocab)
	types := make([]int32, c.Vocab)
	for i := range tokens {
		tokens[i], types[i] = fmt.Sprintf("[t%d]", i), 1
	}
	w.str("tokenizer.ggml.model", "gpt2")
	w.str("tokenizer.ggml.pre", "default")
	w.strs("tokenizer.ggml.tokens", tokens)
	w.i32s("tokenizer.ggml.token_type", types)
	w.strs("tokenizer.ggml.merges", []string{"[ t"})

	names := map[string]string{
		"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
		"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
		"mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "self_attn.q_norm": "attn_q_norm",
		"self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm",
	}
	if arch == "gemma2" {
		names["post_attention_layernorm"] = "post_attention_norm"
		names["pre_feedforward_layernorm"] = "ffn_norm"
		names["post_feedforward_layernorm"] = "post_ffw_norm"
	}
	keys := make([]string, 0, len(weights))
	for k := range weights {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	add := func(hf, gg string) {
		rt := weights[hf]
		v := slices.Clone(rt.Values)
		if arch == "gemma2" && strings.HasSuffix(hf, "norm.weight") {
			for i := range v {
				v[i]++
			}
		}
		if arch == "llama" && (strings.Contains(hf, "q_proj") || strings.Contains(hf, "k_proj")) {
			heads := c.Heads
			if strings.Contains(hf, "k_proj") {
				heads = c.KVHeads
			}
			v = permuteRows(v, rt.Shape, heads)
		}
		w.tensor(gg, rt.Shape, v)
	}
	add("model.embed_tokens.weight", "token_embd.weight")
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, k := range keys {
			rest, ok := strings.CutPrefix(k, p)
			if !ok {
				continue
			}
			mod := strings.TrimSuffix(strings.TrimSuffix(rest, ".weight"), ".bias")
			g, ok := names[mod]
			if !ok {
				t.Fatalf("harness writer: no GGUF name for %s", k)
			}
			add(k, fmt.Sprintf("blk.%d.%s%s", l, g, rest[len(mod):]))
		}
	}
	if rs := c.RopeScaling; rs != nil && rs.RopeType == "llama3" {
		// Llama 3.1: the converter writes the per-frequency divisors as rope_freqs.weight.
		ff := make([]float64, c.HeadDim/2)
		old := float64(rs.OriginalMax)
		for i := range ff {
			freq := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
			wavelen := 2 * math.Pi / freq
			switch {
			case wavelen < old/rs.HighFreqFactor:
				ff[i] = 1
			case wavelen > old/rs.LowFreqFactor:
				ff[i] = rs.Factor
			default:
				smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				ff[i] = 1 / ((1-smooth)/rs.Factor + smooth)
			}
		}
		w.tensor("rope_freqs.weight", []int64{int64(len(ff))}, ff)
	}
	add("model.norm.weight", "output_norm.weight")
	if _, ok := weights["lm_head.weight"]; ok {
		add("lm_head.weight", "output.weight")
	}
	if err := os.WriteFile(out, w.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// permuteRows undoes Hugging Face's rotate-half Q/K row order for llama.cpp's llama architecture: output row
// h·d + 2i + j is input row h·d + j·d/2 + i.
func permuteRows(v []float64, shape []int64, heads int) []float64 {
	rows := int(shape[0])
	cols := len(v) / rows
	d := rows / heads
	out := make([]float64, len(v))
	for h := range heads {
		for i := range d / 2 {
			for j := range 2 {
				copy(out[(h*d+2*i+j)*cols:(h*d+2*i+j+1)*cols], v[(h*d+j*d/2+i)*cols:(h*d+j*d/2+i+1)*cols])
			}
		}
	}
	return out
}

// hfNames maps GGUF tensor names back to Hugging Face checkpoint names for the test architectures (the inverse
// of the converter's mapping that writeF32GGUF applies).
func hfName(arch, gg string) (string, bool) {
	switch gg {
	case "token_embd.weight":
		return "model.embed_tokens.weight", true
	case "output_norm.weight":
		return "model.norm.weight", true
	case "output.weight":
		return "lm_head.weight", true
	case "rope_freqs.weight":
		return "", false // derived from config.json's rope_scaling
	}
	var l int
	var rest string
	if _, err := fmt.Sscanf(gg, "blk.%d.", &l); err != nil {
		return "", false
	}
	rest = gg[len(fmt.Sprintf("blk.%d.", l)):]
	base, suffix, _ := strings.Cut(rest, ".")
	names := map[string]string{
		"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
		"attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
		"ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "attn_q_norm": "self_attn.q_norm",
		"attn_k_norm": "self_attn.k_norm", "ffn_norm": "post_attention_layernorm",
	}
	if arch == "gemma2" {
		names["post_attention_norm"] = "post_attention_layernorm"
		names["ffn_norm"] = "pre_feedforward_layernorm"
		names["post_ffw_norm"] = "post_feedforward_layernorm"
	}
	hf, ok := names[base]
	if !ok {
		return "", false
	}
	return fmt.Sprintf("model.layers.%d.%s.%s", l, hf, suffix), true
}

// dequantizedWeights reads a GGUF file back into Hugging Face weights: every tensor dequantized with ggml's
// dequantize_row_* (internal/ggml), the llama Q/K permutation and Gemma's norm+1 undone. Forward on them is
// what llama.cpp computes on the file, up to its own arithmetic.
func dequantizedWeights(t *testing.T, path string, c testmodel.ForwardConfig) map[string]testmodel.RefTensor {
	t.Helper()
	f, err := parseGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	arch := c.ModelType
	if arch == "mistral" {
		arch = "llama"
	}
	out := map[string]testmodel.RefTensor{}
	for _, ti := range f.Tensors {
		hf, ok := hfName(arch, ti.Name)
		if !ok {
			if ti.Name == "rope_freqs.weight" {
				continue
			}
			t.Fatalf("%s: unexpected tensor %s", path, ti.Name)
		}
		n := 1
		shape := make([]int64, len(ti.Dims))
		for i, d := range ti.Dims {
			n *= int(d)
			shape[len(ti.Dims)-1-i] = int64(d)
		}
		typ := ggml.Type(ti.Type)
		rs, err := typ.RowSize(int(ti.Dims[0]))
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, n)
		if err := ggml.Dequantize(typ, dst, ti.Data[:rs*(n/int(ti.Dims[0]))], int(ti.Dims[0])); err != nil {
			t.Fatalf("%s: %s: %v", path, ti.Name, err)
		}
		v := make([]float64, n)
		for i, x := range dst {
			v[i] = float64(x)
		}
		if arch == "gemma2" && strings.HasSuffix(hf, "norm.weight") {
			for i := range v {
				v[i]--
			}
		}
		if arch == "llama" && (strings.Contains(hf, "q_proj") || strings.Contains(hf, "k_proj")) {
			heads := c.Heads
			if strings.Contains(hf, "k_proj") {
				heads = c.KVHeads
			}
			v = unpermuteRows(v, shape, heads)
		}
		out[hf] = testmodel.RefTensor{Shape: shape, Values: v}
	}
	return out
}

// unpermuteRows is the inverse of permuteRows.
func unpermuteRows(v []float64, shape []int64, heads int) []float64 {
	rows := int(shape[0])
	cols := len(v) / rows
	d := rows / heads
	out := make([]float64, len(v))
	for h := range heads {
		for i := range d / 2 {
			for j := range 2 {
				copy(out[(h*d+j*d/2+i)*cols:(h*d+j*d/2+i+1)*cols], v[(h*d+2*i+j)*cols:(h*d+2*i+j+1)*cols])
			}
		}
	}
	return out
}

// FuzzParseGGUF feeds the suite's GGUF reader arbitrary bytes (seeded with a real file): it must return an error
// or a file whose tensors lie inside the input, never panic.
func FuzzParseGGUF(f *testing.F) {
	w := newGGUFWriter()
	w.str("general.architecture", "llama")
	w.u32("general.alignment", 32)
	w.strs("tokenizer.ggml.tokens", []string{"a", "b"})
	w.tensor("x.weight", []int64{2, 3}, []float64{1, 2, 3, 4, 5, 6})
	w.tensor("y.weight", []int64{5}, []float64{1, 2, 3, 4, 5})
	f.Add(w.bytes())
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := parseGGUFBytes("fuzz", data)
		if err != nil {
			return
		}
		for _, ti := range g.Tensors {
			if len(ti.Data) > len(data) {
				t.Fatalf("tensor %s holds %d bytes of a %d-byte file", ti.Name, len(ti.Data), len(data))
			}
		}
	})
}
