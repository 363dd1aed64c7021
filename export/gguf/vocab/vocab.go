// Package vocab reads a Hugging Face tokenizer (tokenizer.json byte-level BPE, or a SentencePiece
// tokenizer.model, plus tokenizer_config.json and the other side files) into the token list and special-token
// settings a GGUF file stores under tokenizer.*, choosing them as llama.cpp's convert_hf_to_gguf does.
package vocab

import "errors"

// Token types (SentencePiece piece types, llama.cpp's llama_token_type).
const (
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// Vocab is what a GGUF file's tokenizer.* keys hold.
type Vocab struct {
	// Model is tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
	Model string
	// Pre is tokenizer.ggml.pre ("llama-bpe", "qwen2", … for BPE; "default" for SentencePiece).
	Pre string
	// Tokens, Types (and for SentencePiece Scores) are indexed by token id; their length is the model's
	// vocab_size.
	Tokens []string
	Scores []float32
	Types  []int32
	// Merges are the BPE merges, "a b" each (nil for SentencePiece).
	Merges []string
	// Special maps a special-token kind to its id: "bos", "eos", "unknown", "padding", "seperator" (sic, as
	// llama.cpp spells the key), "mask", "eot", "eom". The GGUF key is tokenizer.ggml.<kind>_token_id.
	Special map[string]uint32
	// AddBOS, AddEOS and AddSpacePrefix are written only when set.
	AddBOS, AddEOS, AddSpacePrefix *bool
	// ChatTemplate is tokenizer.chat_template ("" leaves it out); NamedTemplates are the extra named ones.
	ChatTemplate   string
	NamedTemplates map[string]string
}

// Load reads the tokenizer in dir for a model whose config.json says vocab_size (0: the tokenizer's own size).
// Errors name the file and the problem (no tokenizer at all, an unknown pre-tokenizer, a malformed file).
func Load(dir string, vocabSize int) (*Vocab, error) {
	return nil, errors.New("vocab: not implemented yet")
}
