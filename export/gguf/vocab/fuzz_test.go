package vocab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// FuzzSentencePieceModel: ParseSentencePiece never panics, and whatever it accepts loads.
func FuzzSentencePieceModel(f *testing.F) {
	f.Add(spmBytes())
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x09})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseSentencePiece(data)
		if err != nil {
			return
		}
		if len(m.Pieces) == 0 {
			t.Fatal("accepted a model without pieces")
		}
		for _, p := range m.Pieces {
			if p.Type < TypeNormal || p.Type > TypeByte {
				t.Fatalf("piece type %d", p.Type)
			}
		}
	})
}

// FuzzTokenizerJSON: Load of an arbitrary tokenizer.json (with a fixed tokenizer_config.json) never panics, and
// a vocab it returns is consistent.
func FuzzTokenizerJSON(f *testing.F) {
	dir := f.TempDir()
	for _, k := range []testmodel.TokenizerKind{testmodel.TokenizerLlama3, testmodel.TokenizerQwen2} {
		spec := testmodel.Tiny(testmodel.ArchLlama)
		spec.Tokenizer, spec.Vocab = k, 768
		d := filepath.Join(dir, string(k))
		if _, err := testmodel.GenerateBase(f.Context(), d, spec); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(d, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, 0)
	}
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","b"]]},"pre_tokenizer":{"type":"ByteLevel"}}`), 3)
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"byte_fallback":true},"decoder":{"type":"Sequence"}}`), 0)
	f.Add([]byte(`{"added_tokens":[{"id":5,"content":"<|x|>","special":true}],"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|x|>"}},{"Sequence":{"id":"A"}}]},"model":{"type":"BPE","vocab":{}},"pre_tokenizer":{"type":"ByteLevel"}}`), 8)
	cfg := []byte(`{"bos_token":"<|x|>","eos_token":{"content":"a"},"chat_template":[{"name":"default","template":"x"}]}`)
	f.Fuzz(func(t *testing.T, data []byte, vocabSize int) {
		if vocabSize < 0 || vocabSize > 4096 {
			return
		}
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "tokenizer.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "tokenizer_config.json"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := LoadWith(d, vocabSize, LoadOptions{})
		if err != nil {
			return
		}
		if len(v.Tokens) != len(v.Types) || (v.Scores != nil && len(v.Scores) != len(v.Tokens)) ||
			vocabSize > 0 && len(v.Tokens) != vocabSize {
			t.Fatalf("%d tokens, %d types, %d scores (vocab_size %d)", len(v.Tokens), len(v.Types), len(v.Scores), vocabSize)
		}
		if v.Model == "gpt2" && v.Merges == nil {
			t.Fatal("gpt2 vocab without merges key")
		}
	})
}
