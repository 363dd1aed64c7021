package merge

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestReadTensorMatchesSafetensors checks that every tensor ReadTensor serves (whole, and ranges starting and
// ending inside tiles, single bytes, empty) equals that tensor's bytes in the safetensors shards Execute writes,
// for a DoRA output (two-pass column norms) on odd tile boundaries and a plain 4-bit merge; and that the GGUF
// source lists the plan's tensors.
func TestReadTensorMatchesSafetensors(t *testing.T) {
	cases := []struct {
		name string
		c    mergeCase
	}{
		{"dora-embedding", mergeCase{base: testmodel.Awkward(testmodel.ArchLlama),
			adapter: testmodel.AdapterSpec{UseDoRA: true, EmbeddingLoRA: true, TargetModules: testmodel.AllLinear(), Seed: 51}, shard: 20000}},
		{"nf4-qwen2", mergeCase{base: testmodel.Tiny(testmodel.ArchQwen2), adapter: testmodel.AdapterSpec{Seed: 52}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base, adapter := tc.c.generate(t, dir)
			opts := Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "disk"), Threads: 3,
				MaxShardSize: tc.c.shard, Backends: smallTileBackend(101), Device: "small"}
			runMergeT(t, opts)
			opts.Out = filepath.Join(dir, "unused")
			p, err := NewPlan(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pr, err := p.Producer()
			if err != nil {
				t.Fatal(err)
			}
			src, err := pr.GGUFSource()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(src.Tensors()), len(p.Tensors()); got != want {
				t.Fatalf("GGUF source lists %d tensors, the plan %d", got, want)
			}
			seen := 0
			for _, s := range pr.Shards().Shards {
				file, err := os.ReadFile(filepath.Join(dir, "disk", s.FileName))
				if err != nil {
					t.Fatal(err)
				}
				h := int64(len(s.Layout.Header))
				for _, ti := range s.Layout.Tensors {
					seen++
					want := file[h+ti.Begin : h+ti.End]
					size := int64(len(want))
					ranges := [][2]int64{{0, size}, {0, 0}}
					if size > 0 {
						ranges = append(ranges, [2]int64{size - 1, 1}, [2]int64{size / 3, size/2 - size/3}, [2]int64{0, 1})
					}
					for _, r := range ranges {
						var b bytes.Buffer
						if err := src.ReadTensor(context.Background(), ti.Name, r[0], r[1], &b); err != nil {
							t.Fatalf("%s [%d,+%d): %v", ti.Name, r[0], r[1], err)
						}
						if !bytes.Equal(b.Bytes(), want[r[0]:r[0]+r[1]]) {
							t.Fatalf("%s [%d,+%d): ReadTensor bytes differ from the safetensors shard", ti.Name, r[0], r[1])
						}
					}
				}
			}
			if seen != len(p.Tensors()) {
				t.Errorf("shards hold %d tensors, plan %d", seen, len(p.Tensors()))
			}
			for _, bad := range []struct {
				name   string
				off, n int64
			}{{"no.such.tensor", 0, 1}, {p.Tensors()[0].Name, -1, 1}, {p.Tensors()[0].Name, 0, p.Tensors()[0].Bytes + 1}} {
				if err := pr.ReadTensor(context.Background(), bad.name, bad.off, bad.n, io.Discard); err == nil {
					t.Errorf("ReadTensor(%s, %d, %d) succeeded", bad.name, bad.off, bad.n)
				}
			}
		})
	}
}
