package gguf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// smallChunks makes every tensor produce a few rows at a time (whole heads when permuting).
func smallChunks(f *File, floats int64) {
	for _, p := range f.tensors {
		p.setChunk(floats)
	}
}

func TestProduceRangeEqualsWrite(t *testing.T) {
	s := modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 4, kvHeads: 2, vocab: 16, bias: true,
		extra: map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0}}}
	for _, ft := range []FileType{FileQ4_KM, FileF16, FileBF16} {
		f, _ := plan(t, s, ft)
		smallChunks(f, 700) // 2 rows of 256, or one head of 64 rows for Q/K
		full := writeAll(t, f)
		if _, err := Parse(full); err != nil {
			t.Fatal(err)
		}
		// Whole chunks vs the default chunking give the same bytes.
		g, _ := plan(t, s, ft)
		if other := writeAll(t, g); !bytes.Equal(other, full) {
			t.Fatalf("%s: chunk size changes the bytes", ft)
		}
		r := rand.New(rand.NewSource(int64(ft)))
		ranges := [][2]int64{{0, 0}, {0, f.Size()}, {0, int64(len(f.header))}, {int64(len(f.header)) - 1, 2}, {f.Size() - 1, 1}, {f.Size(), 0}}
		for _, ti := range f.Tensors() {
			start := int64(len(f.header)) + ti.Offset
			ranges = append(ranges, [2]int64{start, 40}, [2]int64{start + ti.Bytes - 1, 2}, [2]int64{start + ti.Bytes, padTo(ti.Bytes, Alignment) - ti.Bytes})
		}
		for range 40 {
			off := r.Int63n(f.Size() + 1)
			ranges = append(ranges, [2]int64{off, r.Int63n(min(f.Size()-off, 20000) + 1)})
		}
		for _, rg := range ranges {
			rg[1] = min(rg[1], f.Size()-rg[0])
			var b bytes.Buffer
			if err := f.ProduceRange(context.Background(), rg[0], rg[1], &b); err != nil {
				t.Fatalf("%s: ProduceRange(%d, %d): %v", ft, rg[0], rg[1], err)
			}
			if !bytes.Equal(b.Bytes(), full[rg[0]:rg[0]+rg[1]]) {
				t.Fatalf("%s: ProduceRange(%d, %d) differs from Write's bytes", ft, rg[0], rg[1])
			}
		}
		for _, bad := range [][2]int64{{-1, 1}, {0, f.Size() + 1}, {f.Size(), 1}, {3, -1}} {
			if err := f.ProduceRange(context.Background(), bad[0], bad[1], io.Discard); err == nil {
				t.Errorf("ProduceRange(%d, %d) accepted", bad[0], bad[1])
			}
		}
	}
}

func TestProduceRangeReadsOnlyItsTensors(t *testing.T) {
	f, src := plan(t, llamaSpec, FileQ8_0)
	ti := f.Tensors()[5]
	src.reads = nil
	if err := f.ProduceRange(context.Background(), int64(len(f.header))+ti.Offset+1, ti.Bytes-2, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := f.tensors[5].src
	for _, r := range src.reads {
		if r != want {
			t.Errorf("a range inside %s read %s", ti.Name, r)
		}
	}
	if len(src.reads) == 0 {
		t.Error("nothing read")
	}
}

func TestThreadsDoNotChangeBytes(t *testing.T) {
	s := modelSpec{hfArch: "Qwen2ForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 4, kvHeads: 2, vocab: 16, bias: true, tied: true}
	var outs [][]byte
	for _, threads := range []int{1, 3} {
		src := s.source(t)
		f, err := planWith(src, Options{Type: FileQ5_KM, Config: s.config(t), Threads: threads}, testHooks(s.vocab))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, writeAll(t, f))
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("1 and 3 threads give different files")
	}
}

func TestMemoryBounded(t *testing.T) {
	// A 8192×256 F32 embedding (8 MiB) is read in chunks of at most 4 MiB.
	s := modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 2, kvHeads: 2, vocab: 8192, tied: true, dtype: tensor.F32}
	f, src := plan(t, s, FileQ8_0)
	if err := f.Write(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if src.max > chunkFloats*4 {
		t.Errorf("largest read %d bytes, want ≤ %d", src.max, chunkFloats*4)
	}
	n := 0
	for _, r := range src.reads {
		if r == "model.embed_tokens.weight" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("the embedding was read in %d pieces", n)
	}
}

func TestQuantizedFromRounded16Bit(t *testing.T) {
	// An F32 checkpoint of a bfloat16 model is quantized from its bf16-rounded values (what llama-quantize
	// gets from the converter's bf16 file), while q8_0 (a converter type) uses the F32 values as the converter does.
	s := modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 2, kvHeads: 2, vocab: 16, dtype: tensor.F32}
	f32, _ := plan(t, s, FileQ4_KM)
	s16 := s
	s16.dtype = tensor.BF16
	bf, _ := plan(t, s16, FileQ4_KM)
	a, b := writeAll(t, f32), writeAll(t, bf)
	ha, _ := Parse(a)
	hb, _ := Parse(b)
	for _, name := range []string{"blk.0.attn_q.weight", "output.weight"} {
		ta, _ := ha.Tensor(name)
		tb, _ := hb.Tensor(name)
		if !bytes.Equal(a[ha.DataOffset+ta.Offset:][:ta.Bytes], b[hb.DataOffset+tb.Offset:][:tb.Bytes]) {
			t.Errorf("%s: quantized from F32 differs from quantized from BF16", name)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m-Q4_K_M.gguf")
	f, src := plan(t, llamaSpec, FileQ4_0)
	if err := WriteFile(context.Background(), path, f); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, writeAll(t, f)) {
		t.Error("WriteFile and Write differ")
	}
	// Failures leave nothing behind, not even the temporary file.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	bad := filepath.Join(dir, "cancelled.gguf")
	if err := WriteFile(ctx, bad, f); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	src.fail = f.tensors[3].src
	if err := WriteFile(context.Background(), filepath.Join(dir, "failed.gguf"), f); err == nil {
		t.Error("a failing source gave no error")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "m-Q4_K_M.gguf" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v", names)
	}
}

func TestOpenDir(t *testing.T) {
	for _, shard := range []int64{0, 40000} {
		dir := t.TempDir()
		spec := testmodel.BaseSpec{Arch: testmodel.ArchLlama, Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 32,
			DType: tensor.BF16, Quant: testmodel.QuantNone, Seed: 3, ShardSize: shard}
		if _, err := testmodel.GenerateBase(context.Background(), dir, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors.index.json")); (err == nil) != (shard > 0) {
			t.Fatalf("shard %d: index present = %v", shard, err == nil)
		}
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := planWith(d, Options{Type: FileBF16, Config: cfg, TokenizerDir: dir}, testHooks(32))
		if err != nil {
			t.Fatal(err)
		}
		out := writeAll(t, f)
		h, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		// BF16 weights outside Q/K are the source bytes.
		st, err := safetensors.Open(filepath.Join(dir, shardOf(t, d, "model.layers.1.mlp.down_proj.weight")))
		if err != nil {
			t.Fatal(err)
		}
		ti, _ := st.Lookup("model.layers.1.mlp.down_proj.weight")
		want, err := st.ReadTensor(ti)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		gt, _ := h.Tensor("blk.1.ffn_down.weight")
		if !bytes.Equal(out[h.DataOffset+gt.Offset:][:gt.Bytes], want) {
			t.Error("ffn_down bytes differ from the checkpoint's")
		}
		if !slices.Contains(tensorNames(h), "output.weight") {
			t.Error("no output.weight")
		}
	}
	if _, err := OpenDir(t.TempDir()); err == nil {
		t.Error("an empty directory opened")
	}
}

func shardOf(t *testing.T, d *DirSource, name string) string {
	t.Helper()
	return filepath.Base(d.refs[name].f.Path)
}

func TestEndToEndRealTokenizers(t *testing.T) {
	for _, tc := range []struct {
		arch  testmodel.Arch
		tok   testmodel.TokenizerKind
		model string
		pre   string
		ft    FileType
	}{
		{testmodel.ArchLlama, testmodel.TokenizerLlama3, "gpt2", "llama-bpe", FileQ4_KM},
		{testmodel.ArchQwen2, testmodel.TokenizerQwen2, "gpt2", "qwen2", FileQ8_0},
		{testmodel.ArchMistral, testmodel.TokenizerSPM, "llama", "default", FileF16},
	} {
		t.Run(string(tc.tok), func(t *testing.T) {
			dir := t.TempDir()
			spec := testmodel.BaseSpec{Arch: tc.arch, Hidden: 256, Intermediate: 256, Layers: 2, Heads: 4, KVHeads: 2,
				Vocab: tc.tok.Size(), DType: tensor.BF16, Quant: testmodel.QuantNone, Seed: 4, Tokenizer: tc.tok, Bias: tc.arch == testmodel.ArchQwen2}
			if _, err := testmodel.GenerateBase(context.Background(), dir, spec); err != nil {
				t.Fatal(err)
			}
			d, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			f, err := Plan(d, Options{Type: tc.ft, Config: cfg, TokenizerDir: dir, Name: "e2e"})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "out.gguf")
			if err := WriteFile(context.Background(), path, f); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			m := kvMap(h)
			if m["tokenizer.ggml.model"].Value != tc.model || m["tokenizer.ggml.pre"].Value != tc.pre {
				t.Errorf("tokenizer model %v pre %v", m["tokenizer.ggml.model"].Value, m["tokenizer.ggml.pre"].Value)
			}
			toks, _ := m["tokenizer.ggml.tokens"].Value.([]string)
			if len(toks) != tc.tok.Size() {
				t.Errorf("%d tokens, want %d", len(toks), tc.tok.Size())
			}
			if m["general.file_type"].Value != uint32(tc.ft) {
				t.Errorf("file_type %v", m["general.file_type"].Value)
			}
		})
	}
	// No tokenizer at all: Plan fails with vocab's error and nothing is written.
	dir := t.TempDir()
	spec := testmodel.BaseSpec{Arch: testmodel.ArchLlama, Hidden: 64, Intermediate: 64, Layers: 1, Heads: 2, KVHeads: 2, Vocab: 32, DType: tensor.BF16, Quant: testmodel.QuantNone}
	if _, err := testmodel.GenerateBase(context.Background(), dir, spec); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"tokenizer.json", "tokenizer.model", "tokenizer_config.json"} {
		os.Remove(filepath.Join(dir, n))
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if _, err := Plan(d, Options{Type: FileF16, Config: cfg, TokenizerDir: dir}); err == nil || !strings.Contains(err.Error(), "tokenizer") {
		t.Errorf("no tokenizer: %v", err)
	}
}

func TestProduceRangeConcurrent(t *testing.T) {
	// Parallel multipart uploads call ProduceRange from several goroutines on one File.
	f, _ := plan(t, modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 1, heads: 4, kvHeads: 2, vocab: 16}, FileQ4_KM)
	full := writeAll(t, f)
	const parts = 4
	size := f.Size() / parts
	errs := make(chan error, parts)
	got := make([][]byte, parts)
	for i := range parts {
		go func() {
			var b bytes.Buffer
			n := size
			if i == parts-1 {
				n = f.Size() - int64(i)*size
			}
			err := f.ProduceRange(context.Background(), int64(i)*size, n, &b)
			got[i] = b.Bytes()
			errs <- err
		}()
	}
	for range parts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(bytes.Join(got, nil), full) {
		t.Error("concurrent parts differ from Write")
	}
}

// cancelSource cancels a context on its n-th read.
type cancelSource struct {
	*memSource
	n      int
	cancel context.CancelFunc
}

func (c *cancelSource) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return c.memSource.ReadTensor(ctx, name, off, n, w)
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteStopsOnCancelAndWriteError(t *testing.T) {
	s := modelSpec{hfArch: "LlamaForCausalLM", hidden: 256, ff: 256, layers: 2, heads: 4, kvHeads: 2, vocab: 16}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &cancelSource{memSource: s.source(t), n: 3, cancel: cancel}
	f, err := planWith(src, Options{Type: FileQ4_KM, Config: s.config(t)}, testHooks(s.vocab))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(ctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled mid-write: %v", err)
	}
	if err := f.Write(context.Background(), &failWriter{after: len(f.header) + 1000}); err == nil || err.Error() != "disk full" {
		t.Errorf("failing writer: %v", err)
	}
}
