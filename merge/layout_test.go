package merge

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// peftLayout is one entry of testdata/peft_modules_to_save_layouts.json.
type peftLayout struct {
	Name          string   `json:"name"`
	PEFT          string   `json:"peft"`
	Base          string   `json:"base"`
	ModulesToSave []string `json:"modules_to_save"`
	Resize        int      `json:"resize"`
	Trained       []string `json:"trained"`
	Original      []string `json:"original"`
}

func loadPEFTLayouts(t *testing.T) []peftLayout {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "peft_modules_to_save_layouts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Layouts []peftLayout `json:"layouts"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f.Layouts
}

// canonicalKey maps a fixture key to the <m>.<p> key the generator writes for the same module.
func canonicalKey(k string) string {
	if m, rest, ok := strings.Cut(k, ".modules_to_save."); ok {
		return m + "." + rest[strings.LastIndexByte(rest, '.')+1:]
	}
	return strings.Replace(k, ".original_module.", ".", 1)
}

// flipSigns negates every element (a finite, different tensor: the "untrained" original_module copy).
func flipSigns(b []byte, elemSize int) []byte {
	out := slices.Clone(b)
	for i := elemSize - 1; i < len(out); i += elemSize {
		out[i] ^= 0x80
	}
	return out
}

// TestMergeReadsPEFTModulesToSaveLayouts rewrites a generated adapter's modules_to_save tensors into each key
// layout PEFT writes and checks the merge is byte for byte the merge of the plain layout: the trained copy is
// used and original_module never reaches the output.
func TestMergeReadsPEFTModulesToSaveLayouts(t *testing.T) {
	for _, l := range loadPEFTLayouts(t) {
		t.Run(l.Name, func(t *testing.T) {
			t.Parallel()
			arch := map[string]testmodel.Arch{"llama": testmodel.ArchLlama, "qwen2": testmodel.ArchQwen2}[l.Base]
			c := mergeCase{base: tinyNF4(arch), adapter: testmodel.AdapterSpec{ModulesToSave: l.ModulesToSave, ResizeVocab: l.Resize, Seed: 41}}
			dir := t.TempDir()
			base, adapter := c.generate(t, dir)
			want := readOutput(t, runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "want")}).Dir)

			wpath := filepath.Join(adapter, adapterWeightsFile)
			covered := map[string]bool{}
			rewriteSafetensors(t, wpath, func(ts []safetensors.Data) []safetensors.Data {
				byName := map[string]safetensors.Data{}
				var out []safetensors.Data
				for _, d := range ts {
					if strings.Contains(d.Name, ".lora_") {
						out = append(out, d)
					} else {
						byName[d.Name] = d
					}
				}
				add := func(keys []string, original bool) {
					for _, k := range keys {
						src, ok := byName[canonicalKey(k)]
						if !ok {
							t.Fatalf("fixture key %s: the generator wrote no %s", k, canonicalKey(k))
						}
						covered[src.Name] = true
						d := src
						d.Name = k
						if original {
							d.Bytes = flipSigns(src.Bytes, src.DType.Size())
						}
						out = append(out, d)
					}
				}
				add(l.Trained, false)
				add(l.Original, true)
				for n := range byName {
					if !covered[n] {
						t.Fatalf("the fixture has no trained key for %s", n)
					}
				}
				return out
			})
			res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "got")})
			checkOutputDir(t, res.Dir, res)
			got := readOutput(t, res.Dir)
			if len(got) != len(want) {
				t.Errorf("%d output tensors, want %d", len(got), len(want))
			}
			for n, w := range want {
				if g, ok := got[n]; !ok || !bytes.Equal(g.Raw, w.Raw) {
					t.Errorf("%s (PEFT %s): differs from the plain layout's merge", n, l.PEFT)
				}
			}
		})
	}
}

// TestModulesToSaveLayoutErrors: a wrapper copy that matches nothing, or two trained copies that differ, fail
// naming the tensor.
func TestModulesToSaveLayoutErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func([]safetensors.Data) []safetensors.Data
		want string
	}{
		{"no such module", renameTensor("base_model.model.lm_head.weight", "base_model.model.nohead.modules_to_save.weight"),
			"matches no base tensor"},
		{"copies differ", func(ts []safetensors.Data) []safetensors.Data {
			for _, d := range ts {
				if d.Name == "base_model.model.lm_head.weight" {
					d.Name = "base_model.model.lm_head.modules_to_save.weight"
					d.Bytes = flipSigns(d.Bytes, d.DType.Size())
					return append(ts, d)
				}
			}
			return ts
		}, "differs from base_model.model.lm_head.weight"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mergeCase{base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{ModulesToSave: []string{"lm_head"}, Seed: 42}}
			dir := t.TempDir()
			base, adapter := c.generate(t, dir)
			rewriteSafetensors(t, filepath.Join(adapter, adapterWeightsFile), tc.edit)
			_, err := NewPlan(t.Context(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "out")})
			if err == nil || !IsBadInput(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a bad-input error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TestTiedEmbeddingLoRAUntied: a LoRA on a tied embedding is merged into embed_tokens only; lm_head.weight is the
// original (dequantized, rounded) embedding, config.json unties and the card says so. KeepTied gives PEFT's
// result (the shared weight updated, no lm_head.weight) instead.
func TestTiedEmbeddingLoRAUntied(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "untie", true: "keep-tied"}[keep], func(t *testing.T) {
			t.Parallel()
			c := mergeCase{base: tinyNF4(testmodel.ArchQwen2), adapter: testmodel.AdapterSpec{EmbeddingLoRA: true, Seed: 43}}
			dir := t.TempDir()
			base, adapter := c.generate(t, dir)
			ref, err := testmodel.ReferenceMerge(base, adapter)
			if keep {
				ref, err = testmodel.ReferenceMergeKeepTied(base, adapter)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ref[lmHead]; ok == keep {
				t.Fatalf("reference has lm_head.weight = %v with keep-tied %v", ok, keep)
			}
			out := filepath.Join(dir, "out")
			res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: out, KeepTied: keep})
			compareToReference(t, out, ref, func(string) tensor.DType { return tensor.Invalid })
			checkOutputDir(t, out, res)
			cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var c2 map[string]any
			if err := json.Unmarshal(cfg, &c2); err != nil {
				t.Fatal(err)
			}
			if tie := c2["tie_word_embeddings"]; (tie == false) == keep {
				t.Errorf("config.json tie_word_embeddings = %v with keep-tied %v", tie, keep)
			}
			card, err := os.ReadFile(filepath.Join(out, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{false: "- Embeddings: untied", true: "- Embeddings: kept tied"}[keep]
			if !bytes.Contains(card, []byte(want)) {
				t.Errorf("card lacks %q", want)
			}
			if !keep {
				got := readOutput(t, out)
				if bytes.Equal(got[lmHead].Raw, got["model.embed_tokens.weight"].Raw) {
					t.Error("lm_head.weight equals the merged embedding")
				}
			}
		})
	}
}
