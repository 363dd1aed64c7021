package testmodel

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
)

// Arch is a model architecture family (config.json model_type).
type Arch string

// The architectures the generator writes (model-formats.md §7).
const (
	ArchLlama   Arch = "llama"
	ArchQwen2   Arch = "qwen2"
	ArchMistral Arch = "mistral"
	// ArchQwen3 is Qwen2 without attention biases and with per-head RMSNorms on queries and keys
	// (self_attn.q_norm / k_norm).
	ArchQwen3 Arch = "qwen3"
	// ArchGemma2 has tied embeddings scaled by sqrt(hidden), (1+w) RMSNorms before and after attention and the
	// MLP, a GeLU-tanh gated MLP and tanh soft-capping of attention scores and logits.
	ArchGemma2 Arch = "gemma2"
)

// Quant is how the base's linear weights are stored.
type Quant string

// Base storage kinds: plain 16/32-bit, or bitsandbytes 4-bit NF4 / FP4.
const (
	QuantNone Quant = "none"
	QuantNF4  Quant = "nf4"
	QuantFP4  Quant = "fp4"
)

// BaseSpec describes a base model to generate. Zero fields take the defaults documented on each field.
type BaseSpec struct {
	Arch         Arch // llama (default), qwen2, mistral, qwen3 or gemma2
	Hidden       int  // hidden_size
	Intermediate int  // intermediate_size
	Layers       int  // num_hidden_layers
	Heads        int  // num_attention_heads
	KVHeads      int  // num_key_value_heads (default Heads)
	HeadDim      int  // head_dim (default Hidden/Heads; written to config.json when it differs)
	Vocab        int  // vocab_size

	// Tied writes no lm_head.weight (tie_word_embeddings=true).
	Tied bool
	// Bias adds attention biases: q/k/v for qwen2 (always Qwen2-style), q/k/v/o for llama (attention_bias=true, as
	// transformers' LlamaAttention does). Mistral has no bias option.
	Bias bool

	// DType is the 16-bit base's dtype, and the quant_state dtype of a 4-bit base: BF16 (default), F16 or F32.
	DType tensor.DType
	// Quant is none (default), nf4 or fp4. 4-bit applies to q/k/v/o/gate/up/down minus SkipModules.
	Quant Quant
	// DoubleQuant quantizes the absmax statistics (bnb_4bit_use_double_quant).
	DoubleQuant bool
	// Blocksize is the 4-bit block size, a power of two in 32..4096 (default 64).
	Blocksize int
	// QuantStorage is bnb_4bit_quant_storage: U8 (default), or F16/BF16/F32 (packed bytes reinterpreted, weight
	// shape [(n+1)/(2*itemsize), 1]; ceil(n/2) must then be a multiple of the item size).
	QuantStorage tensor.DType
	// SkipModules are kept 16-bit (llm_int8_skip_modules): a module is skipped when its path contains one of
	// these strings, as transformers' replace_with_bnb_linear tests it.
	SkipModules []string
	// FanInFanOut stores the attention and MLP weights transposed, [in, out] (GPT-2 Conv1D style; lm_head stays
	// a plain [out, in] Linear). 16-bit bases only.
	FanInFanOut bool

	// Seed makes the random weights reproducible.
	Seed int64
	// ShardSize splits the weights into model-0000K-of-0000N.safetensors files of at most this many data bytes
	// (huggingface_hub's greedy algorithm, a 4-bit weight's components kept together); 0 writes one file.
	ShardSize int64
	// FastRandomCodes writes random packed codes and random plausible absmax directly instead of quantizing
	// random floats, and cheap approximate-normal 16-bit values (benchmark mode: valid files, written fast).
	FastRandomCodes bool

	// Llama3Rope writes Llama 3.1's rope_scaling (rope_type llama3, factor 8, low_freq_factor 1,
	// high_freq_factor 4, original_max_position_embeddings 8192). Llama only.
	Llama3Rope bool

	// Tokenizer selects the tokenizer files: the fake one (zero value), or a small real byte-level BPE
	// (TokenizerLlama3, TokenizerQwen2) or SentencePiece (TokenizerSPM) tokenizer; Vocab must cover
	// Tokenizer.Size().
	Tokenizer TokenizerKind

	RopeTheta             float64 // default per architecture
	RMSNormEps            float64 // default per architecture
	MaxPositionEmbeddings int     // default 2048
}

// Tiny is a small model of the given architecture: 2 layers, hidden 40, intermediate 100, 4 heads of 10, 2 KV
// heads, vocab 131 (so some tensors end in a partial 64-block), NF4 with double quant, block size 64, bf16.
// Qwen2 gets q/k/v biases and tied embeddings, like the small Qwen2 models.
func Tiny(arch Arch) BaseSpec {
	s := BaseSpec{Arch: arch, Hidden: 40, Intermediate: 100, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 10,
		Vocab: 131, DType: tensor.BF16, Quant: QuantNF4, DoubleQuant: true, Blocksize: 64, Seed: 1}
	if arch == ArchQwen2 {
		s.Bias, s.Tied = true, true
	}
	return s
}

// Awkward is a small model with shapes chosen to hit every edge: hidden 25 and intermediate 37 (gate/up/down have
// 925 elements: odd, so the last low nibble is padding, and a partial last block), head_dim 6 that is not
// hidden/heads, one KV head. NF4 with double quant, block size 64, bf16.
func Awkward(arch Arch) BaseSpec {
	s := BaseSpec{Arch: arch, Hidden: 25, Intermediate: 37, Layers: 2, Heads: 4, KVHeads: 1, HeadDim: 6,
		Vocab: 97, DType: tensor.BF16, Quant: QuantNF4, DoubleQuant: true, Blocksize: 64, Seed: 2}
	if arch == ArchQwen2 {
		s.Bias = true
	}
	return s
}

// TinyLlama is TinyLlama-1.1B's shape as unsloth's bnb-4bit repo stores it: 22 layers, hidden 2048, intermediate
// 5632, 32 heads, 4 KV heads, vocab 32000, untied, NF4 with double quant, block size 64, bf16.
func TinyLlama() BaseSpec {
	return BaseSpec{Arch: ArchLlama, Hidden: 2048, Intermediate: 5632, Layers: 22, Heads: 32, KVHeads: 4,
		Vocab: 32000, DType: tensor.BF16, Quant: QuantNF4, DoubleQuant: true, Blocksize: 64, Seed: 1,
		RopeTheta: 10000, RMSNormEps: 1e-5, MaxPositionEmbeddings: 2048}
}

// Llama3_8B is Llama-3-8B's shape (model-formats.md §7.2): hidden 4096, intermediate 14336, 32 layers, 32 heads,
// 8 KV heads, head_dim 128, vocab 128256, untied, NF4 with double quant, block size 64, bf16.
func Llama3_8B() BaseSpec {
	return BaseSpec{Arch: ArchLlama, Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8,
		HeadDim: 128, Vocab: 128256, DType: tensor.BF16, Quant: QuantNF4, DoubleQuant: true, Blocksize: 64,
		Seed: 1, RopeTheta: 500000, RMSNormEps: 1e-5, MaxPositionEmbeddings: 8192}
}

// GGUFSmall is a small 16-bit model whose every matrix row is a multiple of 256 elements, so that every GGUF type
// (the k-quants' 256-element blocks included) holds every tensor: 2 layers, hidden 256, intermediate 768, 4 heads
// of 64, 2 KV heads, vocab 1024 (room for the test tokenizers), bf16. Qwen2 gets q/k/v biases, and qwen2, qwen3
// and gemma2 tied embeddings, as their small models have.
func GGUFSmall(arch Arch) BaseSpec {
	s := BaseSpec{Arch: arch, Hidden: 256, Intermediate: 768, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 64,
		Vocab: 1024, DType: tensor.BF16, Seed: 7}
	switch arch {
	case ArchQwen2:
		s.Bias, s.Tied = true, true
	case ArchQwen3, ArchGemma2:
		s.Tied = true
	}
	return s
}

// normalize fills defaults and validates the spec.
func (s BaseSpec) normalize() (BaseSpec, error) {
	if s.Arch == "" {
		s.Arch = ArchLlama
	}
	if s.Quant == "" {
		s.Quant = QuantNone
	}
	if s.DType == tensor.Invalid {
		s.DType = tensor.BF16
	}
	if s.QuantStorage == tensor.Invalid {
		s.QuantStorage = tensor.U8
	}
	if s.Blocksize == 0 {
		s.Blocksize = 64
	}
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	if s.HeadDim == 0 && s.Heads > 0 {
		if s.Hidden%s.Heads != 0 {
			return s, fmt.Errorf("testmodel: hidden %d is not a multiple of %d heads; set HeadDim", s.Hidden, s.Heads)
		}
		s.HeadDim = s.Hidden / s.Heads
	}
	if s.MaxPositionEmbeddings == 0 {
		s.MaxPositionEmbeddings = 2048
	}
	if s.RMSNormEps == 0 {
		s.RMSNormEps = 1e-5
		if s.Arch == ArchQwen2 || s.Arch == ArchQwen3 || s.Arch == ArchGemma2 {
			s.RMSNormEps = 1e-6
		}
	}
	if s.RopeTheta == 0 {
		s.RopeTheta = 10000
		if s.Arch == ArchQwen2 || s.Arch == ArchQwen3 || s.Arch == ArchMistral {
			s.RopeTheta = 1000000
		}
	}
	s.SkipModules = slices.Clone(s.SkipModules)
	switch s.Arch {
	case ArchLlama, ArchQwen2, ArchMistral, ArchQwen3, ArchGemma2:
	default:
		return s, fmt.Errorf("testmodel: unknown architecture %q (want llama, qwen2, mistral, qwen3 or gemma2)",
			s.Arch)
	}
	if s.Hidden <= 0 || s.Intermediate <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.KVHeads <= 0 || s.HeadDim <= 0 ||
		s.Vocab <= 0 {
		return s, fmt.Errorf("testmodel: every dimension must be positive (hidden %d, intermediate %d, layers %d, "+
			"heads %d, kv heads %d, head_dim %d, vocab %d)", s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads,
			s.HeadDim, s.Vocab)
	}
	if s.Heads%s.KVHeads != 0 {
		return s, fmt.Errorf("testmodel: %d heads are not a multiple of %d KV heads", s.Heads, s.KVHeads)
	}
	switch s.DType {
	case tensor.BF16, tensor.F16, tensor.F32:
	default:
		return s, fmt.Errorf("testmodel: base dtype must be BF16, F16 or F32, not %s", s.DType)
	}
	switch s.Quant {
	case QuantNone, QuantNF4, QuantFP4:
	default:
		return s, fmt.Errorf("testmodel: unknown quantization %q (want none, nf4 or fp4)", s.Quant)
	}
	if s.Blocksize < 32 || s.Blocksize > 4096 || s.Blocksize&(s.Blocksize-1) != 0 {
		return s, fmt.Errorf("testmodel: block size %d is not a power of two in 32..4096", s.Blocksize)
	}
	switch s.QuantStorage {
	case tensor.U8, tensor.F16, tensor.BF16, tensor.F32:
	default:
		return s, fmt.Errorf("testmodel: quant storage must be U8, F16, BF16 or F32, not %s", s.QuantStorage)
	}
	if s.Bias && (s.Arch == ArchMistral || s.Arch == ArchQwen3 || s.Arch == ArchGemma2) {
		return s, fmt.Errorf("testmodel: %s has no attention bias option", s.Arch)
	}
	if s.Arch == ArchGemma2 && !s.Tied {
		return s, fmt.Errorf("testmodel: gemma2 always ties its embeddings (set Tied)")
	}
	if s.Llama3Rope && s.Arch != ArchLlama {
		return s, fmt.Errorf("testmodel: llama3 rope scaling is for llama only")
	}
	if s.Quant != QuantNone && s.FanInFanOut {
		return s, fmt.Errorf("testmodel: FanInFanOut (Conv1D-style [in,out] weights) is only for 16-bit bases")
	}
	if s.Quant == QuantNone && s.DoubleQuant {
		return s, fmt.Errorf("testmodel: DoubleQuant needs a 4-bit base")
	}
	if s.ShardSize < 0 {
		return s, fmt.Errorf("testmodel: negative shard size %d", s.ShardSize)
	}
	return s, nil
}

// architecture is the config.json "architectures" entry.
func (a Arch) architecture() string {
	switch a {
	case ArchQwen2:
		return "Qwen2ForCausalLM"
	case ArchMistral:
		return "MistralForCausalLM"
	case ArchQwen3:
		return "Qwen3ForCausalLM"
	case ArchGemma2:
		return "Gemma2ForCausalLM"
	}
	return "LlamaForCausalLM"
}

// tokenizerFamily is the architecture whose test tokenizer a model gets: qwen3 shares qwen2's, gemma2 llama's,
// the others their own.
func (a Arch) tokenizerFamily() Arch {
	switch a {
	case ArchQwen3:
		return ArchQwen2
	case ArchGemma2:
		return ArchLlama
	}
	return a
}

// ModuleKind says what kind of module a Module is.
type ModuleKind int

// Module kinds.
const (
	KindLinear ModuleKind = iota
	KindEmbedding
	KindNorm
)

// Module is one module of the base that owns a weight: linear layers, the embedding, RMSNorms and lm_head.
type Module struct {
	Path      string     // module path, e.g. model.layers.0.self_attn.q_proj
	Kind      ModuleKind // linear, embedding or norm
	In, Out   int64      // linear: in/out features; embedding: In = num_embeddings, Out = embedding_dim; norm: Out
	Bias      bool       // the module has a bias (<path>.bias)
	Quantized bool       // the weight is stored 4-bit
}

// WeightName is the checkpoint key of the module's weight.
func (m Module) WeightName() string { return m.Path + ".weight" }

// modules lists the base's modules in model (state-dict) order.
func (s BaseSpec) modules() []Module {
	h, inter := int64(s.Hidden), int64(s.Intermediate)
	qd, kvd := int64(s.Heads*s.HeadDim), int64(s.KVHeads*s.HeadDim)
	attnBias := s.Bias
	var mods []Module
	mods = append(mods, Module{Path: "model.embed_tokens", Kind: KindEmbedding, In: int64(s.Vocab), Out: h})
	for l := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		lin := func(name string, in, out int64, bias bool) {
			mods = append(mods, Module{Path: p + name, Kind: KindLinear, In: in, Out: out, Bias: bias})
		}
		lin("self_attn.q_proj", h, qd, attnBias)
		lin("self_attn.k_proj", h, kvd, attnBias)
		lin("self_attn.v_proj", h, kvd, attnBias)
		lin("self_attn.o_proj", qd, h, attnBias && s.Arch == ArchLlama)
		if s.Arch == ArchQwen3 {
			hd := int64(s.HeadDim)
			mods = append(mods, Module{Path: p + "self_attn.q_norm", Kind: KindNorm, Out: hd},
				Module{Path: p + "self_attn.k_norm", Kind: KindNorm, Out: hd})
		}
		lin("mlp.gate_proj", h, inter, false)
		lin("mlp.up_proj", h, inter, false)
		lin("mlp.down_proj", inter, h, false)
		mods = append(mods, Module{Path: p + "input_layernorm", Kind: KindNorm, Out: h},
			Module{Path: p + "post_attention_layernorm", Kind: KindNorm, Out: h})
		if s.Arch == ArchGemma2 {
			mods = append(mods, Module{Path: p + "pre_feedforward_layernorm", Kind: KindNorm, Out: h},
				Module{Path: p + "post_feedforward_layernorm", Kind: KindNorm, Out: h})
		}
	}
	mods = append(mods, Module{Path: "model.norm", Kind: KindNorm, Out: h})
	if !s.Tied {
		mods = append(mods, Module{Path: "lm_head", Kind: KindLinear, In: h, Out: int64(s.Vocab)})
	}
	if s.Quant != QuantNone {
		for i := range mods {
			m := &mods[i]
			if m.Kind == KindLinear && m.Path != "lm_head" && !skipped(m.Path, s.SkipModules) {
				m.Quantized = true
			}
		}
	}
	return mods
}

// skipped reports whether a module path is listed in llm_int8_skip_modules (substring test, as transformers v4).
func skipped(path string, skip []string) bool {
	for _, k := range skip {
		if k != "" && strings.Contains(path, k) {
			return true
		}
	}
	return false
}
