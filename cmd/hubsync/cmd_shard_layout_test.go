package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// TestPushMergedShardLayout publishes two checkpoints of one run (LoRA on q_proj and v_proj) with push --merged
// under each layout: with delta the Hub receives, for the second checkpoint, exactly the shards whose bytes
// changed (the others are already stored and skipped), fewer bytes than with hf; both layouts publish the same
// tensors with the same values.
func TestPushMergedShardLayout(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t)
	spec := testmodel.AdapterSpec{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj"}, Seed: 11}
	var ckpts []string
	for _, step := range []int{100, 200} {
		d, err := testmodel.WriteCheckpoint(context.Background(), f.outputs, step, spec,
			testmodel.CheckpointOptions{Base: f.info, OptimizerSize: 1 << 10})
		if err != nil {
			t.Fatal(err)
		}
		ckpts = append(ckpts, d)
	}
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	second := map[export.ShardLayout]int64{}
	tensors := map[export.ShardLayout]map[string]string{}
	for _, layout := range []export.ShardLayout{export.ShardLayoutDelta, export.ShardLayoutHF} {
		repo := "w/run-" + string(layout)
		// The shards whose bytes change between the checkpoints, from local merges.
		var local []map[string]string
		for _, c := range ckpts {
			out := filepath.Join(t.TempDir(), "ref")
			if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: c, Out: out,
				MaxShardSize: 20_000, ShardLayout: layout, Device: "cpu", CardRepoID: repo}); err != nil {
				t.Fatal(err)
			}
			local = append(local, digests(t, out))
		}
		var changed []string
		shards := 0
		for name, sum := range local[1] {
			if strings.HasSuffix(name, ".safetensors") {
				shards++
				if local[0][name] != sum {
					changed = append(changed, sum)
				}
			}
		}
		sort.Strings(changed)

		var before hubtest.Stats
		for i, c := range ckpts {
			before = s.Stats()
			args := append(append([]string{}, g...), "push", c, "--repo", repo, "--merged", "--base", f.base,
				"--max-shard-size", "20kB", "--device", "cpu", "--tag", "step-"+[]string{"100", "200"}[i])
			if layout == export.ShardLayoutHF {
				args = append(args, "--shard-layout", "hf") // delta is the default
			}
			if code, _, errb := hubcliRun(t, args...); code != 0 {
				t.Fatalf("%s: push %s: exit %d\n%s", layout, c, code, errb)
			}
		}
		oids, n := receivedSince(before, s.Stats())
		second[layout] = n
		t.Logf("%s: second checkpoint: %d of %d shards changed, %d bytes received", layout, len(changed), shards, n)
		got := hubDigests(t, s, repo, "step-200")
		sameFiles(t, repo+"@step-200", got, local[1])
		if layout == export.ShardLayoutDelta {
			if len(changed) == 0 || len(changed) >= shards {
				t.Errorf("delta: %d of %d shards changed; want some but not all", len(changed), shards)
			}
			if strings.Join(oids, ",") != strings.Join(changed, ",") {
				t.Errorf("delta: second checkpoint sent objects %v, want exactly the changed shards %v", oids, changed)
			}
		}
		tensors[layout] = tensorDigests(t, s, repo, "step-200")
	}
	if second[export.ShardLayoutDelta] >= second[export.ShardLayoutHF] {
		t.Errorf("second checkpoint: delta sent %d bytes, hf %d; want fewer with delta", second[export.ShardLayoutDelta], second[export.ShardLayoutHF])
	}
	d, h := tensors[export.ShardLayoutDelta], tensors[export.ShardLayoutHF]
	if len(d) == 0 || len(d) != len(h) {
		t.Fatalf("tensor sets: delta %d, hf %d", len(d), len(h))
	}
	for n, v := range d {
		if h[n] != v {
			t.Errorf("tensor %s differs between layouts", n)
		}
	}
}

// tensorDigests downloads repo@rev and maps every tensor of its shards to its dtype, shape and sha256, checking
// that the index maps each tensor to the file holding it.
func tensorDigests(t *testing.T, s *hubtest.Server, repo, rev string) map[string]string {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	dir := filepath.Join(t.TempDir(), "dl")
	if _, err := c.Download(context.Background(), repo, rev, hub.DownloadOptions{LocalDir: dir}); err != nil {
		t.Fatal(err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, export.IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	out := map[string]string{}
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range f.Tensors {
			b, err := f.ReadTensor(ti)
			if err != nil {
				t.Fatal(err)
			}
			if idx.WeightMap[ti.Name] != filepath.Base(p) {
				t.Errorf("%s: index maps %s to %q, found in %s", repo, ti.Name, idx.WeightMap[ti.Name], filepath.Base(p))
			}
			sum := sha256.Sum256(b)
			out[ti.Name] = fmt.Sprintf("%s %v %x", ti.DType, ti.Shape, sum)
		}
		f.Close()
	}
	if len(out) != len(idx.WeightMap) {
		t.Errorf("%s: %d tensors in the shards, %d in the index", repo, len(out), len(idx.WeightMap))
	}
	return out
}
