//go:build cuda

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge/cuda"
)

// TestCUDADeviceFlag runs merge in a -tags cuda build on a machine without a usable CUDA device (CI): --device cuda
// exits 1 naming the reason, --device auto merges on the CPU with one log line saying why, and its shards are the
// --device cpu ones byte for byte.
func TestCUDADeviceFlag(t *testing.T) {
	p := cuda.Provider()
	if p.Available() {
		t.Skip("a usable CUDA device is present")
	}
	why := p.Unavailable()
	dir := t.TempDir()
	ctx := context.Background()
	base := filepath.Join(dir, "base")
	bi, err := testmodel.GenerateBase(ctx, base, testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-1")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 5}); err != nil {
		t.Fatal(err)
	}
	merge := func(device string) (int, string, string) {
		out := filepath.Join(dir, device, "merged")
		code, _, stderr := hubcliRun(t, "merge", "--base", base, "--adapter", adapter, "--out", out, "--device", device)
		return code, stderr, out
	}
	code, stderr, out := merge("cuda")
	if code != 1 || !strings.Contains(stderr, "--device cuda: "+why) {
		t.Fatalf("--device cuda: exit %d, stderr %q; want 1 and the reason %q", code, stderr, why)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("--device cuda left %s behind (%v)", out, err)
	}
	code, stderr, autoOut := merge("auto")
	if code != 0 || strings.Count(stderr, "merging on the CPU") != 1 || !strings.Contains(stderr, why) {
		t.Fatalf("--device auto: exit %d, stderr %q; want 0 and one fallback line naming %q", code, stderr, why)
	}
	code, stderr, cpuOut := merge("cpu")
	if code != 0 || strings.Contains(stderr, "merging on the CPU") {
		t.Fatalf("--device cpu: exit %d, stderr %q", code, stderr)
	}
	shards, _ := filepath.Glob(filepath.Join(cpuOut, "*.safetensors"))
	if len(shards) == 0 {
		t.Fatal("no shards written")
	}
	for _, s := range shards {
		a, err1 := os.ReadFile(filepath.Join(autoOut, filepath.Base(s)))
		c, err2 := os.ReadFile(s)
		if err1 != nil || err2 != nil || !bytes.Equal(a, c) {
			t.Fatalf("%s: auto and cpu differ (%v, %v)", filepath.Base(s), err1, err2)
		}
	}
}
