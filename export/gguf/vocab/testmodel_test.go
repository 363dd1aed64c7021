package vocab

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestLoadTestModelTokenizers loads every tokenizer the test-model generator writes.
func TestLoadTestModelTokenizers(t *testing.T) {
	for _, tc := range []struct {
		kind       testmodel.TokenizerKind
		arch       testmodel.Arch
		model, pre string
		bos, eos   string
		addBOS     any
	}{
		{testmodel.TokenizerFake, testmodel.ArchLlama, "gpt2", "gpt-2", "<s>", "</s>", true},
		{testmodel.TokenizerFake, testmodel.ArchQwen2, "gpt2", "gpt-2", "<|endoftext|>", "<|im_end|>", false},
		{testmodel.TokenizerLlama3, testmodel.ArchLlama, "gpt2", "llama-bpe", "<|begin_of_text|>", "<|eot_id|>", true},
		{testmodel.TokenizerQwen2, testmodel.ArchQwen2, "gpt2", "qwen2", "<|endoftext|>", "<|im_end|>", false},
		{testmodel.TokenizerSPM, testmodel.ArchLlama, "llama", "default", "<s>", "</s>", true},
	} {
		t.Run(string(tc.kind)+"/"+string(tc.arch), func(t *testing.T) {
			spec := testmodel.Tiny(tc.arch)
			spec.Tokenizer, spec.Vocab = tc.kind, 768
			dir := t.TempDir()
			if _, err := testmodel.GenerateBase(context.Background(), dir, spec); err != nil {
				t.Fatal(err)
			}
			v, err := Load(dir, spec.Vocab)
			if err != nil {
				t.Fatal(err)
			}
			if v.Model != tc.model || v.Pre != tc.pre || len(v.Tokens) != spec.Vocab {
				t.Fatalf("model %q pre %q %d tokens", v.Model, v.Pre, len(v.Tokens))
			}
			if id, ok := v.Special["bos"]; !ok || v.Tokens[id] != tc.bos || v.Types[id] != TypeControl {
				t.Errorf("bos %d (%v)", id, ok)
			}
			if id, ok := v.Special["eos"]; !ok || v.Tokens[id] != tc.eos || v.Types[id] != TypeControl {
				t.Errorf("eos %d (%v)", id, ok)
			}
			if show(v.AddBOS) != tc.addBOS {
				t.Errorf("add_bos %v, want %v", show(v.AddBOS), tc.addBOS)
			}
			if v.ChatTemplate == "" {
				t.Error("no chat template")
			}
			seen := map[string]bool{}
			for i, tok := range v.Tokens {
				if seen[tok] {
					t.Fatalf("duplicate token %q at %d", tok, i)
				}
				seen[tok] = true
			}
			if tc.model == "gpt2" && tc.kind != testmodel.TokenizerFake && len(v.Merges) < 300 {
				t.Errorf("%d merges", len(v.Merges))
			}
			if tc.model == "llama" {
				n := tc.kind.Size()
				if v.Tokens[3] != "<0x00>" || v.Types[3] != TypeByte || v.Types[n] != TypeUnused || v.Scores[n] != -10000 {
					t.Errorf("byte or pad pieces wrong: %q %d, %q %d", v.Tokens[3], v.Types[3], v.Tokens[n], v.Types[n])
				}
			}
		})
	}
}

// TestLoadTestModelSPMWithoutModel: the SentencePiece test model's tokenizer.json alone (tokenizer.model
// removed) takes the LlamaHfVocab path and gives the same token texts, with −1000 scores.
func TestLoadTestModelSPMWithoutModel(t *testing.T) {
	spec := testmodel.Tiny(testmodel.ArchMistral)
	spec.Tokenizer, spec.Vocab = testmodel.TokenizerSPM, 768
	dir := t.TempDir()
	if _, err := testmodel.GenerateBase(context.Background(), dir, spec); err != nil {
		t.Fatal(err)
	}
	spm, err := Load(dir, spec.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "tokenizer.model")); err != nil {
		t.Fatal(err)
	}
	hf, err := Load(dir, spec.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	n := spec.Tokenizer.Size()
	if hf.Model != "llama" || !slices.Equal(hf.Tokens[:n], spm.Tokens[:n]) {
		t.Fatalf("model %q; tokens differ from the SentencePiece model's", hf.Model)
	}
	for i := range n {
		if hf.Scores[i] != -1000 {
			t.Fatalf("id %d score %v", i, hf.Scores[i])
		}
		if want := spm.Types[i]; hf.Types[i] != want {
			t.Errorf("id %d %q: type %d, SentencePiece path %d", i, hf.Tokens[i], hf.Types[i], want)
		}
	}
}
