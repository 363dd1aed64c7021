package merge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// shardFiles maps each shard file of a merged directory to its tensor names and sha256.
type shardFile struct {
	tensors []string
	sum     [32]byte
}

func shardFiles(t *testing.T, dir string) map[string]shardFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]shardFile{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ti := range f.Tensors {
			names = append(names, ti.Name)
		}
		f.Close()
		out[filepath.Base(p)] = shardFile{tensors: names, sum: sha256.Sum256(raw)}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sortNatural(ks)
	return ks
}

// TestShardLayoutDelta merges two checkpoints of one run under both layouts: with delta, every shard holding no
// tensor that differs between the checkpoints has the same name and bytes in both, only the shards with changed
// tensors differ, and the tensor set and values equal the hf layout's.
func TestShardLayoutDelta(t *testing.T) {
	tied := testmodel.Tiny(testmodel.ArchQwen2) // tied embeddings: an embedding LoRA unties lm_head
	tests := []struct {
		name    string
		base    testmodel.BaseSpec
		adapter testmodel.AdapterSpec
		// changed lists substrings of the tensors the plan counts as changed (TensorKind.Changed).
		changed []string
	}{
		{"q_proj,v_proj", testmodel.Tiny(testmodel.ArchLlama),
			testmodel.AdapterSpec{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj"}, Seed: 5},
			[]string{"q_proj", "v_proj"}},
		{"embedding LoRA on a tied base, modules_to_save norm", tied,
			testmodel.AdapterSpec{R: 2, Alpha: 4, TargetModules: []string{"o_proj"}, EmbeddingLoRA: true,
				ModulesToSave: []string{"model.norm"}, Seed: 9},
			// lm_head is the untied original embedding, taken from the adapter's saved base_layer: constant
			// here, but adapter-supplied, so it counts as changed.
			[]string{"o_proj", "embed_tokens", "model.norm", "lm_head"}},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			info, err := testmodel.GenerateBase(ctx, base, tc.base)
			if err != nil {
				t.Fatal(err)
			}
			outputs := filepath.Join(dir, "outputs")
			var ckpts []string
			for _, step := range []int{10, 20} {
				c, err := testmodel.WriteCheckpoint(ctx, outputs, step, tc.adapter, testmodel.CheckpointOptions{Base: info, OptimizerSize: 1})
				if err != nil {
					t.Fatal(err)
				}
				ckpts = append(ckpts, c)
			}
			merged := func(ckpt string, layout export.ShardLayout) string {
				out := filepath.Join(dir, "out-"+filepath.Base(ckpt)+"-"+string(layout))
				runMergeT(t, Options{Base: base, Adapter: ckpt, Out: out, MaxShardSize: 6000, ShardLayout: layout, Device: DeviceCPU})
				return out
			}
			d1, d2 := merged(ckpts[0], ""), merged(ckpts[1], export.ShardLayoutDelta)
			h2 := merged(ckpts[1], export.ShardLayoutHF)

			// Same tensors, same values under both layouts.
			if a, b := readOutput(t, d2), readOutput(t, h2); !reflect.DeepEqual(a, b) {
				t.Fatalf("delta and hf layouts hold different tensors: %v vs %v", sortedKeys(a), sortedKeys(b))
			}
			isChanged := func(name string) bool {
				for _, c := range tc.changed {
					if strings.Contains(name, c) {
						return true
					}
				}
				return false
			}
			p, err := NewPlan(ctx, Options{Base: base, Adapter: ckpts[1], Out: filepath.Join(dir, "x"), MaxShardSize: 6000, ShardLayout: export.ShardLayoutHF})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, ot := range p.tensors {
				if ot.Kind.Changed() != isChanged(ot.Name) {
					t.Errorf("tensor %s: kind %s, want changed %v", ot.Name, ot.Kind, isChanged(ot.Name))
				}
			}
			// Every tensor that differs between the checkpoints is one the plan counts as changed.
			t1, t2 := readOutput(t, d1), readOutput(t, d2)
			for n, a := range t1 {
				if !bytes.Equal(a.Raw, t2[n].Raw) && !isChanged(n) {
					t.Errorf("tensor %s differs between checkpoints but is not counted as changed", n)
				}
			}

			s1, s2 := shardFiles(t, d1), shardFiles(t, d2)
			if !reflect.DeepEqual(sortedKeys(s1), sortedKeys(s2)) {
				t.Fatalf("shard names differ across checkpoints: %v vs %v", sortedKeys(s1), sortedKeys(s2))
			}
			var same, differ int
			seenChanged := false
			for _, name := range sortedKeys(s2) {
				sf := s2[name]
				nChanged := 0
				for _, n := range sf.tensors {
					if isChanged(n) {
						nChanged++
					}
				}
				if nChanged != 0 && nChanged != len(sf.tensors) {
					t.Errorf("%s mixes changed and unchanged tensors: %v", name, sf.tensors)
				}
				if nChanged == 0 && seenChanged {
					t.Errorf("%s (unchanged tensors %v) comes after a shard of changed ones", name, sf.tensors)
				}
				seenChanged = seenChanged || nChanged > 0
				if !reflect.DeepEqual(s1[name].tensors, sf.tensors) {
					t.Errorf("%s holds %v in one checkpoint, %v in the other", name, s1[name].tensors, sf.tensors)
				}
				if s1[name].sum == sf.sum {
					same++
				} else {
					differ++
					if nChanged == 0 {
						t.Errorf("%s holds only unchanged tensors but differs across checkpoints", name)
					}
				}
			}
			if same == 0 || differ == 0 {
				t.Errorf("%d identical and %d changed shards; want some of each", same, differ)
			}

			// hf keeps huggingface_hub's layout: the natural order packed in one group.
			want, err := export.PlanShards(p.specs(), 6000)
			if err != nil {
				t.Fatal(err)
			}
			hs := shardFiles(t, h2)
			if len(hs) != len(want.Shards) {
				t.Fatalf("hf layout has %d shards, huggingface_hub's rule %d", len(hs), len(want.Shards))
			}
			for _, s := range want.Shards {
				var names []string
				for _, ti := range s.Layout.Tensors {
					names = append(names, ti.Name)
				}
				if !reflect.DeepEqual(hs[s.FileName].tensors, names) {
					t.Errorf("hf %s holds %v, want %v", s.FileName, hs[s.FileName].tensors, names)
				}
			}
		})
	}
}

func TestShardLayoutInvalid(t *testing.T) {
	_, err := NewPlan(context.Background(), Options{Base: t.TempDir(), Adapter: t.TempDir(), Out: filepath.Join(t.TempDir(), "o"), ShardLayout: "squashed"})
	if err == nil || !strings.Contains(err.Error(), "shard layout") {
		t.Errorf("err %v, want a shard layout error", err)
	}
}
