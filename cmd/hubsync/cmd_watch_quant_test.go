package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// TestWatchCLINF4 runs `hubsync watch --dtype nf4`: the published step is the 4-bit merge (the same files merge
// writes with those options, card aside: it names the checkpoint the same way).
func TestWatchCLINF4(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
	ref := filepath.Join(t.TempDir(), "ref")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: filepath.Join(f.outputs, "checkpoint-10"),
		Out: ref, Device: "cpu", Quant: &merge.QuantOutput{Type: "fp4", Blocksize: 32, DoubleQuant: false}}); err != nil {
		t.Fatal(err)
	}
	code, out, errb := hubcliRun(t, "--log-format", "json", "watch", f.outputs, "--repo", "w/watched-4bit", "--merged",
		"--base", f.base, "--settle", "100ms", "--stop-after", "1", "--dtype", "fp4", "--blocksize", "32",
		"--double-quant=false", "--device", "cpu")
	if code != 0 {
		t.Fatalf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	sameFiles(t, "w/watched-4bit", hubDigests(t, s, "w/watched-4bit", "step-10"), digests(t, ref), "README.md")
	if code, _, errb := hubcliRun(t, "watch", f.outputs, "--repo", "w/x", "--dtype", "nf4", "--blocksize", "33"); code != 2 {
		t.Errorf("bad --blocksize: exit %d, %s", code, errb)
	}
}

// TestWatchCLIDTypePair runs `hubsync watch --dtype bf16,nf4 --quant-repo R`: the step is published twice, the
// bf16 merge to --repo and the nf4 merge (compute dtype bf16) to R, both tagged; --quant-repo without a pair is a
// usage error.
func TestWatchCLIDTypePair(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
	ckpt := filepath.Join(f.outputs, "checkpoint-10")
	ref16, ref4 := filepath.Join(t.TempDir(), "ref16"), filepath.Join(t.TempDir(), "ref4")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: ref16, Device: "cpu",
		DType: tensor.BF16}); err != nil {
		t.Fatal(err)
	}
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: ref4, Device: "cpu",
		DType: tensor.BF16, Quant: &merge.QuantOutput{Type: "nf4", Blocksize: 64, DoubleQuant: true}}); err != nil {
		t.Fatal(err)
	}
	code, out, errb := hubcliRun(t, "--log-format", "json", "watch", f.outputs, "--repo", "w/pair", "--quant-repo", "w/pair-small",
		"--base", f.base, "--settle", "100ms", "--stop-after", "1", "--dtype", "bf16,nf4", "--device", "cpu")
	if code != 0 {
		t.Fatalf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	sameFiles(t, "w/pair", hubDigests(t, s, "w/pair", "step-10"), digests(t, ref16), "README.md")
	sameFiles(t, "w/pair-small", hubDigests(t, s, "w/pair-small", "step-10"), digests(t, ref4), "README.md")
	for _, args := range [][]string{
		{"--dtype", "nf4", "--quant-repo", "w/q"},
		{"--dtype", "bf16,nf4", "--quant-repo", "w/x"},
		{"--dtype", "nf4,fp4"},
	} {
		if code, _, errb := hubcliRun(t, append([]string{"watch", f.outputs, "--repo", "w/x"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, %s", args, code, errb)
		}
	}
}
