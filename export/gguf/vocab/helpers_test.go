package vocab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// writeFiles writes name → content into a fresh directory (a string is written as is, anything else as JSON).
func writeFiles(t *testing.T, files map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	for name, c := range files {
		var data []byte
		switch c := c.(type) {
		case string:
			data = []byte(c)
		case []byte:
			data = c
		default:
			var err error
			if data, err = json.Marshal(c); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// byteLevelPre is a Sequence of one Split regex and a ByteLevel without its own regex, as Llama-3 and Qwen2 have.
func byteLevelPre(regex string) map[string]any {
	return map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": regex}, "behavior": "Isolated",
			"invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}}
}

// bpeTokenizer is a small byte-level BPE tokenizer.json with the given pre-tokenizer, merges and added tokens.
func bpeTokenizer(pre any, merges any, added []map[string]any, post any) map[string]any {
	vocab := map[string]int{"h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "ll": 5, "hell": 6, "hello": 7, "Ġ": 8,
		"Ġw": 9, "a b": 10}
	return map[string]any{
		"version": "1.0", "added_tokens": added, "normalizer": nil, "pre_tokenizer": pre,
		"post_processor": post, "decoder": map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "byte_fallback": false},
	}
}

func special(id int, content string, isSpecial bool) map[string]any {
	return map[string]any{"id": id, "content": content, "special": isSpecial, "normalized": false,
		"lstrip": false, "rstrip": false, "single_word": false}
}
