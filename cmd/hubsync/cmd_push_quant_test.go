package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/merge"
)

// TestPushMergedNF4CLI: push --merged --dtype nf4 publishes exactly what merge writes with the same 4-bit options.
func TestPushMergedNF4CLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 500)
	ckpt := filepath.Join(f.outputs, "checkpoint-500")
	ref := filepath.Join(t.TempDir(), "ref")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: ref, Device: "cpu", CardRepoID: "w/model-bnb-4bit",
		Quant: &merge.QuantOutput{Type: "nf4", Blocksize: 128, DoubleQuant: true}}); err != nil {
		t.Fatal(err)
	}
	want := digests(t, ref)
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	args := append(g, "push", ckpt, "--repo", "w/model-bnb-4bit", "--merged", "--base", f.base, "--dtype", "nf4",
		"--blocksize", "128", "--device", "cpu")
	if code, _, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("push --merged --dtype nf4: exit %d\n%s", code, errb)
	}
	sameFiles(t, "w/model-bnb-4bit", hubDigests(t, s, "w/model-bnb-4bit", "main"), want)
	if code, _, errb := hubcliRun(t, append(g, "push", ckpt, "--repo", "w/x", "--dtype", "nf4")...); code != 2 {
		t.Errorf("--dtype nf4 without --merged: exit %d, %s", code, errb)
	}
}
