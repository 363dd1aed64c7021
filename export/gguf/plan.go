package gguf

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/export/gguf/vocab"
	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// encodeFunc encodes rows of float32 values as a ggml type (ggml.QuantizeParallel's contract).
type encodeFunc func(ctx context.Context, t ggml.Type, dst []byte, src []float32, ncols, threads int) error

// hooks are the dependencies Plan uses; tests replace them.
type hooks struct {
	loadVocab func(dir string, vocabSize int, opts vocab.LoadOptions) (*vocab.Vocab, error)
	encode    encodeFunc
}

func defaultHooks() hooks {
	return hooks{
		loadVocab: vocab.LoadWith,
		encode:    ggml.QuantizeParallel,
	}
}

// plannedTensor is one tensor of a File and how its bytes are made.
type plannedTensor struct {
	info TensorInfo
	// src is the Source tensor's name ("" for a generated tensor, whose bytes are in data).
	src      string
	srcDType tensor.DType
	data     []byte
	// rows × cols float values; cols is ne[0].
	rows, cols int64
	// rowBytes is the encoded size of one row.
	rowBytes int64
	// heads > 0 applies llama's Q/K row permutation over that many heads.
	heads int64
	// addOne adds 1 to every value (Gemma's norms); roundTo then rounds to that dtype (Invalid: no rounding).
	addOne  bool
	roundTo tensor.DType
	// chunkRows is how many rows are produced at once (a multiple of a head's rows when permuting).
	chunkRows int64
}

// chunkFloats is the number of float32 values produced at once (4 MiB), which bounds Write's memory.
const chunkFloats = 1 << 20

// blkIndex parses "blk.N." as llama.cpp's weight_name_comparer does (-1 for other names).
func blkIndex(name string) int {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1
	}
	n, _, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(n)
	if err != nil {
		return -1
	}
	return i
}

// planWith is Plan with explicit dependencies.
func planWith(src Source, opts Options, h hooks) (*File, error) {
	if !opts.Type.valid() {
		return nil, fmt.Errorf("gguf: unknown output type %d", int(opts.Type))
	}
	hp, err := parseConfig(opts.Config)
	if err != nil {
		return nil, err
	}
	// Map and check the source tensors.
	var ts []*plannedTensor
	byName := map[string]*plannedTensor{}
	for _, st := range src.Tensors() {
		name, _, drop, err := hp.ggufName(st.Name)
		if err != nil {
			return nil, err
		}
		if drop {
			continue
		}
		if st.DType != tensor.F32 && st.DType != tensor.F16 && st.DType != tensor.BF16 {
			return nil, fmt.Errorf("gguf: tensor %s is %s; GGUF export reads F32, F16 or BF16 weights", st.Name, st.DType)
		}
		if len(st.Shape) == 0 || len(st.Shape) > MaxDims {
			return nil, fmt.Errorf("gguf: tensor %s has shape %s", st.Name, tensor.FormatShape(st.Shape))
		}
		if byName[name] != nil {
			return nil, fmt.Errorf("gguf: tensors %s and %s both map to %s", byName[name].src, st.Name, name)
		}
		dims := make([]uint64, len(st.Shape))
		for i, d := range st.Shape {
			if d <= 0 {
				return nil, fmt.Errorf("gguf: tensor %s has shape %s", st.Name, tensor.FormatShape(st.Shape))
			}
			dims[len(st.Shape)-1-i] = uint64(d)
		}
		p := &plannedTensor{info: TensorInfo{Name: name, Dims: dims}, src: st.Name, srcDType: st.DType}
		ts = append(ts, p)
		byName[name] = p
	}
	emb := byName["token_embd.weight"]
	if emb == nil {
		return nil, fmt.Errorf("gguf: the checkpoint has no model.embed_tokens.weight")
	}
	nVocab := hp.nVocab
	if nVocab == 0 && len(emb.info.Dims) == 2 {
		nVocab = int(emb.info.Dims[1])
		hp.nVocab = nVocab
	}
	if freqs, ok := hp.ropeFreqs(); ok {
		data := make([]byte, 4*len(freqs))
		if _, err := tensor.EncodeFloats(tensor.F32, freqs, data); err != nil {
			return nil, err
		}
		p := &plannedTensor{info: TensorInfo{Name: "rope_freqs.weight", Dims: []uint64{uint64(len(freqs))}}, data: data, srcDType: tensor.F32}
		ts = append(ts, p)
		byName[p.info.Name] = p
	}
	for _, p := range ts {
		want := hp.expectedDims(p.info.Name, nVocab)
		if want == nil {
			return nil, fmt.Errorf("gguf: tensor %s (%s) is not part of a %s model", p.src, p.info.Name, hp.arch.name)
		}
		if !equalDims(p.info.Dims, want) {
			return nil, fmt.Errorf("gguf: tensor %s has shape %s, config.json implies %s", p.src, tensor.FormatShape(torchShape(p.info.Dims)), tensor.FormatShape(torchShape(want)))
		}
	}
	for _, n := range []string{"output_norm.weight"} {
		if byName[n] == nil {
			return nil, fmt.Errorf("gguf: the checkpoint has no tensor for %s", n)
		}
	}
	for i := range hp.nLayer {
		for _, part := range hp.requiredPerLayer() {
			if byName[fmt.Sprintf("blk.%d.%s", i, part)] == nil {
				return nil, fmt.Errorf("gguf: the checkpoint has no tensor for blk.%d.%s (layer %d of %s)", i, part, i, hp.hfArch)
			}
		}
	}
	// File order: llama.cpp's weight_name_comparer (block index, then name), the order llama_model_quantize
	// writes, so that a re-quantized hubsync file lists its tensors as hubsync's own file does.
	sort.Slice(ts, func(i, j int) bool {
		a, b := ts[i].info.Name, ts[j].info.Name
		if la, lb := blkIndex(a), blkIndex(b); la != lb {
			return la < lb
		}
		return a < b
	})
	names := make([]string, len(ts))
	for i, p := range ts {
		names[i] = p.info.Name
	}
	mix := newMixState(opts.Type, hp, names)
	var off int64
	infos := make([]TensorInfo, len(ts))
	for i, p := range ts {
		if p.info.Type, err = mix.tensorType(p.info.Name, p.info.Dims); err != nil {
			return nil, err
		}
		p.cols = int64(p.info.Dims[0])
		p.rows = 1
		for _, d := range p.info.Dims[1:] {
			p.rows *= int64(d)
		}
		rs, err := p.info.Type.RowSize(int(p.cols))
		if err != nil {
			return nil, fmt.Errorf("gguf: tensor %s: %w", p.info.Name, err)
		}
		p.rowBytes = int64(rs)
		p.info.Bytes = p.rows * p.rowBytes
		p.info.Offset = off
		off += padTo(p.info.Bytes, Alignment)
		if hp.arch.permuteQK && p.src != "" {
			switch {
			case strings.HasSuffix(p.src, "q_proj.weight"), strings.HasSuffix(p.src, "q_proj.bias"):
				p.heads = int64(hp.nHead)
			case strings.HasSuffix(p.src, "k_proj.weight"), strings.HasSuffix(p.src, "k_proj.bias"):
				p.heads = int64(hp.nHeadKV)
			}
		}
		if p.heads > 0 && len(p.info.Dims) == 1 {
			// A 1-D bias is a column: its "rows" are its elements.
			p.rows, p.cols = p.cols, 1
			p.rowBytes = int64(p.info.Type.BlockBytes())
		}
		if hp.arch.normPlusOne && strings.HasSuffix(p.src, "norm.weight") {
			p.addOne = true
			if p.srcDType == tensor.F16 {
				p.roundTo = tensor.F16 // the converter adds 1 in the checkpoint's float16
			}
		}
		if !opts.Type.converted() && p.info.Type.Quantized() && p.srcDType == tensor.F32 && hp.dtype.IsFloat16() {
			// Quantized types are made from the weights as the model's 16-bit file holds them.
			p.roundTo = hp.dtype
		}
		if p.heads > 0 && (p.rows%p.heads != 0 || (p.rows/p.heads)%2 != 0) {
			return nil, fmt.Errorf("gguf: tensor %s: %d rows do not split into %d heads of even size", p.src, p.rows, p.heads)
		}
		p.setChunk(chunkFloats)
		infos[i] = p.info
	}
	kvs, err := hp.metadata(opts.Type, opts.Name)
	if err != nil {
		return nil, err
	}
	v, err := h.loadVocab(opts.TokenizerDir, hp.nVocab, vocab.LoadOptions{Pre: opts.Pre, Config: opts.Config})
	if err != nil {
		return nil, err
	}
	if len(v.Tokens) != int(emb.info.Dims[1]) {
		return nil, fmt.Errorf("gguf: the tokenizer in %s has %d tokens, the embedding %s has %d rows", opts.TokenizerDir, len(v.Tokens), emb.src, emb.info.Dims[1])
	}
	if hp.arch.name == "gemma2" {
		no := false
		vc := *v
		vc.AddSpacePrefix = &no // Gemma2Model.set_vocab
		v = &vc
	}
	tkvs, err := vocabKVs(v)
	if err != nil {
		return nil, err
	}
	kvs = append(kvs, tkvs...)
	if !opts.Type.converted() {
		// llama_model_quantize re-sets these two keys, which moves them to the end: with the same order the
		// whole file equals llama_model_quantize's output from hubsync's 16-bit file.
		var tail []KV
		kvs = slices.DeleteFunc(kvs, func(kv KV) bool {
			if kv.Key == "general.quantization_version" || kv.Key == "general.file_type" {
				tail = append(tail, kv)
				return true
			}
			return false
		})
		slices.SortFunc(tail, func(a, b KV) int { return strings.Compare(b.Key, a.Key) }) // quantization_version first
		kvs = append(kvs, tail...)
	}
	header, err := encodeHeader(kvs, infos)
	if err != nil {
		return nil, err
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &File{header: header, tensors: ts, size: int64(len(header)) + off, src: src, threads: threads, encode: h.encode}, nil
}

// setChunk sets how many rows are produced at once: about floats values, whole heads when permuting.
func (p *plannedTensor) setChunk(floats int64) {
	p.chunkRows = max(1, floats/p.cols)
	if p.heads > 0 {
		hr := p.rows / p.heads
		p.chunkRows = max(1, p.chunkRows/hr) * hr
	}
	p.chunkRows = min(p.chunkRows, p.rows)
}

func equalDims(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// torchShape reverses ggml dims into a torch shape, for messages.
func torchShape(dims []uint64) []int64 {
	s := make([]int64, len(dims))
	for i, d := range dims {
		s[len(dims)-1-i] = int64(d)
	}
	return s
}

// specialOrder is gguf-py SpecialVocab's order of special-token kinds, then the ones llama.cpp adds.
var specialOrder = []string{"bos", "eos", "unknown", "seperator", "padding", "mask", "eot", "eom"}

// vocabKVs turns a Vocab into tokenizer.* KVs, in gguf-py's order.
func vocabKVs(v *vocab.Vocab) ([]KV, error) {
	if v.Model == "" || len(v.Tokens) == 0 {
		return nil, fmt.Errorf("gguf: the tokenizer has no tokens")
	}
	if len(v.Types) != len(v.Tokens) || (v.Scores != nil && len(v.Scores) != len(v.Tokens)) {
		return nil, fmt.Errorf("gguf: the tokenizer has %d tokens, %d types and %d scores", len(v.Tokens), len(v.Types), len(v.Scores))
	}
	kvs := []KV{{Key: "tokenizer.ggml.model", Value: v.Model}}
	if v.Pre != "" {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.pre", Value: v.Pre})
	}
	kvs = append(kvs, KV{Key: "tokenizer.ggml.tokens", Value: v.Tokens})
	if len(v.Scores) > 0 {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.scores", Value: v.Scores})
	}
	kvs = append(kvs, KV{Key: "tokenizer.ggml.token_type", Value: v.Types})
	if len(v.Merges) > 0 || v.Model == "gpt2" {
		// llama.cpp requires the key for a byte-level BPE vocabulary, even when it has no merges
		// (character-level): then it is an empty array, which ggml's reader accepts.
		kvs = append(kvs, KV{Key: "tokenizer.ggml.merges", Value: append([]string{}, v.Merges...)})
	}
	kinds := append([]string(nil), specialOrder...)
	var extra []string
	for k := range v.Special {
		known := false
		for _, o := range specialOrder {
			known = known || o == k
		}
		if !known {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range append(kinds, extra...) {
		if id, ok := v.Special[k]; ok {
			kvs = append(kvs, KV{Key: "tokenizer.ggml." + k + "_token_id", Value: id})
		}
	}
	for _, b := range []struct {
		key string
		v   *bool
	}{{"add_bos_token", v.AddBOS}, {"add_eos_token", v.AddEOS}, {"add_space_prefix", v.AddSpacePrefix}} {
		if b.v != nil {
			kvs = append(kvs, KV{Key: "tokenizer.ggml." + b.key, Value: *b.v})
		}
	}
	if v.ChatTemplate != "" {
		kvs = append(kvs, KV{Key: "tokenizer.chat_template", Value: v.ChatTemplate})
	}
	if len(v.NamedTemplates) > 0 {
		names := make([]string, 0, len(v.NamedTemplates))
		for n := range v.NamedTemplates {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			kvs = append(kvs, KV{Key: "tokenizer.chat_template." + n, Value: v.NamedTemplates[n]})
		}
		kvs = append(kvs, KV{Key: "tokenizer.chat_templates", Value: names})
	}
	return kvs, nil
}
