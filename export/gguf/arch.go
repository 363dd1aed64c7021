package gguf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
)

// arch describes how one llama.cpp architecture is written.
type arch struct {
	// name is general.architecture.
	name string
	// permuteQK undoes HF's rotate-half layout of Q and K rows (llama's LLAMA_ROPE_TYPE_NORM).
	permuteQK bool
	// normPlusOne adds 1 to every norm weight (Gemma stores w-1).
	normPlusOne bool
	// skipLMHead drops lm_head.weight (Gemma ties it to the embedding).
	skipLMHead bool
	// layerNames maps the HF name of a block tensor (after "model.layers.N.", without .weight/.bias) to the GGUF
	// one (after "blk.N.").
	layerNames map[string]string
}

var commonLayerNames = map[string]string{
	"input_layernorm":          "attn_norm",
	"self_attn.q_proj":         "attn_q",
	"self_attn.k_proj":         "attn_k",
	"self_attn.v_proj":         "attn_v",
	"self_attn.o_proj":         "attn_output",
	"post_attention_layernorm": "ffn_norm",
	"mlp.gate_proj":            "ffn_gate",
	"mlp.up_proj":              "ffn_up",
	"mlp.down_proj":            "ffn_down",
}

func withNames(base map[string]string, extra map[string]string) map[string]string {
	m := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// archs maps config.json's architectures[0] to the GGUF architecture, as convert_hf_to_gguf registers them.
func archFor(hfArch string) (*arch, bool) {
	switch hfArch {
	case "LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM":
		return &arch{name: "llama", permuteQK: true, layerNames: commonLayerNames}, true
	case "Qwen2ForCausalLM":
		return &arch{name: "qwen2", layerNames: commonLayerNames}, true
	case "Qwen3ForCausalLM":
		return &arch{name: "qwen3", layerNames: withNames(commonLayerNames, map[string]string{
			"self_attn.q_norm": "attn_q_norm",
			"self_attn.k_norm": "attn_k_norm",
		})}, true
	case "Gemma2ForCausalLM":
		return &arch{name: "gemma2", normPlusOne: true, skipLMHead: true, layerNames: withNames(commonLayerNames, map[string]string{
			"post_attention_layernorm":   "post_attention_norm",
			"pre_feedforward_layernorm":  "ffn_norm",
			"post_feedforward_layernorm": "post_ffw_norm",
		})}, true
	}
	return nil, false
}

// Sanity bounds on config values (far above any real model), so a hostile config.json cannot make Plan loop or
// allocate without end before the tensors are checked against it.
const (
	maxLayers  = 1 << 12
	maxHeadDim = 1 << 14
)

// hparams are the hyper-parameters read from config.json (with text_config merged in).
type hparams struct {
	raw     map[string]any
	hfArch  string
	arch    *arch
	nLayer  int
	nCtx    int
	nEmbd   int
	nFF     int
	nHead   int
	nHeadKV int
	nVocab  int
	headDim int
	// dtype is torch_dtype when it is a 16-bit float type (the dtype a merge stores), else Invalid.
	dtype tensor.DType
}

// configError is an error about config.json.
func configError(format string, args ...any) error {
	return fmt.Errorf("gguf: config.json: %s", fmt.Sprintf(format, args...))
}

// parseConfig reads config.json the way convert_hf_to_gguf does: a nested text_config is merged over the top
// level, and the first present of several alias names wins.
func parseConfig(cfg []byte) (*hparams, error) {
	if len(bytes.TrimSpace(cfg)) == 0 {
		return nil, configError("missing (Options.Config is empty)")
	}
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, configError("%v", err)
	}
	if tc, ok := raw["text_config"].(map[string]any); ok {
		merged := make(map[string]any, len(raw)+len(tc))
		for k, v := range raw {
			merged[k] = v
		}
		for k, v := range tc {
			merged[k] = v
		}
		raw = merged
	}
	hp := &hparams{raw: raw}
	archs, _ := raw["architectures"].([]any)
	if len(archs) == 0 {
		return nil, configError("no architectures list")
	}
	hp.hfArch, _ = archs[0].(string)
	a, ok := archFor(hp.hfArch)
	if !ok {
		return nil, configError("architecture %q is not supported for GGUF export (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM)", hp.hfArch)
	}
	hp.arch = a
	var err error
	req := func(dst *int, names ...string) {
		if err != nil {
			return
		}
		v, ok, e := hp.intParam(names...)
		switch {
		case e != nil:
			err = e
		case !ok:
			err = configError("%s is missing", names[0])
		case v <= 0:
			err = configError("%s = %d", names[0], v)
		default:
			*dst = v
		}
	}
	req(&hp.nLayer, "num_hidden_layers", "n_layers", "n_layer", "num_layers")
	req(&hp.nCtx, "max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length")
	req(&hp.nEmbd, "hidden_size", "n_embd", "dim")
	req(&hp.nFF, "intermediate_size", "n_inner", "hidden_dim")
	req(&hp.nHead, "num_attention_heads", "n_head", "n_heads")
	if err != nil {
		return nil, err
	}
	hp.nHeadKV = hp.nHead
	if v, ok, e := hp.intParam("num_key_value_heads", "n_kv_heads"); e != nil {
		return nil, e
	} else if ok {
		if v <= 0 || hp.nHead%v != 0 {
			return nil, configError("num_key_value_heads = %d does not divide num_attention_heads = %d", v, hp.nHead)
		}
		hp.nHeadKV = v
	}
	if v, ok, e := hp.intParam("vocab_size"); e != nil {
		return nil, e
	} else if ok {
		hp.nVocab = v
	}
	hp.headDim = hp.nEmbd / hp.nHead
	if v, ok, e := hp.intParam("head_dim"); e != nil {
		return nil, e
	} else if ok {
		hp.headDim = v
	} else if a.name == "gemma2" {
		return nil, configError("head_dim is missing")
	}
	if hp.headDim <= 0 || hp.headDim%2 != 0 || hp.headDim > maxHeadDim {
		return nil, configError("head dimension %d", hp.headDim)
	}
	if hp.nLayer > maxLayers {
		return nil, configError("num_hidden_layers = %d (at most %d)", hp.nLayer, maxLayers)
	}
	for _, k := range []string{"torch_dtype", "dtype"} {
		if s, ok := raw[k].(string); ok {
			if d, e := tensor.ParseTorchDType(s); e == nil && d.IsFloat16() {
				hp.dtype = d
			}
			break
		}
	}
	return hp, nil
}

// has reports whether the key is present and not null.
func (hp *hparams) has(name string) bool { v, ok := hp.raw[name]; return ok && v != nil }

// intParam returns the first present of names as an integer.
func (hp *hparams) intParam(names ...string) (int, bool, error) {
	for _, n := range names {
		if !hp.has(n) {
			continue
		}
		num, ok := hp.raw[n].(json.Number)
		if !ok {
			return 0, false, configError("%s is %v, not a number", n, hp.raw[n])
		}
		v, err := strconv.ParseInt(num.String(), 10, 32)
		if err != nil {
			return 0, false, configError("%s = %s is not an integer", n, num)
		}
		return int(v), true, nil
	}
	return 0, false, nil
}

// floatOf converts a JSON number to float64.
func floatOf(v any) (float64, bool) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := num.Float64()
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// floatParam returns the first present of names as a float.
func (hp *hparams) floatParam(names ...string) (float64, bool, error) {
	for _, n := range names {
		if !hp.has(n) {
			continue
		}
		f, ok := floatOf(hp.raw[n])
		if !ok {
			return 0, false, configError("%s is %v, not a number", n, hp.raw[n])
		}
		return f, true, nil
	}
	return 0, false, nil
}

// ropeScaling returns rope_scaling (or the newer rope_parameters) and its type, lower-cased.
func (hp *hparams) ropeScaling() (map[string]any, string) {
	for _, k := range []string{"rope_scaling", "rope_parameters"} {
		if m, ok := hp.raw[k].(map[string]any); ok {
			t, _ := m["rope_type"].(string)
			if t == "" {
				t, _ = m["type"].(string)
			}
			return m, strings.ToLower(t)
		}
	}
	return nil, ""
}

// metadata returns the architecture's KVs in convert_hf_to_gguf's order (general.architecture … file_type …),
// without the tokenizer ones.
func (hp *hparams) metadata(ft FileType, name string) ([]KV, error) {
	a := hp.arch.name
	kvs := []KV{
		{Key: "general.architecture", Value: a},
		{Key: "general.type", Value: "model"},
	}
	if name != "" {
		kvs = append(kvs, KV{Key: "general.name", Value: name})
	}
	add := func(key string, v any) { kvs = append(kvs, KV{Key: key, Value: v}) }
	add(a+".block_count", uint32(hp.nLayer))
	add(a+".context_length", uint32(hp.nCtx))
	add(a+".embedding_length", uint32(hp.nEmbd))
	add(a+".feed_forward_length", uint32(hp.nFF))
	add(a+".attention.head_count", uint32(hp.nHead))
	if a == "gemma2" || hp.has("num_key_value_heads") || hp.has("n_kv_heads") {
		add(a+".attention.head_count_kv", uint32(hp.nHeadKV))
	}
	if a != "gemma2" {
		theta, ok, err := hp.floatParam("rope_theta")
		if err != nil {
			return nil, err
		}
		if !ok {
			if m, _ := hp.ropeScaling(); m != nil {
				theta, ok = floatOf(m["rope_theta"])
			}
		}
		if ok {
			add(a+".rope.freq_base", float32(theta))
		}
	}
	eps, ok, err := hp.floatParam("rms_norm_eps", "norm_eps")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, configError("rms_norm_eps is missing")
	}
	add(a+".attention.layer_norm_rms_epsilon", float32(eps))
	if a == "gemma2" || hp.has("head_dim") {
		add(a+".attention.key_length", uint32(hp.headDim))
		add(a+".attention.value_length", uint32(hp.headDim))
	}
	add("general.file_type", uint32(ft))
	add("general.quantization_version", uint32(2))
	switch a {
	case "llama":
		vs := hp.nVocab
		if vs > 0 {
			add(a+".vocab_size", uint32(vs))
		}
		add(a+".rope.dimension_count", uint32(hp.headDim))
	case "gemma2":
		for _, p := range []struct{ hf, key string }{
			{"attn_logit_softcapping", "attn_logit_softcapping"},
			{"final_logit_softcapping", "final_logit_softcapping"},
		} {
			if v, ok, err := hp.floatParam(p.hf); err != nil {
				return nil, err
			} else if ok {
				add(a+"."+p.key, float32(v))
			}
		}
		if v, ok, err := hp.intParam("sliding_window"); err != nil {
			return nil, err
		} else if ok {
			add(a+".attention.sliding_window", uint32(v))
		}
	}
	if a != "gemma2" {
		scaling, err := hp.ropeScalingKVs()
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, scaling...)
	}
	return kvs, nil
}

// ropeScalingKVs writes linear and YaRN rope scaling as rope.scaling.* keys. llama3 scaling becomes the
// rope_freqs.weight tensor instead (llama only); other types are refused rather than silently dropped.
func (hp *hparams) ropeScalingKVs() ([]KV, error) {
	m, typ := hp.ropeScaling()
	a := hp.arch.name
	switch typ {
	case "", "default":
		return nil, nil
	case "llama3":
		if a != "llama" {
			return nil, configError("rope_type llama3 on %s", hp.hfArch)
		}
		return nil, nil
	case "linear", "yarn":
	default:
		return nil, configError("rope_scaling type %q is not supported for GGUF export (linear, yarn, llama3 are)", typ)
	}
	factor, ok := floatOf(m["factor"])
	if !ok {
		return nil, configError("rope_scaling %s without a numeric factor", typ)
	}
	kvs := []KV{
		{Key: a + ".rope.scaling.type", Value: typ},
		{Key: a + ".rope.scaling.factor", Value: float32(factor)},
	}
	if typ == "yarn" {
		orig, ok := floatOf(m["original_max_position_embeddings"])
		if !ok {
			orig, ok = floatOf(hp.raw["original_max_position_embeddings"])
		}
		if ok {
			kvs = append(kvs, KV{Key: a + ".rope.scaling.original_context_length", Value: uint32(orig)})
		}
		for _, p := range []struct{ key, hf, alt string }{
			{"yarn_ext_factor", "extrapolation_factor", ""},
			{"yarn_attn_factor", "attention_factor", "attn_factor"},
			{"yarn_beta_fast", "beta_fast", ""},
			{"yarn_beta_slow", "beta_slow", ""},
		} {
			v, ok := floatOf(m[p.hf])
			if !ok && p.alt != "" {
				v, ok = floatOf(m[p.alt])
			}
			if ok {
				kvs = append(kvs, KV{Key: a + ".rope.scaling." + p.key, Value: float32(v)})
			}
		}
	}
	return kvs, nil
}

// ropeFreqs computes llama3's rope_freqs.weight (head_dim/2 float32 factors) as LlamaModel does, in float32.
// ok is false when the config has no llama3 rope scaling.
func (hp *hparams) ropeFreqs() (vals []float32, ok bool) {
	m, typ := hp.ropeScaling()
	if typ != "llama3" || hp.arch.name != "llama" {
		return nil, false
	}
	get := func(v any, def float64) float64 {
		if f, ok := floatOf(v); ok {
			return f
		}
		return def
	}
	base := float32(get(hp.raw["rope_theta"], get(m["rope_theta"], 10000))) // newer configs keep it in rope_parameters
	factor := float32(get(m["factor"], 8))
	low := float32(get(m["low_freq_factor"], 1))
	high := float32(get(m["high_freq_factor"], 4))
	oldCtx := float32(get(hp.raw["original_max_position_embeddings"], 8192))
	lowWavelen := oldCtx / low
	highWavelen := oldCtx / high
	dim := hp.headDim
	for k := 0; k < dim; k += 2 {
		e := float32(k) / float32(dim)
		freq := float32(1) / float32(math.Pow(float64(base), float64(e)))
		wavelen := float32(2*math.Pi) / freq
		switch {
		case wavelen < highWavelen:
			vals = append(vals, 1)
		case wavelen > lowWavelen:
			vals = append(vals, factor)
		default:
			smooth := (oldCtx/wavelen - low) / (high - low)
			vals = append(vals, 1/((1-smooth)/factor+smooth))
		}
	}
	return vals, true
}

// ggufName maps an HF tensor name to its GGUF name and block index (-1 outside blocks). drop is true for
// tensors the converter leaves out (rotary inv_freq buffers, Gemma's lm_head).
func (hp *hparams) ggufName(hf string) (name string, bid int, drop bool, err error) {
	if strings.HasSuffix(hf, ".rotary_emb.inv_freq") || strings.HasSuffix(hf, ".attention.masked_bias") || strings.HasSuffix(hf, ".attention.bias") {
		return "", -1, true, nil
	}
	if hp.arch.skipLMHead && hf == "lm_head.weight" {
		return "", -1, true, nil
	}
	base, suffix, ok := cutLast(hf, ".")
	if !ok || (suffix != "weight" && suffix != "bias") {
		return "", -1, false, fmt.Errorf("gguf: cannot map tensor %s to a GGUF name", hf)
	}
	switch base {
	case "model.embed_tokens":
		return "token_embd." + suffix, -1, false, nil
	case "model.norm":
		return "output_norm." + suffix, -1, false, nil
	case "lm_head":
		return "output." + suffix, -1, false, nil
	}
	if rest, ok := strings.CutPrefix(base, "model.layers."); ok {
		n, part, ok := strings.Cut(rest, ".")
		id, err := strconv.Atoi(n)
		if ok && err == nil && id >= 0 && strconv.Itoa(id) == n {
			if g, ok := hp.arch.layerNames[part]; ok {
				if id >= hp.nLayer {
					return "", -1, false, fmt.Errorf("gguf: tensor %s: block %d, but num_hidden_layers is %d", hf, id, hp.nLayer)
				}
				return fmt.Sprintf("blk.%d.%s.%s", id, g, suffix), id, false, nil
			}
		}
	}
	return "", -1, false, fmt.Errorf("gguf: cannot map tensor %s to a GGUF name for %s", hf, hp.hfArch)
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// expectedDims is the ggml shape (ne) llama.cpp's loader expects for a GGUF tensor name, or nil when the name
// is not one this architecture has.
func (hp *hparams) expectedDims(name string, vocab int) []uint64 {
	e, q, kv, ff, hd := uint64(hp.nEmbd), uint64(hp.nHead*hp.headDim), uint64(hp.nHeadKV*hp.headDim), uint64(hp.nFF), uint64(hp.headDim)
	switch name {
	case "token_embd.weight", "output.weight":
		return []uint64{e, uint64(vocab)}
	case "output_norm.weight":
		return []uint64{e}
	case "rope_freqs.weight":
		return []uint64{hd / 2}
	}
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return nil
	}
	_, part, _ := strings.Cut(rest, ".")
	switch part {
	case "attn_norm.weight", "ffn_norm.weight", "post_attention_norm.weight", "post_ffw_norm.weight":
		return []uint64{e}
	case "attn_q_norm.weight", "attn_k_norm.weight":
		return []uint64{hd}
	case "attn_q.weight":
		return []uint64{e, q}
	case "attn_k.weight", "attn_v.weight":
		return []uint64{e, kv}
	case "attn_output.weight":
		return []uint64{q, e}
	case "ffn_gate.weight", "ffn_up.weight":
		return []uint64{e, ff}
	case "ffn_down.weight":
		return []uint64{ff, e}
	case "attn_q.bias":
		return []uint64{q}
	case "attn_k.bias", "attn_v.bias":
		return []uint64{kv}
	case "attn_output.bias", "ffn_down.bias":
		return []uint64{e}
	case "ffn_gate.bias", "ffn_up.bias":
		return []uint64{ff}
	}
	return nil
}

// requiredPerLayer lists the block tensors llama.cpp requires for the architecture (without "blk.N.").
func (hp *hparams) requiredPerLayer() []string {
	req := []string{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
		"ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}
	switch hp.arch.name {
	case "qwen2":
		req = append(req, "attn_q.bias", "attn_k.bias", "attn_v.bias")
	case "qwen3":
		req = append(req, "attn_q_norm.weight", "attn_k_norm.weight")
	case "gemma2":
		req = append(req, "post_attention_norm.weight", "post_ffw_norm.weight")
	}
	return req
}
