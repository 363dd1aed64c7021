package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// SidecarFile is the file GenerateBase writes next to the model with the spec it was generated from, so that
// LoadBaseInfo can plan adapters for it later.
const SidecarFile = "hubsync-testmodel.json"

// stateBudget bounds the 4-bit statistics kept between the passes over a weight file.
const stateBudget = 64 << 20

// GenerateBase writes a Hugging Face model directory for spec into dir (created if needed): config.json,
// generation_config.json, the weights (model.safetensors, or shards plus model.safetensors.index.json),
// tokenizer files and the SidecarFile. Weight files are written atomically, tensor by tensor and tile by tile,
// so memory stays bounded for any size. On error the files written so far are removed.
func GenerateBase(ctx context.Context, dir string, spec BaseSpec) (info *BaseInfo, err error) {
	s, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	if err := s.Tokenizer.check(s.Vocab); err != nil {
		return nil, err
	}
	states := newStateCache(s, stateBudget)
	info, err = planBase(s, func(w string, shape []int64) (int, error) {
		if err := ctx.Err(); err != nil { // planning a double-quant base makes a pass over each weight's data
			return 0, err
		}
		return states.blobLen(w, shape)
	})
	if err != nil {
		return nil, err
	}
	info.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	put := func(name string, data []byte) error {
		p := filepath.Join(dir, name)
		if err := writeFileAtomic(p, data); err != nil {
			return err
		}
		written = append(written, p)
		return nil
	}
	cfg, err := configJSON(s)
	if err != nil {
		return nil, err
	}
	if err := put("config.json", cfg); err != nil {
		return nil, err
	}
	if err := put("generation_config.json", generationConfigJSON(s)); err != nil {
		return nil, err
	}
	bw := newBaseWriter(info, states)
	for _, file := range info.Files {
		var entries []safetensors.Entry
		for _, t := range info.Tensors {
			if t.File == file {
				entries = append(entries, safetensors.Entry{Name: t.Name, DType: t.DType, Shape: t.Shape})
			}
		}
		l, err := safetensors.Plan(entries, map[string]string{"format": "pt"})
		if err != nil {
			return nil, fmt.Errorf("testmodel: plan %s: %w", file, err)
		}
		p := filepath.Join(dir, file)
		if _, err := safetensors.WriteFile(ctx, p, l, bw.fill); err != nil {
			return nil, err
		}
		written = append(written, p)
		if err := os.Chmod(p, 0o644); err != nil {
			return nil, err
		}
	}
	if info.Indexed {
		idx, err := indexJSON(info)
		if err != nil {
			return nil, err
		}
		if err := put("model.safetensors.index.json", idx); err != nil {
			return nil, err
		}
	}
	for _, f := range tokenizerFiles(s.Tokenizer, s.Arch.tokenizerFamily(), s.Vocab, s.MaxPositionEmbeddings) {
		if err := put(f.name, f.data); err != nil {
			return nil, err
		}
	}
	side, err := marshalSidecar(s)
	if err != nil {
		return nil, err
	}
	if err := put(SidecarFile, side); err != nil {
		return nil, err
	}
	return info, nil
}

// LoadBaseInfo re-plans a base that GenerateBase wrote into dir, from its SidecarFile, and checks that the weight
// files hold exactly the planned tensors (quant-state blob lengths are taken from the files, so no data is
// regenerated).
func LoadBaseInfo(dir string) (*BaseInfo, error) {
	p := filepath.Join(dir, SidecarFile)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("testmodel: %s is not a generated base: %w", dir, err)
	}
	spec, err := unmarshalSidecar(data)
	if err != nil {
		return nil, fmt.Errorf("testmodel: %s: %w", p, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return nil, fmt.Errorf("testmodel: %s: %w", dir, err)
	}
	s, err := spec.normalize()
	if err != nil {
		return nil, fmt.Errorf("testmodel: %s: %w", p, err)
	}
	// Every tensor header of the weight files, by name.
	files := []string{"model.safetensors"}
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	if data, err := os.ReadFile(idxPath); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("testmodel: %s: %w", idxPath, err)
		}
		files = nil
		for _, f := range idx.WeightMap {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	type hdr struct {
		file string
		ti   safetensors.TensorInfo
	}
	headers := map[string]hdr{}
	for _, name := range files {
		f, err := safetensors.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("testmodel: %w", err)
		}
		for _, ti := range f.Tensors {
			headers[ti.Name] = hdr{name, ti}
		}
		f.Close()
	}
	info, err := planBase(s, func(weight string, _ []int64) (int, error) {
		h, ok := headers[weight+quantStateKey(s.Quant)]
		if !ok || len(h.ti.Shape) != 1 {
			return 0, fmt.Errorf("testmodel: %s: no quant state for %s", dir, weight)
		}
		return int(h.ti.Shape[0]), nil
	})
	if err != nil {
		return nil, err
	}
	if len(headers) != len(info.Tensors) {
		return nil, fmt.Errorf("testmodel: %s: the weight files hold %d tensors, the spec plans %d", dir,
			len(headers), len(info.Tensors))
	}
	for _, t := range info.Tensors {
		h, ok := headers[t.Name]
		if !ok || h.file != t.File || h.ti.DType != t.DType || !tensor.EqualShapes(h.ti.Shape, t.Shape) {
			return nil, fmt.Errorf("testmodel: %s: tensor %s does not match the spec in %s", dir, t.Name, SidecarFile)
		}
	}
	info.Dir = dir
	return info, nil
}

// sidecar is the SidecarFile's JSON form of a (normalized) BaseSpec.
type sidecar struct {
	Arch                  Arch     `json:"arch"`
	Hidden                int      `json:"hidden"`
	Intermediate          int      `json:"intermediate"`
	Layers                int      `json:"layers"`
	Heads                 int      `json:"heads"`
	KVHeads               int      `json:"kv_heads"`
	HeadDim               int      `json:"head_dim"`
	Vocab                 int      `json:"vocab"`
	Tied                  bool     `json:"tied"`
	Bias                  bool     `json:"bias"`
	DType                 string   `json:"dtype"`
	Quant                 Quant    `json:"quant"`
	DoubleQuant           bool     `json:"double_quant"`
	Blocksize             int      `json:"blocksize"`
	QuantStorage          string   `json:"quant_storage"`
	SkipModules           []string `json:"skip_modules"`
	FanInFanOut           bool     `json:"fan_in_fan_out"`
	Seed                  int64    `json:"seed"`
	ShardSize             int64    `json:"shard_size"`
	FastRandomCodes       bool     `json:"fast_random_codes"`
	Llama3Rope            bool     `json:"llama3_rope,omitempty"`
	RopeTheta             float64  `json:"rope_theta"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`

	// Tokenizer is written only when set, so sidecars of fake-tokenizer bases are unchanged.
	Tokenizer TokenizerKind `json:"tokenizer,omitempty"`
}

func marshalSidecar(s BaseSpec) ([]byte, error) {
	return marshalJSON(sidecar{Arch: s.Arch, Hidden: s.Hidden, Intermediate: s.Intermediate, Layers: s.Layers,
		Heads: s.Heads, KVHeads: s.KVHeads, HeadDim: s.HeadDim, Vocab: s.Vocab, Tied: s.Tied, Bias: s.Bias,
		DType: s.DType.String(), Quant: s.Quant, DoubleQuant: s.DoubleQuant, Blocksize: s.Blocksize,
		QuantStorage: s.QuantStorage.String(), SkipModules: s.SkipModules, FanInFanOut: s.FanInFanOut,
		Seed: s.Seed, ShardSize: s.ShardSize, FastRandomCodes: s.FastRandomCodes, Llama3Rope: s.Llama3Rope,
		RopeTheta: s.RopeTheta, RMSNormEps: s.RMSNormEps, MaxPositionEmbeddings: s.MaxPositionEmbeddings,
		Tokenizer: s.Tokenizer})
}

func unmarshalSidecar(data []byte) (BaseSpec, error) {
	var sc sidecar
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return BaseSpec{}, err
	}
	dt, err := tensor.ParseDType(sc.DType)
	if err != nil {
		return BaseSpec{}, err
	}
	qs, err := tensor.ParseDType(sc.QuantStorage)
	if err != nil {
		return BaseSpec{}, err
	}
	return BaseSpec{Arch: sc.Arch, Hidden: sc.Hidden, Intermediate: sc.Intermediate, Layers: sc.Layers,
		Heads: sc.Heads, KVHeads: sc.KVHeads, HeadDim: sc.HeadDim, Vocab: sc.Vocab, Tied: sc.Tied, Bias: sc.Bias,
		DType: dt, Quant: sc.Quant, DoubleQuant: sc.DoubleQuant, Blocksize: sc.Blocksize, QuantStorage: qs,
		SkipModules: sc.SkipModules, FanInFanOut: sc.FanInFanOut, Seed: sc.Seed, ShardSize: sc.ShardSize,
		FastRandomCodes: sc.FastRandomCodes, Llama3Rope: sc.Llama3Rope, RopeTheta: sc.RopeTheta,
		RMSNormEps: sc.RMSNormEps, MaxPositionEmbeddings: sc.MaxPositionEmbeddings, Tokenizer: sc.Tokenizer}, nil
}

// pyNum is a float rendered as Python's json.dumps renders it (10000.0, 1e-05).
func pyNum(x float64) json.Number { return json.Number(PyFloat(x)) }

// configJSON renders config.json as transformers' save_pretrained does (sorted keys, 2-space indent).
func configJSON(s BaseSpec) ([]byte, error) {
	bos, eos := s.Tokenizer.specialIDs(s.Arch.tokenizerFamily())
	c := map[string]any{
		"architectures":           []string{s.Arch.architecture()},
		"attention_dropout":       pyNum(0),
		"bos_token_id":            bos,
		"eos_token_id":            eos,
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       pyNum(0.02),
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": s.MaxPositionEmbeddings,
		"model_type":              string(s.Arch),
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"rms_norm_eps":            pyNum(s.RMSNormEps),
		"rope_scaling":            nil,
		"rope_theta":              pyNum(s.RopeTheta),
		"tie_word_embeddings":     s.Tied,
		"torch_dtype":             s.DType.TorchName(),
		"transformers_version":    "4.46.3",
		"use_cache":               true,
		"vocab_size":              s.Vocab,
	}
	if s.HeadDim*s.Heads != s.Hidden {
		c["head_dim"] = s.HeadDim
	}
	switch s.Arch {
	case ArchLlama:
		c["attention_bias"] = s.Bias
		c["mlp_bias"] = false
		c["pretraining_tp"] = 1
	case ArchQwen2:
		c["attention_bias"] = true // Qwen2 always has q/k/v biases; informational for readers that look
		c["sliding_window"] = s.MaxPositionEmbeddings
		c["use_sliding_window"] = false
		c["max_window_layers"] = s.Layers
	case ArchMistral:
		c["sliding_window"] = nil
	case ArchQwen3:
		c["attention_bias"] = false
		c["head_dim"] = s.HeadDim
		c["sliding_window"] = nil
		c["use_sliding_window"] = false
		c["max_window_layers"] = s.Layers
	case ArchGemma2:
		c["attention_bias"] = false
		c["head_dim"] = s.HeadDim
		c["hidden_act"] = "gelu_pytorch_tanh"
		c["hidden_activation"] = "gelu_pytorch_tanh"
		c["query_pre_attn_scalar"] = s.HeadDim
		c["attn_logit_softcapping"] = pyNum(50)
		c["final_logit_softcapping"] = pyNum(30)
		c["sliding_window"] = s.MaxPositionEmbeddings
		c["cache_implementation"] = "hybrid"
	}
	if s.Llama3Rope {
		c["rope_scaling"] = map[string]any{"factor": pyNum(8), "low_freq_factor": pyNum(1),
			"high_freq_factor": pyNum(4), "original_max_position_embeddings": 8192, "rope_type": "llama3"}
	}
	if s.Quant != QuantNone {
		var skip any
		if len(s.SkipModules) > 0 {
			skip = s.SkipModules
		}
		c["quantization_config"] = map[string]any{
			"_load_in_4bit":                    true,
			"_load_in_8bit":                    false,
			"bnb_4bit_compute_dtype":           s.DType.TorchName(),
			"bnb_4bit_quant_storage":           s.QuantStorage.TorchName(),
			"bnb_4bit_quant_type":              string(s.Quant),
			"bnb_4bit_use_double_quant":        s.DoubleQuant,
			"llm_int8_enable_fp32_cpu_offload": false,
			"llm_int8_has_fp16_weight":         false,
			"llm_int8_skip_modules":            skip,
			"llm_int8_threshold":               pyNum(6),
			"load_in_4bit":                     true,
			"load_in_8bit":                     false,
			"quant_method":                     "bitsandbytes",
		}
	}
	return marshalJSON(c)
}

func generationConfigJSON(s BaseSpec) []byte {
	bos, eos := s.Tokenizer.specialIDs(s.Arch.tokenizerFamily())
	out, _ := marshalJSON(map[string]any{"_from_model_config": true, "bos_token_id": bos, "eos_token_id": eos,
		"transformers_version": "4.46.3"}) // a map of plain values always encodes
	return out
}

// indexJSON renders model.safetensors.index.json (sorted keys, 2-space indent, trailing newline).
func indexJSON(info *BaseInfo) ([]byte, error) {
	wm := map[string]string{}
	for _, t := range info.Tensors {
		wm[t.Name] = t.File
	}
	return marshalJSON(map[string]any{"metadata": map[string]any{"total_size": info.TotalSize}, "weight_map": wm})
}

// marshalJSON renders v with 2-space indentation, no HTML escaping and a trailing newline.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// namedFile is a small file to write.
type namedFile struct {
	name string
	data []byte
}

// tokenizerFiles returns the tokenizer files of kind k (realTokenizerFiles) or, for TokenizerFake, a small fake
// but valid tokenizer in the order tokenizer.save_pretrained writes it: tokenizer_config.json,
// special_tokens_map.json, tokenizer.json. The fake BPE vocabulary holds up to 1024 tokens (specials, printable
// ASCII, then "tok<i>"); models with a bigger vocab_size simply have unused rows.
func tokenizerFiles(k TokenizerKind, a Arch, vocab, maxLen int) []namedFile {
	if k != TokenizerFake {
		return realTokenizerFiles(k, maxLen)
	}
	specials := []string{"<unk>", "<s>", "</s>"}
	class := "LlamaTokenizerFast"
	if a == ArchQwen2 {
		specials = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
		class = "Qwen2TokenizerFast"
	}
	bos, eos := k.specialIDs(a)
	n := min(vocab, 1024)
	vocabMap := map[string]int{}
	var added []map[string]any
	decoder := map[string]any{}
	for i := range n {
		var tok string
		switch {
		case i < len(specials):
			tok = specials[i]
			entry := map[string]any{"id": i, "content": tok, "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": false, "special": true}
			added = append(added, entry)
			decoder[fmt.Sprint(i)] = map[string]any{"content": tok, "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": false, "special": true}
		case i-len(specials) < 94:
			tok = string(rune('!' + i - len(specials)))
		default:
			tok = fmt.Sprintf("tok%d", i)
		}
		vocabMap[tok] = i
	}
	tokJSON, _ := marshalJSON(map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocabMap, "merges": []string{}},
	})
	special := func(id int) map[string]any {
		return map[string]any{"content": specials[id], "lstrip": false, "normalized": false, "rstrip": false,
			"single_word": false}
	}
	cfg := map[string]any{
		"add_bos_token":                a != ArchQwen2,
		"add_eos_token":                false,
		"added_tokens_decoder":         decoder,
		"bos_token":                    specials[bos],
		"chat_template":                "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}",
		"clean_up_tokenization_spaces": false,
		"eos_token":                    specials[eos],
		"model_max_length":             maxLen,
		"pad_token":                    specials[eos],
		"padding_side":                 "left",
		"tokenizer_class":              class,
		"unk_token":                    specials[0],
	}
	cfgJSON, _ := marshalJSON(cfg)
	stm := map[string]any{"bos_token": special(bos), "eos_token": special(eos), "pad_token": special(eos),
		"unk_token": special(0)}
	stmJSON, _ := marshalJSON(stm)
	return []namedFile{{"tokenizer_config.json", cfgJSON}, {"special_tokens_map.json", stmJSON},
		{"tokenizer.json", tokJSON}}
}

// writeFileAtomic writes data to path through a temporary file in the same directory and a rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
