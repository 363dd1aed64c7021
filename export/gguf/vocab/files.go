package vocab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	Normalized *bool  `json:"normalized"`
}

// tokenizerJSON is the part of a Hugging Face tokenizers tokenizer.json that the converter reads.
type tokenizerJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        json.RawMessage `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		IgnoreMerges bool            `json:"ignore_merges"`
	} `json:"model"`
}

// typeOf returns the "type" member of a JSON object ("" for null, absent or not an object).
func typeOf(raw json.RawMessage) string {
	var t struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &t) != nil {
		return ""
	}
	return t.Type
}

// isLlamaHF reports whether the converter would take gguf-py's LlamaHfVocab path: a BPE model with byte
// fallback and a Sequence decoder (Llama-2 and Mistral saved by transformers without tokenizer.model).
func (t *tokenizerJSON) isLlamaHF() bool {
	return t.Model.Type == "BPE" && t.Model.ByteFallback && typeOf(t.Decoder) == "Sequence"
}

// parseTokenizerJSON decodes tokenizer.json. Model.Vocab is left raw (a map for BPE, a list for Unigram).
func parseTokenizerJSON(data []byte) (*tokenizerJSON, error) {
	var t tokenizerJSON
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// bpeVocab decodes a BPE model's vocab map (token → id).
func (t *tokenizerJSON) bpeVocab() (map[string]int, error) {
	if t.Model.Type != "BPE" {
		return nil, fmt.Errorf("model type %q is not supported (want BPE)", t.Model.Type)
	}
	var m map[string]int
	if err := json.Unmarshal(t.Model.Vocab, &m); err != nil {
		return nil, fmt.Errorf("model.vocab: %w", err)
	}
	for tok, id := range m {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab: token %q has negative id %d", tok, id)
		}
	}
	return m, nil
}

// merges returns model.merges in the converter's "a b" form: the old list of strings is kept as is; the list of
// pairs (transformers ≥ 4.45) is joined with one space, a space inside a part written as U+0120. nil when absent
// or empty.
func (t *tokenizerJSON) merges() ([]string, error) {
	raw := bytes.TrimSpace(t.Model.Merges)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("model.merges: %w", err)
	}
	if len(items) == 0 {
		return nil, nil
	}
	var s string
	if json.Unmarshal(items[0], &s) == nil {
		var out []string
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("model.merges: mixed formats: %w", err)
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: neither strings nor pairs of strings: %w", err)
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: %d parts, want 2", i, len(p))
		}
		out[i] = spaceToG(p[0]) + " " + spaceToG(p[1])
	}
	return out, nil
}

// spaceToG writes each space as U+0120 (chr(ord(' ')+256)), as gguf-py does for pair-format merges.
func spaceToG(s string) string {
	b := []rune(s)
	for i, r := range b {
		if r == ' ' {
			b[i] = 'Ġ'
		}
	}
	return string(b)
}

// sideFiles are the JSON files next to the tokenizer, decoded once.
type sideFiles struct {
	dir      string         // the tokenizer's directory
	modelDir string         // where config.json is read from
	tok      *tokenizerJSON // tokenizer.json, nil when absent
	// cfg is tokenizer_config.json decoded as generic JSON (numbers as json.Number), nil when absent.
	cfg map[string]any
	// model is config.json, nil when absent.
	model map[string]any
	// stm is special_tokens_map.json, nil when absent.
	stm map[string]any
}

// loadSideFiles reads the files next to the tokenizer in dir, and config.json from modelDir ("" = dir) unless
// config holds its contents.
func loadSideFiles(dir, modelDir string, config []byte) (*sideFiles, error) {
	if modelDir == "" {
		modelDir = dir
	}
	s := &sideFiles{dir: dir, modelDir: modelDir}
	data, err := readOptional(filepath.Join(dir, fileTokenizer))
	if err != nil {
		return nil, err
	}
	if data != nil {
		if s.tok, err = parseTokenizerJSON(data); err != nil {
			return nil, fmt.Errorf("vocab: %s: %w", filepath.Join(dir, fileTokenizer), err)
		}
	}
	for _, f := range []struct {
		dir, name string
		dst       *map[string]any
	}{{dir, fileConfig, &s.cfg}, {modelDir, fileModelCfg, &s.model}, {dir, "special_tokens_map.json", &s.stm}} {
		m, err := readJSONObject(filepath.Join(f.dir, f.name))
		if err != nil {
			return nil, err
		}
		*f.dst = m
	}
	if config != nil {
		m, err := decodeObject(config)
		if err != nil {
			return nil, fmt.Errorf("vocab: config.json: %w", err)
		}
		s.model = m
	}
	return s, nil
}

// readJSONObject decodes a JSON object file with numbers as json.Number; nil when the file does not exist.
func readJSONObject(p string) (map[string]any, error) {
	data, err := readOptional(p)
	if err != nil || data == nil {
		return nil, err
	}
	m, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", p, err)
	}
	return m, nil
}

func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

// jsonInt returns v as an int when it is a JSON integer (Python's isinstance(v, int), bools excluded).
func jsonInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	if err != nil || i != int64(int(i)) {
		return 0, false
	}
	return int(i), true
}

// tokenContent returns a special-token entry's text: the string itself, or the "content" of an AddedToken
// object.
func tokenContent(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case map[string]any:
		c, ok := t["content"].(string)
		return c, ok
	}
	return "", false
}
