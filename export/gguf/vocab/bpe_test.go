package vocab

import (
	"reflect"
	"strings"
	"testing"
)

func TestLoadBPEPreTokenizer(t *testing.T) {
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}
	digits := map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Digits", "individual_digits": true}, byteLevel}}
	for _, tc := range []struct {
		name string
		pre  any
		want string
	}{
		{"llama3", byteLevelPre(reLlama3), "llama-bpe"},
		{"qwen2", byteLevelPre(reQwen2), "qwen2"},
		{"qwen35", byteLevelPre(reQwen35), "qwen35"},
		{"tekken", byteLevelPre(reTekken), "tekken"},
		{"gpt-4o", byteLevelPre(reGPT4o), "gpt-4o"},
		{"seed-coder", byteLevelPre(reSeed), "seed-coder"},
		{"bailingmoe", byteLevelPre(reBailing), "bailingmoe"},
		{"gpt2", byteLevel, "gpt-2"},
		{"starcoder", digits, "starcoder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]any{"tokenizer.json": bpeTokenizer(tc.pre, []string{"h e"}, nil, nil)})
			v, err := Load(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			if v.Model != "gpt2" || v.Pre != tc.want {
				t.Fatalf("model %q pre %q, want gpt2 %q", v.Model, v.Pre, tc.want)
			}
		})
	}
}

func TestLoadBPEUnknownPre(t *testing.T) {
	for _, tc := range []struct {
		name string
		pre  any
	}{
		{"other regex", byteLevelPre(`\p{L}+|\s+`)},
		{"none", nil},
		{"split plus bytelevel regex", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": reLlama3}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "use_regex": true}}}},
		{"metaspace", map[string]any{"type": "Metaspace", "replacement": "▁"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]any{"tokenizer.json": bpeTokenizer(tc.pre, []string{"h e"}, nil, nil)})
			_, err := Load(dir, 0)
			if err == nil || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "--gguf-pre") {
				t.Fatalf("err = %v, want one naming tokenizer.json and --gguf-pre", err)
			}
			v, err := LoadWith(dir, 0, LoadOptions{Pre: "llama-bpe"})
			if err != nil || v.Pre != "llama-bpe" {
				t.Fatalf("override: %v, %+v", err, v)
			}
		})
	}
}

func TestLoadBPETokens(t *testing.T) {
	added := []map[string]any{special(11, "<|endoftext|>", true), special(12, "<think>", false),
		special(13, "<|im_start|>", false), special(15, "▁user", false), special(16, "<unused0>", false)}
	dir := writeFiles(t, map[string]any{"tokenizer.json": bpeTokenizer(byteLevelPre(reQwen2),
		[][]string{{"h", "e"}, {"a", " b"}}, added, nil)})
	v, err := Load(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 20 || len(v.Types) != 20 || v.Scores != nil {
		t.Fatalf("lengths %d %d %d", len(v.Tokens), len(v.Types), len(v.Scores))
	}
	want := map[int]struct {
		tok string
		typ int32
	}{
		0: {"h", TypeNormal}, 8: {"Ġ", TypeNormal}, 10: {"a b", TypeNormal},
		11: {"<|endoftext|>", TypeControl}, 12: {"<think>", TypeUserDefined},
		13: {"<|im_start|>", TypeControl}, // looks special
		14: {"[PAD14]", TypeUnused}, 15: {" user", TypeUserDefined}, 16: {"<unused0>", TypeControl},
		19: {"[PAD19]", TypeUnused},
	}
	for id, w := range want {
		if v.Tokens[id] != w.tok || v.Types[id] != w.typ {
			t.Errorf("id %d: %q type %d, want %q type %d", id, v.Tokens[id], v.Types[id], w.tok, w.typ)
		}
	}
	if !reflect.DeepEqual(v.Merges, []string{"h e", "a Ġb"}) {
		t.Errorf("merges %q", v.Merges)
	}
	if _, err := Load(dir, 12); err == nil || !strings.Contains(err.Error(), "vocab_size 12") {
		t.Errorf("vocab_size too small: err = %v", err)
	}
}

func TestLoadBPEMerges(t *testing.T) {
	pre := byteLevelPre(reLlama3)
	for _, tc := range []struct {
		name   string
		merges any
		txt    string
		want   []string
	}{
		{"strings", []string{"h e", "he ll"}, "", []string{"h e", "he ll"}},
		{"pairs", [][]string{{"h", "e"}, {"he", "ll"}}, "", []string{"h e", "he ll"}},
		{"merges.txt fallback", []string{}, "#version: 0.2\nh e\n\nbad line here\nhe ll\n", []string{"h e", "he ll"}},
		{"merges.txt without header", nil, "h e\nhe ll\n", []string{"h e", "he ll"}},
		{"none", nil, "", []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]any{"tokenizer.json": bpeTokenizer(pre, tc.merges, nil, nil)}
			if tc.txt != "" {
				files["merges.txt"] = tc.txt
			}
			v, err := Load(writeFiles(t, files), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v.Merges, tc.want) || v.Merges == nil {
				t.Fatalf("merges %#v, want %#v", v.Merges, tc.want)
			}
		})
	}
	bad := bpeTokenizer(pre, []any{[]any{"a", "b", "c"}}, nil, nil)
	if _, err := Load(writeFiles(t, map[string]any{"tokenizer.json": bad}), 0); err == nil ||
		!strings.Contains(err.Error(), "merges") {
		t.Errorf("3-part merge: err = %v", err)
	}
}

func TestLoadNoTokenizer(t *testing.T) {
	dir := writeFiles(t, map[string]any{"config.json": map[string]any{"vocab_size": 10}})
	_, err := Load(dir, 10)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "tokenizer.model") ||
		!strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("err = %v", err)
	}
	dir = writeFiles(t, map[string]any{"tokenizer.json": "{not json"})
	if _, err := Load(dir, 0); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("malformed: err = %v", err)
	}
	unigram := map[string]any{"model": map[string]any{"type": "Unigram", "vocab": []any{[]any{"a", -1.0}}},
		"pre_tokenizer": map[string]any{"type": "Metaspace"}}
	if _, err := Load(writeFiles(t, map[string]any{"tokenizer.json": unigram}), 0); err == nil ||
		!strings.Contains(err.Error(), "Unigram") {
		t.Fatalf("unigram: err = %v", err)
	}
}
