package testmodel

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// TokenizerKind selects the tokenizer files a generated base (and its checkpoints) carry.
type TokenizerKind string

// Tokenizer kinds. The zero value is the small fake tokenizer every test used before (its files, and so stored
// hashes, are unchanged); the others are small but real tokenizers whose merges are learned deterministically
// from an embedded sample text, for tests that compare tokenizations with llama.cpp.
const (
	// TokenizerFake is a fake byte-level BPE tokenizer.json without merges ("tok<i>" tokens).
	TokenizerFake TokenizerKind = ""
	// TokenizerLlama3 is a Llama-3 style byte-level BPE tokenizer.json: the Llama-3 Split regex (digits in
	// groups of up to three), ignore_merges, merges in the pair format, <|begin_of_text|> added by a
	// TemplateProcessing post-processor, <|eot_id|> as eos.
	TokenizerLlama3 TokenizerKind = "llama3-bpe"
	// TokenizerQwen2 is a Qwen2 style byte-level BPE tokenizer.json: the Qwen2 Split regex (single digits),
	// merges as strings, <|endoftext|>, <|im_start|>, <|im_end|>, no bos.
	TokenizerQwen2 TokenizerKind = "qwen2-bpe"
	// TokenizerSPM is a Llama-2 / Mistral style SentencePiece tokenizer.model (BPE, byte fallback: <unk>, <s>,
	// </s>, 256 <0xNN> pieces, then scored ▁-pieces) with tokenizer_config.json, special_tokens_map.json and the
	// equivalent byte-fallback BPE tokenizer.json that transformers writes next to it.
	TokenizerSPM TokenizerKind = "llama2-spm"
)

// Size is the number of token ids the tokenizer uses; config.json's vocab_size must be at least this. 0 for the
// fake tokenizer, which adapts to any vocab_size.
func (k TokenizerKind) Size() int {
	switch k {
	case TokenizerLlama3, TokenizerQwen2:
		return len(bpeModel(k).vocab) + len(bpeSpecials(k))
	case TokenizerSPM:
		return len(spmModel().pieces)
	}
	return 0
}

// check reports whether the kind is known and vocab_size covers it.
func (k TokenizerKind) check(vocab int) error {
	switch k {
	case TokenizerFake, TokenizerLlama3, TokenizerQwen2, TokenizerSPM:
	default:
		return fmt.Errorf("testmodel: unknown tokenizer %q (want %q, %q, %q or the fake default)", k,
			TokenizerLlama3, TokenizerQwen2, TokenizerSPM)
	}
	if n := k.Size(); vocab < n {
		return fmt.Errorf("testmodel: vocab_size %d does not cover the %s tokenizer's %d tokens", vocab, k, n)
	}
	return nil
}

// specialIDs are the bos/eos ids config.json and generation_config.json name.
func (k TokenizerKind) specialIDs(a Arch) (bos, eos int) {
	switch k {
	case TokenizerLlama3:
		n := len(bpeModel(k).vocab)
		return n, n + 4 // <|begin_of_text|>, <|eot_id|>
	case TokenizerQwen2:
		n := len(bpeModel(k).vocab)
		return n, n + 2 // <|endoftext|>, <|im_end|>
	case TokenizerSPM:
		return 1, 2
	}
	if a == ArchQwen2 {
		return 0, 2
	}
	return 1, 2
}

// bpeSpecials are the added tokens of a byte-level BPE kind, in id order after the model's vocab.
func bpeSpecials(k TokenizerKind) []string {
	if k == TokenizerLlama3 {
		return []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
			"<|eot_id|>"}
	}
	return []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
}

// Pre-tokenizer regexes as the Llama-3 and Qwen2 tokenizer.json files spell them, and RE2 approximations
// (no look-ahead) used only to cut the training text into words.
const (
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// bpeMerges and spmMerges are how many merges the real tokenizers learn (fewer if the sample runs out of pairs
// seen twice).
const (
	bpeMerges = 400
	spmMerges = 360
)

// learnedBPE is a byte-level BPE vocabulary: the 256 byte symbols in GPT-2's order, then one token per merge.
type learnedBPE struct {
	vocab  []string // by id
	merges [][2]string
}

var (
	bpeOnce  [2]sync.Once
	bpeCache [2]*learnedBPE
	spmOnce  sync.Once
	spmCache *learnedSPM
)

func bpeModel(k TokenizerKind) *learnedBPE {
	i, re := 0, llama3Regex
	if k == TokenizerQwen2 {
		i, re = 1, qwen2Regex
	}
	bpeOnce[i].Do(func() {
		words := map[string]int{}
		split := regexp.MustCompile(strings.ReplaceAll(re, `|\s+(?!\S)`, ""))
		for _, w := range split.FindAllString(tokenizerSample, -1) {
			words[byteLevel(w)]++
		}
		m := &learnedBPE{}
		for _, b := range byteOrder() {
			m.vocab = append(m.vocab, string(byteRune(b)))
		}
		m.merges = learnMerges(words, bpeMerges, func(string) bool { return true })
		have := map[string]bool{}
		for _, t := range m.vocab {
			have[t] = true
		}
		for _, mg := range m.merges {
			if t := mg[0] + mg[1]; !have[t] {
				have[t] = true
				m.vocab = append(m.vocab, t)
			}
		}
		bpeCache[i] = m
	})
	return bpeCache[i]
}

// learnMerges runs BPE training over words (symbol strings, split into runes, with counts): each step merges
// the most frequent adjacent pair (ties: the smallest pair in byte order) until n merges or no pair occurs twice.
// A symbol for which ok is false never merges.
func learnMerges(words map[string]int, n int, ok func(string) bool) [][2]string {
	type word struct {
		syms  []string
		count int
	}
	var ws []word
	for _, w := range slices.Sorted(maps.Keys(words)) {
		var syms []string
		for _, r := range w {
			syms = append(syms, string(r))
		}
		ws = append(ws, word{syms, words[w]})
	}
	var merges [][2]string
	for len(merges) < n {
		counts := map[[2]string]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				if ok(w.syms[i]) && ok(w.syms[i+1]) {
					counts[[2]string{w.syms[i], w.syms[i+1]}] += w.count
				}
			}
		}
		var best [2]string
		bestN := 1
		for p, c := range counts {
			if c > bestN || c == bestN && bestN > 1 && cmpPair(p, best) < 0 {
				best, bestN = p, c
			}
		}
		if bestN < 2 {
			break
		}
		merges = append(merges, best)
		joined := best[0] + best[1]
		for wi := range ws {
			s := ws[wi].syms
			out := s[:0]
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, joined)
					i++
					continue
				}
				out = append(out, s[i])
			}
			ws[wi].syms = out
		}
	}
	return merges
}

func cmpPair(a, b [2]string) int {
	return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
}

// byteOrder is GPT-2's bytes_to_unicode order: the printable bytes ! … ~, ¡ … ¬, ® … ÿ, then the rest.
func byteOrder() []byte {
	var bs []byte
	for b := 0; b < 256; b++ {
		if isPrintableByte(byte(b)) {
			bs = append(bs, byte(b))
		}
	}
	for b := 0; b < 256; b++ {
		if !isPrintableByte(byte(b)) {
			bs = append(bs, byte(b))
		}
	}
	return bs
}

func isPrintableByte(b byte) bool {
	return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE
}

// byteRune is GPT-2's byte → unicode map: printable bytes map to themselves, the others to U+0100 upwards.
func byteRune(b byte) rune {
	if isPrintableByte(b) {
		return rune(b)
	}
	n := 0
	for c := 0; c < int(b); c++ {
		if !isPrintableByte(byte(c)) {
			n++
		}
	}
	return rune(256 + n)
}

// byteLevel writes s's UTF-8 bytes as byte-level symbols.
func byteLevel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRune(s[i]))
	}
	return b.String()
}

// realTokenizerFiles returns the files of a real tokenizer kind, in save_pretrained's order.
func realTokenizerFiles(k TokenizerKind, maxLen int) []namedFile {
	if k == TokenizerSPM {
		return spmTokenizerFiles(maxLen)
	}
	return bpeTokenizerFiles(k, maxLen)
}

func addedTokenEntry(id int, content string) map[string]any {
	return map[string]any{"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
		"normalized": false, "special": true}
}

func addedTokenDecoder(content string) map[string]any {
	return map[string]any{"content": content, "single_word": false, "lstrip": false, "rstrip": false,
		"normalized": false, "special": true}
}

func bpeTokenizerFiles(k TokenizerKind, maxLen int) []namedFile {
	m := bpeModel(k)
	specials := bpeSpecials(k)
	vocab := make(map[string]int, len(m.vocab))
	for i, t := range m.vocab {
		vocab[t] = i
	}
	var added []map[string]any
	decoder := map[string]any{}
	for i, s := range specials {
		id := len(m.vocab) + i
		added = append(added, addedTokenEntry(id, s))
		decoder[fmt.Sprint(id)] = addedTokenDecoder(s)
	}
	splitRegex := llama3Regex
	if k == TokenizerQwen2 {
		splitRegex = qwen2Regex
	}
	pre := map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": splitRegex}, "behavior": "Isolated",
			"invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}}
	var merges any
	var post any
	var cfg map[string]any
	if k == TokenizerLlama3 {
		pairs := make([][]string, len(m.merges))
		for i, mg := range m.merges {
			pairs[i] = []string{mg[0], mg[1]}
		}
		merges = pairs
		bos := specials[0]
		tok := func(id string, typeID int) map[string]any {
			return map[string]any{"SpecialToken": map[string]any{"id": id, "type_id": typeID}}
		}
		seq := func(id string, typeID int) map[string]any {
			return map[string]any{"Sequence": map[string]any{"id": id, "type_id": typeID}}
		}
		post = map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single": []any{tok(bos, 0), seq("A", 0)},
				"pair":   []any{tok(bos, 0), seq("A", 0), tok(bos, 1), seq("B", 1)},
				"special_tokens": map[string]any{bos: map[string]any{"id": bos,
					"ids": []int{len(m.vocab)}, "tokens": []string{bos}}}},
		}}
		cfg = map[string]any{
			"bos_token":                    bos,
			"chat_template":                "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
			"clean_up_tokenization_spaces": true,
			"eos_token":                    "<|eot_id|>",
			"model_input_names":            []string{"input_ids", "attention_mask"},
			"model_max_length":             maxLen,
			"tokenizer_class":              "PreTrainedTokenizerFast",
		}
	} else {
		strs := make([]string, len(m.merges))
		for i, mg := range m.merges {
			strs[i] = mg[0] + " " + mg[1]
		}
		merges = strs
		post = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
			"use_regex": false}
		cfg = map[string]any{
			"add_bos_token":                false,
			"add_prefix_space":             false,
			"bos_token":                    nil,
			"chat_template":                "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
			"clean_up_tokenization_spaces": false,
			"eos_token":                    "<|im_end|>",
			"errors":                       "replace",
			"model_max_length":             maxLen,
			"pad_token":                    "<|endoftext|>",
			"split_special_tokens":         false,
			"tokenizer_class":              "Qwen2Tokenizer",
			"unk_token":                    nil,
		}
	}
	cfg["added_tokens_decoder"] = decoder
	tokJSON, _ := marshalJSON(map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  pre,
		"post_processor": post,
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false,
			"ignore_merges": k == TokenizerLlama3, "vocab": vocab, "merges": merges},
	}) // maps of plain values always encode
	cfgJSON, _ := marshalJSON(cfg)
	stm := map[string]any{}
	for _, key := range []string{"bos_token", "eos_token", "pad_token"} {
		if s, ok := cfg[key].(string); ok {
			stm[key] = map[string]any{"content": s, "lstrip": false, "normalized": false, "rstrip": false,
				"single_word": false}
		}
	}
	stmJSON, _ := marshalJSON(stm)
	return []namedFile{{"tokenizer_config.json", cfgJSON}, {"special_tokens_map.json", stmJSON},
		{"tokenizer.json", tokJSON}}
}

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spmNormal  = 1
	spmUnknown = 2
	spmControl = 3
	spmByte    = 6
)

type spmPiece struct {
	text  string
	score float32
	typ   int
}

// learnedSPM is a SentencePiece BPE vocabulary in Llama-2's layout.
type learnedSPM struct {
	pieces []spmPiece
}

// spmModel learns the SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte pieces, one piece per merge
// (score −rank), then the single characters seen at least twice (by count, then code point; lower scores).
// Rarer characters are left to the byte fallback.
func spmModel() *learnedSPM {
	spmOnce.Do(func() {
		words := map[string]int{}
		chars := map[string]int{}
		for _, w := range strings.Fields(tokenizerSample) {
			w = "▁" + w
			words[w]++
			for _, r := range w {
				chars[string(r)]++
			}
		}
		inVocab := func(s string) bool { return utf8.RuneCountInString(s) > 1 || chars[s] >= 2 }
		merges := learnMerges(words, spmMerges, inVocab)
		m := &learnedSPM{pieces: []spmPiece{{"<unk>", 0, spmUnknown}, {"<s>", 0, spmControl},
			{"</s>", 0, spmControl}}}
		for b := range 256 {
			m.pieces = append(m.pieces, spmPiece{fmt.Sprintf("<0x%02X>", b), 0, spmByte})
		}
		have := map[string]bool{}
		rank := 0
		for _, mg := range merges {
			t := mg[0] + mg[1]
			if have[t] {
				continue
			}
			have[t] = true
			m.pieces = append(m.pieces, spmPiece{t, -float32(rank), spmNormal})
			rank++
		}
		var single []string
		for c, n := range chars {
			if n >= 2 {
				single = append(single, c)
			}
		}
		slices.SortFunc(single, func(a, b string) int {
			return cmp.Or(cmp.Compare(chars[b], chars[a]), strings.Compare(a, b))
		})
		for _, c := range single {
			m.pieces = append(m.pieces, spmPiece{c, -float32(rank), spmNormal})
			rank++
		}
		spmCache = m
	})
	return spmCache
}

// SentencePieceModelBytes serializes a SentencePiece ModelProto for the given pieces (text, score, type) as a
// BPE model with byte fallback and the identity normalizer with a dummy prefix, as Llama-2's tokenizer.model
// is. Exported for tests of readers.
func SentencePieceModelBytes(texts []string, scores []float32, types []int32) []byte {
	var b []byte
	for i, t := range texts {
		var p []byte
		p = protowire.AppendTag(p, 1, protowire.BytesType)
		p = protowire.AppendString(p, t)
		p = protowire.AppendTag(p, 2, protowire.Fixed32Type)
		p = protowire.AppendFixed32(p, math.Float32bits(scores[i]))
		if types[i] != spmNormal {
			p = protowire.AppendTag(p, 3, protowire.VarintType)
			p = protowire.AppendVarint(p, uint64(types[i]))
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	}
	// TrainerSpec: model_type BPE (3), vocab_size (4), byte_fallback (35), unk/bos/eos/pad ids (40-43).
	var ts []byte
	ts = protowire.AppendTag(ts, 3, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 2)
	ts = protowire.AppendTag(ts, 4, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(len(texts)))
	ts = protowire.AppendTag(ts, 35, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 1)
	for _, kv := range [][2]int64{{40, 0}, {41, 1}, {42, 2}, {43, -1}} {
		ts = protowire.AppendTag(ts, protowire.Number(kv[0]), protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(kv[1]))
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	// NormalizerSpec: name "identity" (1), add_dummy_prefix (3), remove_extra_whitespaces (4) false,
	// escape_whitespaces (5).
	var ns []byte
	ns = protowire.AppendTag(ns, 1, protowire.BytesType)
	ns = protowire.AppendString(ns, "identity")
	for _, kv := range [][2]uint64{{3, 1}, {4, 0}, {5, 1}} {
		ns = protowire.AppendTag(ns, protowire.Number(kv[0]), protowire.VarintType)
		ns = protowire.AppendVarint(ns, kv[1])
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, ns)
	return b
}

func spmTokenizerFiles(maxLen int) []namedFile {
	m := spmModel()
	texts := make([]string, len(m.pieces))
	scores := make([]float32, len(m.pieces))
	types := make([]int32, len(m.pieces))
	for i, p := range m.pieces {
		texts[i], scores[i], types[i] = p.text, p.score, int32(p.typ)
	}
	model := SentencePieceModelBytes(texts, scores, types)
	decoder := map[string]any{}
	for i, s := range []string{"<unk>", "<s>", "</s>"} {
		decoder[fmt.Sprint(i)] = addedTokenDecoder(s)
	}
	cfg := map[string]any{
		"add_bos_token":                 true,
		"add_eos_token":                 false,
		"added_tokens_decoder":          decoder,
		"bos_token":                     "<s>",
		"chat_template":                 "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}",
		"clean_up_tokenization_spaces":  false,
		"eos_token":                     "</s>",
		"legacy":                        false,
		"model_max_length":              maxLen,
		"pad_token":                     nil,
		"sp_model_kwargs":               map[string]any{},
		"spaces_between_special_tokens": false,
		"tokenizer_class":               "LlamaTokenizer",
		"unk_token":                     "<unk>",
		"use_default_system_prompt":     false,
	}
	cfgJSON, _ := marshalJSON(cfg)
	special := func(s string) map[string]any {
		return map[string]any{"content": s, "lstrip": false, "normalized": false, "rstrip": false,
			"single_word": false}
	}
	stmJSON, _ := marshalJSON(map[string]any{"bos_token": special("<s>"), "eos_token": special("</s>"),
		"unk_token": special("<unk>")})
	return []namedFile{{"tokenizer_config.json", cfgJSON}, {"special_tokens_map.json", stmJSON},
		{"tokenizer.model", model}, {"tokenizer.json", spmTokenizerJSON(m)}}
}

// spmTokenizerJSON is the tokenizer.json transformers' LlamaConverter writes for a SentencePiece BPE model: a
// byte-fallback BPE whose merges are every split of every piece into two pieces, ordered by the piece's id (so
// merge ranks follow the scores), the Prepend ▁ / Replace " " → ▁ normalizer, and a TemplateProcessing that adds
// <s>.
func spmTokenizerJSON(m *learnedSPM) []byte {
	vocab := make(map[string]int, len(m.pieces))
	for i, p := range m.pieces {
		vocab[p.text] = i
	}
	type merge struct{ l, r string }
	var merges []merge
	for _, p := range m.pieces {
		if p.typ != spmNormal {
			continue
		}
		var cands []merge
		for k := range p.text {
			if k == 0 {
				continue
			}
			l, r := p.text[:k], p.text[k:]
			if _, ok := vocab[l]; !ok {
				continue
			}
			if _, ok := vocab[r]; ok {
				cands = append(cands, merge{l, r})
			}
		}
		slices.SortFunc(cands, func(a, b merge) int {
			return cmp.Or(cmp.Compare(vocab[a.l], vocab[b.l]), cmp.Compare(vocab[a.r], vocab[b.r]))
		})
		merges = append(merges, cands...)
	}
	strs := make([]string, len(merges))
	for i, mg := range merges {
		strs[i] = mg.l + " " + mg.r
	}
	var added []map[string]any
	for i, s := range []string{"<unk>", "<s>", "</s>"} {
		added = append(added, addedTokenEntry(i, s))
	}
	tok := func(id string, typeID int) map[string]any {
		return map[string]any{"SpecialToken": map[string]any{"id": id, "type_id": typeID}}
	}
	seq := func(id string, typeID int) map[string]any {
		return map[string]any{"Sequence": map[string]any{"id": id, "type_id": typeID}}
	}
	out, _ := marshalJSON(map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": added,
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single": []any{tok("<s>", 0), seq("A", 0)},
			"pair":   []any{tok("<s>", 0), seq("A", 0), tok("<s>", 1), seq("B", 1)},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1},
				"tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": "<unk>",
			"continuing_subword_prefix": nil, "end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true,
			"ignore_merges": false, "vocab": vocab, "merges": strs},
	}) // maps of plain values always encode
	return out
}
