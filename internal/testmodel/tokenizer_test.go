package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRealTokenizers(t *testing.T) {
	for _, tc := range []struct {
		kind  TokenizerKind
		arch  Arch
		files []string
		size  int // pinned: docs/gguf-tokenizers.md states these sizes
	}{
		{TokenizerLlama3, ArchLlama, []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}, 614},
		{TokenizerQwen2, ArchQwen2, []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}, 599},
		{TokenizerSPM, ArchMistral, []string{"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}, 661},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			n := tc.kind.Size()
			if n != tc.size {
				t.Fatalf("size %d, want %d", n, tc.size)
			}
			spec := Tiny(tc.arch)
			spec.Tokenizer, spec.Vocab = tc.kind, 1024
			dir := t.TempDir()
			if _, err := GenerateBase(context.Background(), dir, spec); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
			info, err := LoadBaseInfo(dir)
			if err != nil || info.Spec.Tokenizer != tc.kind {
				t.Fatalf("LoadBaseInfo: %v, tokenizer %q", err, info.Spec.Tokenizer)
			}
			// Deterministic: a second generation writes the same bytes.
			dir2 := t.TempDir()
			if _, err := GenerateBase(context.Background(), dir2, spec); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				a, _ := os.ReadFile(filepath.Join(dir, f))
				b, _ := os.ReadFile(filepath.Join(dir2, f))
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs between runs", f)
				}
			}
			spec.Vocab = n - 1
			if _, err := GenerateBase(context.Background(), t.TempDir(), spec); err == nil ||
				!strings.Contains(err.Error(), "does not cover") {
				t.Errorf("vocab %d: err = %v", n-1, err)
			}
		})
	}
	spec := Tiny(ArchLlama)
	spec.Tokenizer = "nope"
	if _, err := GenerateBase(context.Background(), t.TempDir(), spec); err == nil ||
		!strings.Contains(err.Error(), "unknown tokenizer") {
		t.Errorf("unknown kind: err = %v", err)
	}
}

// TestBPETokenizerConsistent checks the byte-level BPE files: 256 byte symbols first, every merge's parts and
// result in the vocabulary, specials after the vocabulary.
func TestBPETokenizerConsistent(t *testing.T) {
	for _, k := range []TokenizerKind{TokenizerLlama3, TokenizerQwen2} {
		var tok struct {
			AddedTokens []struct {
				ID      int    `json:"id"`
				Content string `json:"content"`
			} `json:"added_tokens"`
			Model struct {
				Vocab  map[string]int  `json:"vocab"`
				Merges json.RawMessage `json:"merges"`
			} `json:"model"`
		}
		files := realTokenizerFiles(k, 2048)
		i := slices.IndexFunc(files, func(f namedFile) bool { return f.name == "tokenizer.json" })
		if err := json.Unmarshal(files[i].data, &tok); err != nil {
			t.Fatal(err)
		}
		var merges [][2]string
		var strs []string
		if json.Unmarshal(tok.Model.Merges, &strs) == nil {
			for _, s := range strs {
				a, b, _ := strings.Cut(s, " ")
				merges = append(merges, [2]string{a, b})
			}
		} else if err := json.Unmarshal(tok.Model.Merges, &merges); err != nil {
			t.Fatal(err)
		}
		if len(merges) < 300 {
			t.Errorf("%s: %d merges", k, len(merges))
		}
		for b := range 256 {
			s := string(byteRune(byte(b)))
			if id, ok := tok.Model.Vocab[s]; !ok || id >= 256 {
				t.Errorf("%s: byte %#x (%q) id %d", k, b, s, id)
			}
		}
		for _, m := range merges {
			for _, part := range []string{m[0], m[1], m[0] + m[1]} {
				if _, ok := tok.Model.Vocab[part]; !ok {
					t.Fatalf("%s: merge %q: %q not in vocab", k, m, part)
				}
			}
		}
		for j, a := range tok.AddedTokens {
			if a.ID != len(tok.Model.Vocab)+j {
				t.Errorf("%s: added %q id %d", k, a.Content, a.ID)
			}
		}
	}
}
