package export

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// TestWriteAdapter checks the adapter-only directory: the files hard-linked (or copied), the card written, every
// digest from the bytes in the directory, nothing left behind on error.
func TestWriteAdapter(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"adapter_config.json":       `{"r": 8}`,
		"adapter_model.safetensors": strings.Repeat("w", 3000),
		"tokenizer.json":            `{}`,
		"empty.txt":                 "",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		files   []string
		wantErr bool
	}{
		{name: "all", files: []string{"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "empty.txt"}},
		{name: "missing", files: []string{"adapter_config.json", "absent.bin"}, wantErr: true},
		{name: "bad name", files: []string{"../adapter_config.json"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			final := filepath.Join(root, "adapter")
			dir, got, err := WriteAdapter(context.Background(), final, AdapterDir{Src: src, Files: tc.files, Card: []byte("# card\n")})
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if ents, _ := os.ReadDir(root); len(ents) != 0 {
					t.Errorf("left behind: %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"README.md": "# card\n"}
			for _, n := range tc.files {
				want[n] = files[n]
			}
			if len(got) != len(want) {
				t.Fatalf("%d digests, want %d: %+v", len(got), len(want), got)
			}
			for _, d := range got {
				c, ok := want[d.Path]
				if !ok {
					t.Errorf("unexpected file %s", d.Path)
					continue
				}
				if d.Size != int64(len(c)) || d.SHA256 != sha256.Sum256([]byte(c)) || string(d.Sample) != c[:min(len(c), 512)] {
					t.Errorf("%s: digest %d %x, want %d", d.Path, d.Size, d.SHA256, len(c))
				}
				b, err := os.ReadFile(filepath.Join(dir, d.Path))
				if err != nil || string(b) != c {
					t.Errorf("%s in the directory: %q, %v", d.Path, b, err)
				}
			}
		})
	}
}

// TestWriteModelSmallFiles checks a merged directory written without shards (fill nil): the index, config,
// copied files and card, and that an error from the files callback is returned as it is with nothing left.
func TestWriteModelSmallFiles(t *testing.T) {
	plan, err := PlanShards(testSpecs(), 4000)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Shards) < 2 {
		t.Fatalf("want a sharded plan, got %d shard(s)", len(plan.Shards))
	}
	src := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(src, []byte(`{"t":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir, files, err := WriteModel(context.Background(), filepath.Join(root, "m"), plan, nil, func() (ModelFiles, error) {
		return ModelFiles{Config: []byte(`{}`), Aux: []AuxFile{{Name: "tokenizer.json", Src: src}}, Card: []byte("card")}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Path)
	}
	if got, want := strings.Join(names, ","), "README.md,config.json,model.safetensors.index.json,tokenizer.json"; got != want {
		t.Errorf("files %s, want %s", got, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("directory holds %d entries, want 4", len(ents))
	}

	bad := errors.New("no config")
	_, _, err = WriteModel(context.Background(), filepath.Join(root, "bad"), plan, streamFill, func() (ModelFiles, error) {
		return ModelFiles{}, bad
	})
	if err != bad {
		t.Errorf("error %v, want the callback's", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed output exists: %v", err)
	}
}

// TestMergedConfig checks that untying is applied on top of the dtype rewrite.
func TestMergedConfig(t *testing.T) {
	base := []byte(`{"torch_dtype": "float32", "tie_word_embeddings": true, "vocab_size": 10}`)
	tests := []struct {
		untie bool
		want  string
	}{
		{false, `"tie_word_embeddings": true`},
		{true, `"tie_word_embeddings": false`},
	}
	for _, tc := range tests {
		got, err := MergedConfig(base, tensor.BF16, 12, tc.untie)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), tc.want) || !strings.Contains(string(got), `"bfloat16"`) {
			t.Errorf("untie=%v: %s", tc.untie, got)
		}
	}
}
