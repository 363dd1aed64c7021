package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// tensorBytes is deterministic, non-zero synthetic data for a tensor, derived from its name.
func tensorBytes(name string, n int64) []byte {
	seed := sha256.Sum256([]byte(name))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:]), binary.LittleEndian.Uint64(seed[8:])))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// streamFill writes each tensor's synthetic bytes in odd-sized pieces, as a tiled merge would.
func streamFill(_ context.Context, t safetensors.TensorInfo, w io.Writer) error {
	data := tensorBytes(t.Name, t.Size())
	for len(data) > 0 {
		k := min(len(data), 1000+len(t.Name)*37)
		if _, err := w.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return nil
}

func testSpecs() []TensorSpec {
	return []TensorSpec{
		{Name: "model.embed_tokens.weight", DType: tensor.BF16, Shape: []int64{64, 32}},
		{Name: "model.layers.0.self_attn.q_proj.weight", DType: tensor.BF16, Shape: []int64{32, 32}},
		{Name: "model.layers.0.input_layernorm.weight", DType: tensor.F32, Shape: []int64{32}},
		{Name: "model.layers.0.mlp.down_proj.weight", DType: tensor.BF16, Shape: []int64{32, 96}},
		{Name: "model.norm.weight", DType: tensor.BF16, Shape: []int64{32}},
		{Name: "lm_head.weight", DType: tensor.BF16, Shape: []int64{64, 32}},
		{Name: "empty", DType: tensor.F16, Shape: []int64{0}},
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestOutputWriteAndCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxShard int64
		shards   int
	}{
		{"sharded", 5000, 4},
		{"single", 1 << 20, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			final := filepath.Join(parent, "sub", "merged")
			plan, err := PlanShards(testSpecs(), tc.maxShard)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Shards) != tc.shards {
				t.Fatalf("%d shards, want %d", len(plan.Shards), tc.shards)
			}
			out, err := CreateOutput(final)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Abort()
			if !strings.HasPrefix(filepath.Base(out.Dir()), ".merged.hubsync-tmp-") || filepath.Dir(out.Dir()) != filepath.Dir(final) {
				t.Errorf("temp dir %s not beside %s", out.Dir(), final)
			}
			if err := out.WriteShards(context.Background(), plan, streamFill); err != nil {
				t.Fatal(err)
			}
			if err := out.WriteFile("config.json", []byte("{}\n")); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(parent, "tokenizer.json")
			tok := bytes.Repeat([]byte(`{"tok":1}`), 300) // > 512 bytes: sample is a prefix
			if err := os.WriteFile(src, tok, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := out.CopyFile("tokenizer.json", src); err != nil {
				t.Fatal(err)
			}
			if err := out.WriteFile("nested/dir/README.md", []byte("hi")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("final dir exists before Commit: %v", err)
			}
			got, err := out.Commit()
			if err != nil {
				t.Fatal(err)
			}
			if got != final {
				t.Errorf("Commit = %s, want %s", got, final)
			}
			if _, err := os.Stat(out.Dir()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp dir still there: %v", err)
			}
			out.Abort() // no-op after Commit
			if _, err := os.Stat(final); err != nil {
				t.Fatalf("Abort after Commit removed the output: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(final)); len(entries) != 1 {
				t.Errorf("parent holds %d entries, want only the output", len(entries))
			}

			files := out.Files()
			var wantPaths []string
			for _, s := range plan.Shards {
				wantPaths = append(wantPaths, s.FileName)
			}
			wantPaths = append(wantPaths, "config.json", "nested/dir/README.md", "tokenizer.json")
			if tc.shards > 1 {
				wantPaths = append(wantPaths, IndexFileName)
			}
			if len(files) != len(wantPaths) {
				t.Fatalf("Files = %d entries, want %d (%v)", len(files), len(wantPaths), files)
			}
			onDisk := listDir(t, final)
			for i, f := range files {
				if i > 0 && files[i-1].Path >= f.Path {
					t.Errorf("Files not sorted: %s before %s", files[i-1].Path, f.Path)
				}
				data, err := os.ReadFile(filepath.Join(final, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				if f.Size != int64(len(data)) || f.SHA256 != sha256.Sum256(data) ||
					!bytes.Equal(f.Sample, data[:min(len(data), safetensors.SampleSize)]) {
					t.Errorf("%s: digest does not match the file on disk", f.Path)
				}
			}
			for _, p := range wantPaths {
				found := false
				for _, q := range onDisk {
					found = found || p == q
				}
				if !found {
					t.Errorf("%s missing on disk (%v)", p, onDisk)
				}
			}
			for _, q := range onDisk {
				if strings.Contains(q, ".tmp-") {
					t.Errorf("temporary file left: %s", q)
				}
			}

			// Every shard parses and holds the planned tensors with the streamed bytes.
			for _, s := range plan.Shards {
				f, err := safetensors.Open(filepath.Join(final, s.FileName))
				if err != nil {
					t.Fatal(err)
				}
				for _, ts := range s.Tensors {
					ti, ok := f.Lookup(ts.Name)
					if !ok {
						t.Fatalf("%s: %s missing", s.FileName, ts.Name)
					}
					b, err := f.ReadTensor(ti)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(b, tensorBytes(ts.Name, ts.Size())) {
						t.Errorf("%s: %s data differs", s.FileName, ts.Name)
					}
				}
				if f.Metadata["format"] != "pt" {
					t.Errorf("%s: metadata %v", s.FileName, f.Metadata)
				}
				f.Close()
			}
			if tc.shards > 1 {
				idx, _ := plan.IndexJSON()
				disk, _ := os.ReadFile(filepath.Join(final, IndexFileName))
				if !bytes.Equal(idx, disk) {
					t.Error("index on disk differs from IndexJSON")
				}
			}
		})
	}
}

func TestOutputFailureMidShard(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "merged")
	plan, err := PlanShards(testSpecs(), 5000)
	if err != nil {
		t.Fatal(err)
	}
	out, err := CreateOutput(final)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("non-finite value")
	calls := 0
	err = out.WriteShards(context.Background(), plan, func(ctx context.Context, ti safetensors.TensorInfo, w io.Writer) error {
		calls++
		if calls == len(plan.Shards[0].Tensors)+1 { // first tensor of the second shard, after writing part of it
			w.Write(make([]byte, ti.Size()/2))
			return boom
		}
		return streamFill(ctx, ti, w)
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), plan.Shards[1].FileName) {
		t.Fatalf("WriteShards = %v, want the fill error naming %s", err, plan.Shards[1].FileName)
	}
	// Only the first, complete shard is in the temp dir; no partial file.
	if got := listDir(t, out.Dir()); len(got) != 1 || got[0] != plan.Shards[0].FileName {
		t.Errorf("temp dir holds %v", got)
	}
	if _, err := out.Commit(); err == nil || !errors.Is(err, boom) {
		t.Fatalf("Commit after failure = %v", err)
	}
	out.Abort()
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("after Abort the parent holds %v", got)
	}
	if err := out.WriteFile("x", nil); err == nil {
		t.Error("WriteFile after Abort succeeded")
	}
	if _, err := out.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestOutputCanceled(t *testing.T) {
	parent := t.TempDir()
	plan, err := PlanShards(testSpecs(), 5000)
	if err != nil {
		t.Fatal(err)
	}
	out, err := CreateOutput(filepath.Join(parent, "m"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := out.WriteShards(ctx, plan, streamFill); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteShards = %v, want context.Canceled", err)
	}
	out.Abort()
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("parent holds %v", got)
	}
}

func TestCreateOutputRefuses(t *testing.T) {
	parent := t.TempDir()
	nonEmpty := filepath.Join(parent, "full")
	os.Mkdir(nonEmpty, 0o755)
	os.WriteFile(filepath.Join(nonEmpty, "old.txt"), []byte("x"), 0o644)
	file := filepath.Join(parent, "file")
	os.WriteFile(file, []byte("x"), 0o644)

	for _, tc := range []struct{ path, want string }{
		{nonEmpty, "not empty"},
		{file, "not a directory"},
		{"", "empty path"},
	} {
		if _, err := CreateOutput(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateOutput(%q) = %v, want %q", tc.path, err, tc.want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(nonEmpty, "old.txt")); string(data) != "x" {
		t.Error("existing file touched")
	}
	if got := listDir(t, parent); len(got) != 3 {
		t.Errorf("parent holds %v; a refused CreateOutput must not create anything", got)
	}

	// An existing empty directory is accepted and replaced by Commit.
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	out, err := CreateOutput(empty)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.WriteFile("a.json", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, empty); len(got) != 1 || got[0] != "a.json" {
		t.Errorf("committed dir holds %v", got)
	}

	// A final dir that filled up while writing is not clobbered.
	racy := filepath.Join(parent, "racy")
	out, err = CreateOutput(racy)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Abort()
	os.Mkdir(racy, 0o755)
	os.WriteFile(filepath.Join(racy, "theirs"), []byte("x"), 0o644)
	if _, err := out.Commit(); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Commit over a non-empty dir = %v", err)
	}
	if got := listDir(t, racy); len(got) != 1 {
		t.Errorf("racy dir holds %v", got)
	}
}

func TestOutputNames(t *testing.T) {
	out, err := CreateOutput(filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Abort()
	for _, bad := range []string{"", "/abs", "../up", "a/../../b", "a//b", "./a", `a\b`, "a/", "x\x00y"} {
		if err := out.WriteFile(bad, []byte("x")); err == nil {
			t.Errorf("WriteFile(%q) accepted", bad)
		}
	}
	if err := out.CopyFile("a", filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("CopyFile of a missing source = %v", err)
	}
	if err := out.CopyFile("a", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("CopyFile of a directory = %v", err)
	}
	// Rewriting a name replaces file and digest.
	out.WriteFile("c.json", []byte("old"))
	out.WriteFile("c.json", []byte("new!"))
	if fs := out.Files(); len(fs) != 1 || fs[0].Size != 4 || fs[0].SHA256 != sha256.Sum256([]byte("new!")) {
		t.Errorf("Files = %+v", fs)
	}
}

func TestOutputConcurrentShards(t *testing.T) {
	plan, err := PlanShards(testSpecs(), 3000)
	if err != nil {
		t.Fatal(err)
	}
	out, err := CreateOutput(filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Abort()
	var wg sync.WaitGroup
	errs := make([]error, len(plan.Shards))
	for i, s := range plan.Shards {
		wg.Go(func() { errs[i] = out.WriteShard(context.Background(), s, streamFill) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(out.Files()); got != len(plan.Shards) {
		t.Fatalf("%d files, want %d", got, len(plan.Shards))
	}
	dir, err := out.Commit()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Files() {
		data, _ := os.ReadFile(filepath.Join(dir, f.Path))
		if sha256.Sum256(data) != f.SHA256 {
			t.Errorf("%s digest mismatch", f.Path)
		}
	}
}
