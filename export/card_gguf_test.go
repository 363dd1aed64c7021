package export

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// TestCardGGUF checks the GGUF section of a merged card and the GGUF-only card: gguf in the tags (and library for
// GGUF-only), a row per file with type and size, and the llama-cli -hf and Ollama hf.co lines on Q4_K_M.
func TestCardGGUF(t *testing.T) {
	files := []GGUFFile{{Path: "llama3-sft-Q8_0.gguf", Type: "Q8_0", Size: 1_170_000_000}, {Path: "llama3-sft-Q4_K_M.gguf", Type: "Q4_K_M", Size: 668_000_000}}
	ci := CardInfo{BaseModel: "unsloth/llama-3-8b-bnb-4bit", AdapterName: "checkpoint-500", Rank: 16, Alpha: 16,
		DType: tensor.BF16, RepoID: "me/llama3-sft-GGUF", GGUF: files}
	cases := []struct {
		name    string
		card    []byte
		library string
		tags    []any
		absent  []string
	}{
		{"merged", ModelCard(ci), "transformers", []any{"lora", "merged", "peft", "hubsync", "gguf"}, nil},
		{"gguf-only", GGUFCard(ci), "gguf", []any{"gguf", "lora", "merged", "hubsync"}, []string{"AutoModelForCausalLM", "safetensors"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fm, body := splitCard(t, tc.card)
			if fm["library_name"] != tc.library || !reflect.DeepEqual(fm["tags"], tc.tags) {
				t.Errorf("front matter = %v, want library %s, tags %v", fm, tc.library, tc.tags)
			}
			for _, s := range []string{"## GGUF", "| `llama3-sft-Q8_0.gguf` | Q8_0 | 1.2 GB |", "| `llama3-sft-Q4_K_M.gguf` | Q4_K_M | 668.0 MB |",
				"llama-cli -hf me/llama3-sft-GGUF:Q4_K_M\n", "ollama run hf.co/me/llama3-sft-GGUF:Q4_K_M\n"} {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(body, s) {
					t.Errorf("body has %q:\n%s", s, body)
				}
			}
		})
	}
	// Without Q4_K_M the usage lines name the first file's type; without GGUF files there is no section.
	ci.GGUF = files[:1]
	if body := string(ModelCard(ci)); !strings.Contains(body, "llama-cli -hf me/llama3-sft-GGUF:Q8_0\n") {
		t.Errorf("usage without Q4_K_M:\n%s", body)
	}
	ci.GGUF = nil
	if body := string(ModelCard(ci)); strings.Contains(body, "## GGUF") || strings.Contains(body, "- gguf") {
		t.Errorf("card without GGUF files mentions GGUF:\n%s", body)
	}
}
