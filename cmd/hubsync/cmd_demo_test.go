package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// TestDemo runs `hubsync demo` in-process, as the README's first command does, with a short save interval.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a few seconds")
	}
	for _, tc := range []struct {
		name string
		keep bool
	}{{"cleaned-up", false}, {"kept", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			args := []string{"demo", "--dir", dir, "--checkpoints", "2", "--interval", "300ms", "--log-format", "json"}
			if tc.keep {
				args = append(args, "--keep")
			}
			var stdout bytes.Buffer
			stderr := &demoLogBuffer{}
			code := run(context.Background(), args, strings.NewReader(""), &stdout, stderr)
			out := stdout.String()
			if code != exitOK {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, demoTail(stderr.String(), 4000))
			}
			for _, want := range []string{
				"demo/tiny-llama", "Upload checkpoint-10 (step 10)", "Upload checkpoint-20 (step 20)", "initial commit",
				"step-10", "step-20", "model-00001-of-00003.safetensors", "model.safetensors.index.json", "(LFS)",
				"step-20  ok: 10 files equal to a local merge byte for byte", "max |error|", "all checks passed",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "FAILED") {
				t.Errorf("a check failed:\n%s", out)
			}
			if !strings.Contains(stderr.String(), `"stage":"committed"`) {
				t.Errorf("stderr has no info log of a committed stage:\n%s", demoTail(stderr.String(), 2000))
			}
			_, err := os.Stat(filepath.Join(dir, "hub"))
			if tc.keep && err != nil {
				t.Errorf("--keep: the Hub data is gone: %v", err)
			}
			if !tc.keep && !os.IsNotExist(err) {
				t.Errorf("without --keep the working directory %s remains (%v)", dir, err)
			}
		})
	}
}

func TestDemoUsage(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no checkpoints", []string{"demo", "--checkpoints", "0"}, "--checkpoints"},
		{"negative interval", []string{"demo", "--interval", "-1s"}, "--interval"},
		{"dir not empty", []string{"demo", "--dir", full}, "not empty"},
		{"argument", []string{"demo", "extra"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(full, "x")); err != nil {
		t.Errorf("the demo touched a non-empty --dir: %v", err)
	}
}

// TestDemoChecksCatchErrors makes sure the demo's two checks can fail: a merged model 4 bf16 ulps off the
// reference in one element, a shard whose bytes differ from the local merge, and a card that
// differs beyond its adapter line.
func TestDemoChecksCatchErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base, err := testmodel.GenerateBase(ctx, filepath.Join(dir, "base"), testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-5")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, base, testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	// One weight file (hf layout), so the largest tensor is in model.safetensors.
	res, err := merge.Run(ctx, merge.Options{Base: base.Dir, Adapter: adapter, Out: filepath.Join(dir, "merged"), Device: "cpu",
		ShardLayout: export.ShardLayoutHF})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := testmodel.ReferenceMerge(base.Dir, adapter)
	if err != nil {
		t.Fatal(err)
	}

	// The merge output itself passes both checks.
	rc, err := testmodel.CompareDir(res.Dir, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Problems) > 0 || rc.Tensors != len(ref) || rc.WorstRatio > 1 || rc.MaxAbs == 0 {
		t.Fatalf("clean merge: %+v", rc)
	}
	same, diffs, err := compareWithLocalMerge(res.Dir, res)
	if err != nil || len(diffs) > 0 || same != len(res.Files) {
		t.Fatalf("clean merge vs itself: %d same, diffs %v, err %v", same, diffs, err)
	}

	// A changed card is a difference.
	snap := filepath.Join(dir, "snapshot")
	demoCopyTree(t, res.Dir, snap)
	card := filepath.Join(snap, "README.md")
	raw, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	demoWriteFile(t, card, append(raw, "extra\n"...))
	if _, diffs, _ := compareWithLocalMerge(snap, res); len(diffs) != 1 || !strings.Contains(diffs[0], "README.md") {
		t.Errorf("changed card: diffs %v", diffs)
	}
	demoWriteFile(t, card, raw)

	// One element of the largest tensor changed: the bytes differ and the value leaves the tolerance.
	shard := filepath.Join(snap, "model.safetensors")
	f, err := safetensors.Open(shard)
	if err != nil {
		t.Fatal(err)
	}
	var big safetensors.TensorInfo
	for _, ti := range f.Tensors {
		if ti.Size() > big.Size() {
			big = ti
		}
	}
	off := f.DataOffset() + big.Begin
	f.Close()
	if big.DType != tensor.BF16 {
		t.Fatalf("largest tensor %s is %s, want bf16", big.Name, big.DType)
	}
	data, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	// The element of largest magnitude, moved 4 bf16 ulps further from zero (bf16 is sign-magnitude, so +4 on
	// the bits grows |v|): at least 3.5 ulps from the reference, whose tolerance is at most 2 ulps (one binade up)
	// plus 2^-17 of the largest value.
	r := ref[big.Name].Values
	i := 0
	for k := range r {
		if math.Abs(r[k]) > math.Abs(r[i]) {
			i = k
		}
	}
	at := off + int64(2*i)
	h := binary.LittleEndian.Uint16(data[at:])
	v := tensor.BF16ToF32(h)
	binary.LittleEndian.PutUint16(data[at:], h+4)
	demoWriteFile(t, shard, data)
	rc, err = testmodel.CompareDir(snap, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Problems) == 0 || !strings.Contains(rc.Problems[0], big.Name) || rc.WorstRatio <= 1 {
		t.Errorf("a 4-ulp error in %s (value %v, reference %v) passed the reference check: %+v", big.Name, v, r[i], rc)
	}
	if _, diffs, _ := compareWithLocalMerge(snap, res); len(diffs) != 1 || !strings.Contains(diffs[0], "model.safetensors") {
		t.Errorf("changed shard: diffs %v", diffs)
	}

	// A tensor missing from the merged model is reported.
	delete(ref, big.Name)
	ref["model.extra.weight"] = testmodel.RefTensor{Shape: []int64{1}, Values: []float64{1}}
	rc, _ = testmodel.CompareDir(res.Dir, ref)
	if len(rc.Problems) != 2 {
		t.Errorf("extra and missing tensors: %v", rc.Problems)
	}
}

func demoCopyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func demoWriteFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// demoLogBuffer collects the logs, which the daemon's goroutines write concurrently.
type demoLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *demoLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *demoLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func demoTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
