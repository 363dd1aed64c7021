// Package vocab reads a Hugging Face tokenizer (tokenizer.json byte-level BPE, or a SentencePiece
// tokenizer.model, plus tokenizer_config.json and the other side files) into the token list and special-token
// settings a GGUF file stores under tokenizer.*, choosing them as llama.cpp's convert_hf_to_gguf does.
//
// The three paths, tried in the order llama.cpp's LlamaModel.set_vocab tries them:
//   - tokenizer.model (SentencePiece protobuf) → Model "llama", Pre "default", scores and piece types;
//   - tokenizer.json BPE with byte_fallback and a Sequence decoder (Llama-2 saved by transformers only) →
//     Model "llama" by gguf-py's LlamaHfVocab rules (every score −1000);
//   - tokenizer.json byte-level BPE → Model "gpt2", with the pre-tokenizer name recognised from the
//     pre_tokenizer's Split regexes (llama.cpp's converter hashes a tokenization instead; see
//     docs/gguf-tokenizers.md) or given by LoadOptions.Pre.
package vocab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

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
	// Merges are the BPE merges, "a b" each (nil for SentencePiece; never nil, possibly empty, for "gpt2",
	// since llama.cpp refuses a gpt2 vocab without the key).
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

// LoadOptions adjusts Load.
type LoadOptions struct {
	// Pre, when set, is written as tokenizer.ggml.pre for a byte-level BPE tokenizer instead of the name
	// recognised from tokenizer.json (the --gguf-pre override). It is not checked here: llama.cpp refuses a
	// name it does not know when it loads the file.
	Pre string
	// Arch is the model's config.json model_type ("" reads it from dir/config.json). It selects the
	// converter class whose set_vocab is followed: qwen2/qwen3 (Qwen2Model: no LlamaHfVocab path, no
	// add_space_prefix from tokenizer_config.json), gemma/gemma2/gemma3 (add_space_prefix false for
	// tokenizer.model; without one, the gpt2 path as Gemma3Model takes it), anything else LlamaModel (Llama, Mistral).
	Arch string
	// ModelDir is where config.json (special-token ids, model_type) is read from when the tokenizer comes from
	// another directory, such as an adapter checkpoint's tokenizer with the base model's config ("" = dir).
	ModelDir string
	// Config, when set, is the model's config.json itself (for a merge: the merged config, which may exist on no
	// disk); it takes precedence over ModelDir's file.
	Config []byte
}

// family is the converter's set_vocab variant for a model_type.
type family int

const (
	familyLlama family = iota // LlamaModel: tokenizer.model, else LlamaHfVocab, else gpt2
	familyQwen2               // Qwen2Model: tokenizer.model, else gpt2
	familyGemma               // Gemma*Model: tokenizer.model with add_space_prefix false, else gpt2 (as Gemma3Model)
)

func familyOf(arch string) family {
	switch arch {
	case "qwen2", "qwen2_moe", "qwen3", "qwen3_moe":
		return familyQwen2
	case "gemma", "gemma2", "gemma3", "gemma3_text":
		return familyGemma
	}
	return familyLlama
}

// maxVocab bounds the token ids accepted from a file (the largest real vocabularies have a few hundred thousand ids).
const maxVocab = 1 << 20

// Files Load looks for, in the order it tries them.
const (
	fileSPM       = "tokenizer.model"
	fileTokenizer = "tokenizer.json"
	fileConfig    = "tokenizer_config.json"
	fileAdded     = "added_tokens.json"
	fileMerges    = "merges.txt"
	fileModelCfg  = "config.json"
)

// Load reads the tokenizer in dir for a model whose config.json says vocab_size (0: the tokenizer's own size);
// config.json itself is read from dir too (see LoadOptions.ModelDir).
// Errors name the file and the problem (no tokenizer at all, an unknown pre-tokenizer, a malformed file).
func Load(dir string, vocabSize int) (*Vocab, error) {
	return LoadWith(dir, vocabSize, LoadOptions{})
}

// LoadWith is Load with options.
func LoadWith(dir string, vocabSize int, opts LoadOptions) (*Vocab, error) {
	if vocabSize < 0 || vocabSize > maxVocab {
		return nil, fmt.Errorf("vocab: vocab_size %d out of range", vocabSize)
	}
	side, err := loadSideFiles(dir, opts.ModelDir, opts.Config)
	if err != nil {
		return nil, err
	}
	arch := opts.Arch
	if arch == "" {
		arch, _ = side.model["model_type"].(string)
	}
	fam := familyOf(arch)
	var v *Vocab
	switch {
	case isFile(filepath.Join(dir, fileSPM)):
		v, err = loadSentencePiece(dir, vocabSize, side)
	case fam == familyLlama && side.tok != nil && side.tok.isLlamaHF():
		v, err = loadLlamaHF(dir, vocabSize, side)
	case side.tok != nil:
		v, err = loadBPE(dir, vocabSize, side, opts)
	default:
		return nil, fmt.Errorf("vocab: no tokenizer in %s (looked for %s and %s)", dir, fileSPM, fileTokenizer)
	}
	if err != nil {
		return nil, err
	}
	if err := side.applySpecial(v, fam); err != nil {
		return nil, err
	}
	return v, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// readOptional reads a file, returning nil and no error when it does not exist.
func readOptional(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vocab: %w", err)
	}
	return b, nil
}

func boolPtr(b bool) *bool { return &b }

// sortedKeys returns m's keys in order (so that a map-driven pass is deterministic).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
