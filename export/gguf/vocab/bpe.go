package vocab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// loadBPE is the converter's _set_vocab_gpt2 (get_vocab_base + get_vocab_base_pre + SpecialVocab merges).
func loadBPE(dir string, vocabSize int, sf *sideFiles, opts LoadOptions) (*Vocab, error) {
	path := filepath.Join(dir, fileTokenizer)
	t := sf.tok
	base, err := t.bpeVocab()
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", path, err)
	}
	// tokenizer.vocab: the model's vocab plus the added tokens (an added token's id wins).
	reverse := map[int]string{}
	maxID := -1
	for tok, id := range base {
		if prev, dup := reverse[id]; dup && prev < tok {
			continue // two strings for one id: keep one deterministically
		}
		reverse[id] = tok
		maxID = max(maxID, id)
	}
	addedByContent := map[string]addedToken{}
	addedByID := map[int]addedToken{}
	for _, a := range t.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("vocab: %s: added token %q has negative id %d", path, a.Content, a.ID)
		}
		reverse[a.ID] = a.Content
		addedByContent[a.Content] = a
		addedByID[a.ID] = a
		maxID = max(maxID, a.ID)
	}
	if maxID < 0 {
		return nil, fmt.Errorf("vocab: %s: empty vocabulary", path)
	}
	n := vocabSize
	if n == 0 {
		n = maxID + 1
	}
	if maxID >= maxVocab {
		return nil, fmt.Errorf("vocab: %s: token id %d is implausibly large", path, maxID)
	}
	if maxID >= n {
		return nil, fmt.Errorf("vocab: %s: token id %d does not fit vocab_size %d (config.json)", path, maxID, n)
	}
	pre := opts.Pre
	if pre == "" {
		if pre, err = detectPre(t.PreTokenizer); err != nil {
			return nil, fmt.Errorf("vocab: %s: %w; if llama.cpp knows this tokenizer, name its pre-tokenizer "+
				"with the override (--gguf-pre NAME, e.g. llama-bpe, qwen2, gpt-2)", path, err)
		}
	}
	v := &Vocab{Model: "gpt2", Pre: pre, Tokens: make([]string, n), Types: make([]int32, n)}
	seen := make(map[string]int, n)
	for i := range n {
		tok, ok := reverse[i]
		switch {
		case !ok:
			tok = fmt.Sprintf("[PAD%d]", i)
			v.Types[i] = TypeUnused
		default:
			a, isAdded := addedByContent[tok]
			if !isAdded {
				v.Types[i] = TypeNormal
				break
			}
			if d, ok := addedByID[i]; ok {
				a = d
			}
			if a.Special || looksSpecial(tok) {
				v.Types[i] = TypeControl
			} else {
				tok = strings.ReplaceAll(tok, "▁", " ")
				v.Types[i] = TypeUserDefined
			}
		}
		if j, dup := seen[tok]; dup {
			return nil, fmt.Errorf("vocab: %s: ids %d and %d are both %q (llama.cpp refuses duplicate tokens)",
				path, j, i, tok)
		}
		seen[tok] = i
		v.Tokens[i] = tok
	}
	merges, err := t.merges()
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", path, err)
	}
	if len(merges) == 0 {
		if merges, err = readMergesTxt(filepath.Join(dir, fileMerges)); err != nil {
			return nil, err
		}
	}
	if merges == nil {
		merges = []string{}
	}
	v.Merges = merges
	return v, nil
}

// looksSpecial is the converter's does_token_look_special.
func looksSpecial(t string) bool {
	switch t {
	case "<pad>", "<mask>", "<2mass>", "[@BOS@]":
		return true
	}
	return strings.HasPrefix(t, "<|") && strings.HasSuffix(t, "|>") ||
		strings.HasPrefix(t, "<｜") && strings.HasSuffix(t, "｜>") ||
		strings.HasPrefix(t, "<unused") && strings.HasSuffix(t, ">")
}

// readMergesTxt is gguf-py's merges.txt fallback: an optional leading "#" line, then lines of exactly two
// whitespace-separated fields (others skipped). nil when the file does not exist.
func readMergesTxt(p string) ([]string, error) {
	data, err := readOptional(p)
	if err != nil || data == nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	var out []string
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			first = false
			if strings.HasPrefix(line, "#") {
				continue
			}
		}
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		out = append(out, f[0]+" "+f[1])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", p, err)
	}
	return out, nil
}

// Split regexes of the pre-tokenizers llama.cpp knows, as they appear in tokenizer.json (llama-vocab.cpp quotes
// each as the "original regex from tokenizer.json" of the pre type it implements).
const (
	reLlama3  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reQwen2   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reQwen35  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reTekken  = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reGPT4o   = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reSeed    = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`
	reBailing = `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`
)

// splitPre maps a single Split regex (followed by a ByteLevel pre-tokenizer without its own regex) to the
// llama.cpp pre name. Names that share one regex in llama.cpp (llama-bpe, dbrx, smaug, chatglm-bpe; qwen2,
// stablelm2, hunyuan, deepseek-r1-qwen) tokenize identically; the most common one is chosen.
var splitPre = map[string]string{
	reLlama3:  "llama-bpe",
	reQwen2:   "qwen2",
	reQwen35:  "qwen35",
	reTekken:  "tekken",
	reGPT4o:   "gpt-4o",
	reSeed:    "seed-coder",
	reBailing: "bailingmoe",
}

// preStep is one pre-tokenizer of a (flattened) Sequence.
type preStep struct {
	Type          string            `json:"type"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Pattern       struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior         string `json:"behavior"`
	Invert           bool   `json:"invert"`
	UseRegex         *bool  `json:"use_regex"`
	IndividualDigits bool   `json:"individual_digits"`
}

func flattenPre(raw json.RawMessage, out *[]preStep, depth int) error {
	if depth > 8 {
		return fmt.Errorf("pre_tokenizer nested too deeply")
	}
	var s preStep
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	if s.Type == "Sequence" {
		for _, p := range s.Pretokenizers {
			if err := flattenPre(p, out, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	*out = append(*out, s)
	return nil
}

// detectPre recognises the pre-tokenizer the way a reader of llama-vocab.cpp would: by the Split regex (the
// converter itself hashes a tokenization, which needs the HF tokenizer).
func detectPre(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", fmt.Errorf("no pre_tokenizer, so the llama.cpp pre-tokenizer cannot be recognised")
	}
	var steps []preStep
	if err := flattenPre(raw, &steps, 0); err != nil {
		return "", err
	}
	var splits, others []string
	byteLevelRegex, byteLevel, digits := false, false, false
	for _, s := range steps {
		switch s.Type {
		case "Split":
			switch {
			case s.Pattern.Regex != nil:
				splits = append(splits, *s.Pattern.Regex)
			case s.Pattern.String != nil:
				splits = append(splits, "string:"+*s.Pattern.String)
			}
			if s.Invert || s.Behavior != "Isolated" {
				others = append(others, fmt.Sprintf("Split(behavior %s, invert %v)", s.Behavior, s.Invert))
			}
		case "ByteLevel":
			byteLevel = true
			byteLevelRegex = byteLevelRegex || s.UseRegex == nil || *s.UseRegex
		case "Digits":
			if !s.IndividualDigits {
				others = append(others, "Digits(individual_digits false)")
			}
			digits = true
		default:
			others = append(others, s.Type)
		}
	}
	switch {
	case len(others) > 0 || !byteLevel:
	case len(splits) == 1 && !byteLevelRegex && !digits:
		if name, ok := splitPre[splits[0]]; ok {
			return name, nil
		}
	case len(splits) == 0 && byteLevelRegex && !digits:
		return "gpt-2", nil // ByteLevel's built-in regex is GPT-2's
	case len(splits) == 0 && byteLevelRegex && digits:
		return "starcoder", nil // single digits, then GPT-2's regex (also refact, smollm, command-r, …)
	}
	desc := slices.Clone(splits)
	for i, s := range desc {
		desc[i] = fmt.Sprintf("%q", s)
	}
	kinds := make([]string, len(steps))
	for i, s := range steps {
		kinds[i] = s.Type
	}
	return "", fmt.Errorf("pre-tokenizer not recognised (steps %s, split regexes [%s])",
		strings.Join(kinds, ", "), strings.Join(desc, ", "))
}
