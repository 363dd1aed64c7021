package vocab

import (
	"cmp"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
)

var bytePiece = regexp.MustCompile(`^<0x[0-9A-Fa-f]{2}>$`)

// loadLlamaHF is gguf-py's LlamaHfVocab (a Llama-2 style BPE tokenizer.json with byte fallback): the model's
// vocab in id order, then the added tokens past it; every score −1000; <0xNN> pieces BYTE, the tokenizer's
// special tokens CONTROL, other added tokens USER_DEFINED. The converter writes exactly the tokenizer's size;
// when config.json's vocab_size is larger the tail is filled with [PAD{id}] UNUSED entries so that the token
// list matches the embedding rows.
func loadLlamaHF(dir string, vocabSize int, sf *sideFiles) (*Vocab, error) {
	path := filepath.Join(dir, fileTokenizer)
	base, err := sf.tok.bpeVocab()
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", path, err)
	}
	reverse := map[int]string{}
	for tok, id := range base {
		if prev, dup := reverse[id]; !dup || tok < prev {
			reverse[id] = tok
		}
	}
	nBase := len(base)
	for id := range nBase {
		if _, ok := reverse[id]; !ok {
			return nil, fmt.Errorf("vocab: %s: model.vocab has %d tokens but no id %d", path, nBase, id)
		}
	}
	// Special tokens (transformers' all_special_tokens): tokenizer_config / special_tokens_map entries.
	specialText := map[string]bool{}
	for _, m := range []map[string]any{sf.cfg, sf.stm} {
		for _, k := range []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
			"mask_token"} {
			if c, ok := tokenContent(m[k]); ok {
				specialText[c] = true
			}
		}
		if l, ok := m["additional_special_tokens"].([]any); ok {
			for _, e := range l {
				if c, ok := tokenContent(e); ok {
					specialText[c] = true
				}
			}
		}
	}
	var extra []addedToken
	for _, a := range sf.tok.AddedTokens {
		if a.ID >= nBase {
			extra = append(extra, a)
		}
		if a.ID < nBase {
			reverse[a.ID] = a.Content
		}
	}
	slices.SortFunc(extra, func(a, b addedToken) int { return cmp.Compare(a.ID, b.ID) })
	for i, a := range extra {
		if a.ID != nBase+i {
			return nil, fmt.Errorf("vocab: %s: added token %q has id %d, want %d (added ids must follow the "+
				"model's vocab without gaps)", path, a.Content, a.ID, nBase+i)
		}
	}
	total := nBase + len(extra)
	n := max(total, vocabSize)
	if vocabSize > 0 && total > vocabSize {
		return nil, fmt.Errorf("vocab: %s: %d tokens do not fit vocab_size %d (config.json)", path, total, vocabSize)
	}
	v := &Vocab{Model: "llama", Pre: "default", Tokens: make([]string, n), Scores: make([]float32, n),
		Types: make([]int32, n)}
	for i := range n {
		var tok string
		typ := TypeNormal
		switch {
		case i < nBase:
			tok = reverse[i]
			if bytePiece.MatchString(tok) {
				typ = TypeByte
			} else if specialText[tok] {
				typ = TypeControl
			}
		case i < total:
			tok = extra[i-nBase].Content
			typ = TypeUserDefined
			if specialText[tok] {
				typ = TypeControl
			}
		default:
			tok, typ = fmt.Sprintf("[PAD%d]", i), TypeUnused
		}
		v.Tokens[i], v.Scores[i], v.Types[i] = tok, -1000, typ
	}
	return v, nil
}
