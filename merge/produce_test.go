package merge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestProducerMatchesExecute checks that every byte range a Producer serves (whole shards, ranges starting and
// ending inside tensors and tiles, inside the header, single bytes) equals the same bytes of the directory
// Execute writes, for a sharded DoRA output on odd tile boundaries.
func TestProducerMatchesExecute(t *testing.T) {
	cases := []struct {
		name string
		c    mergeCase
	}{
		{"dora-embedding-sharded", mergeCase{base: testmodel.Awkward(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{UseDoRA: true, EmbeddingLoRA: true, TargetModules: testmodel.AllLinear(), Seed: 41}, shard: 20000}},
		{"nf4-modules-to-save", mergeCase{base: testmodel.Tiny(testmodel.ArchQwen2),
			adapter: testmodel.AdapterSpec{ModulesToSave: []string{"lm_head"}, Seed: 42}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base, adapter := tc.c.generate(t, dir)
			opts := Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "disk"), Threads: 3,
				MaxShardSize: tc.c.shard, Backends: smallTileBackend(101), Device: "small"}
			runMergeT(t, opts)
			opts.Out = filepath.Join(dir, "small")
			var lastDone, lastTotal int64
			opts.Progress = func(done, total int64) { lastDone, lastTotal = done, total }
			p, err := NewPlan(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pr, err := p.Producer()
			if err != nil {
				t.Fatal(err)
			}
			small, _, err := pr.WriteSmallFiles(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range small {
				want, _ := os.ReadFile(filepath.Join(dir, "disk", f.Path))
				got, _ := os.ReadFile(filepath.Join(dir, "small", f.Path))
				if !bytes.Equal(want, got) {
					t.Errorf("%s differs from the disk output", f.Path)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for i, s := range pr.Shards().Shards {
				want, err := os.ReadFile(filepath.Join(dir, "disk", s.FileName))
				if err != nil {
					t.Fatal(err)
				}
				d, err := pr.Digest(context.Background(), i)
				if err != nil {
					t.Fatal(err)
				}
				if d.Size != int64(len(want)) || d.SHA256 != sha(want) || !bytes.Equal(d.Sample, want[:min(len(want), 512)]) {
					t.Fatalf("%s: pass-one digest differs from the written file", s.FileName)
				}
				size := int64(len(want))
				h := int64(len(s.Layout.Header))
				ranges := [][2]int64{{0, size}, {0, 1}, {h - 3, 10}, {h, 1}, {size - 1, 1}, {size / 2, size - size/2}}
				for range 20 {
					a := rng.Int64N(size)
					ranges = append(ranges, [2]int64{a, 1 + rng.Int64N(size-a)})
				}
				if i == len(pr.Shards().Shards)-1 && (lastDone != lastTotal || lastTotal != pr.Shards().FileSize()) {
					t.Errorf("pass-one progress ended at %d of %d, want %d", lastDone, lastTotal, pr.Shards().FileSize())
				}
				for _, r := range ranges {
					var b bytes.Buffer
					if err := pr.ProduceRange(context.Background(), i, r[0], r[1], &b); err != nil {
						t.Fatalf("%s [%d,+%d): %v", s.FileName, r[0], r[1], err)
					}
					if !bytes.Equal(b.Bytes(), want[r[0]:r[0]+r[1]]) {
						t.Fatalf("%s [%d,+%d): produced bytes differ from the written file", s.FileName, r[0], r[1])
					}
					b.Reset()
					if err := pr.ProduceVerified(context.Background(), i, d, r[0], r[1], &b); err != nil {
						t.Fatalf("%s [%d,+%d) verified: %v", s.FileName, r[0], r[1], err)
					}
					if !bytes.Equal(b.Bytes(), want[r[0]:r[0]+r[1]]) {
						t.Fatalf("%s [%d,+%d) verified: bytes differ", s.FileName, r[0], r[1])
					}
				}
			}
		})
	}
}

// TestProduceVerifiedDetectsChange checks that a range whose bytes differ from pass one fails with
// ErrOutputChanged before the range is complete.
func TestProduceVerifiedDetectsChange(t *testing.T) {
	c := mergeCase{base: testmodel.Tiny(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 43}}
	dir := t.TempDir()
	base, adapter := c.generate(t, dir)
	p, err := NewPlan(context.Background(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "o"), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pr, err := p.Producer()
	if err != nil {
		t.Fatal(err)
	}
	d, err := pr.Digest(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	d.Blocks[0][0] ^= 1
	var b bytes.Buffer
	n := min(d.Size, VerifyBlockSize)
	err = pr.ProduceVerified(context.Background(), 0, d, 0, n, &b)
	if !errors.Is(err, ErrOutputChanged) {
		t.Fatalf("err = %v, want ErrOutputChanged", err)
	}
	if int64(b.Len()) >= n {
		t.Errorf("all %d bytes of the changed block were written before the error", b.Len())
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }
