//go:build cuda

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
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

// fakeCUDAChild marks the child process of TestCUDAFakeDeviceMerge.
const fakeCUDAChild = "HUBSYNC_FAKE_CUDA_MERGE_CHILD"

// TestCUDAFakeDeviceMerge runs whole merges with --device cuda against merge/cuda's stand-in libcuda.so.1 (host
// memory, host loops for the kernels) in a child process and requires the --device cpu shards byte for byte: plain
// LoRA, fan_in_fan_out, embedding LoRA and DoRA (rows and columns), with the generic and the best CPU kernels.
// It proves the wiring and the data path, not a GPU's arithmetic.
//
// With HUBSYNC_TEST_DEVICE=cuda the same merges run in this process on the machine's real driver and GPU (the GPU
// check of docs/cuda.md): HUBSYNC_TEST_DEVICE=cuda go test -tags cuda -v -run TestCUDAFakeDeviceMerge ./cmd/hubsync
func TestCUDAFakeDeviceMerge(t *testing.T) {
	if os.Getenv(fakeCUDAChild) != "1" && os.Getenv("HUBSYNC_TEST_DEVICE") != "cuda" {
		cc, err := exec.LookPath("cc")
		if err != nil {
			t.Skip("no C compiler")
		}
		dir := t.TempDir()
		build := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", filepath.Join(dir, "libcuda.so.1"), "fakecuda.c")
		build.Dir = filepath.Join("..", "..", "merge", "cuda", "testdata")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the fake driver: %v\n%s", err, out)
		}
		child := exec.Command(os.Args[0], "-test.run=^TestCUDAFakeDeviceMerge$", "-test.v")
		child.Env = append(os.Environ(), fakeCUDAChild+"=1", "LD_LIBRARY_PATH="+dir)
		out, err := child.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestCUDAFakeDeviceMerge") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if p := cuda.Provider(); !p.Available() {
		t.Fatalf("CUDA device unavailable: %s", p.Unavailable())
	}
	dir := t.TempDir()
	ctx := context.Background()
	bases := map[string]*testmodel.BaseInfo{}
	for name, mod := range map[string]func(*testmodel.BaseSpec){
		"bf16": func(s *testmodel.BaseSpec) { s.Quant, s.DoubleQuant = testmodel.QuantNone, false },
		"nf4":  func(s *testmodel.BaseSpec) { s.Quant, s.DoubleQuant = testmodel.QuantNF4, true },
		"fp4":  func(s *testmodel.BaseSpec) { s.Quant, s.Blocksize = testmodel.QuantFP4, 128 },
		"fifo": func(s *testmodel.BaseSpec) { s.Quant, s.DoubleQuant, s.FanInFanOut = testmodel.QuantNone, false, true },
	} {
		spec := testmodel.Tiny(testmodel.ArchLlama)
		mod(&spec)
		bi, err := testmodel.GenerateBase(ctx, filepath.Join(dir, "base-"+name), spec)
		if err != nil {
			t.Fatalf("base %s: %v", name, err)
		}
		bases[name] = bi
	}
	specs := []struct {
		name, base string
		spec       testmodel.AdapterSpec
		kernel     string
	}{
		{"lora", "bf16", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 5}, "auto"},
		{"lora-generic", "bf16", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 6, R: 16}, "generic"},
		{"nf4-double-quant", "nf4", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 7}, "auto"},
		{"fp4", "fp4", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 7}, "auto"},
		{"fan-in-fan-out", "fifo", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 7, FanInFanOut: true}, "auto"},
		{"embedding", "bf16", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 8, EmbeddingLoRA: true}, "auto"},
		// DoRA over rows uses SumSquares, whose assembly versions sum in lanes: compare with the generic kernels.
		{"dora", "bf16", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 9, UseDoRA: true, EmbeddingLoRA: true}, "generic"},
		{"dora-nf4", "nf4", testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 10, UseDoRA: true}, "generic"},
	}
	for _, s := range specs {
		t.Run(s.name, func(t *testing.T) {
			adapter := filepath.Join(dir, s.name)
			base := filepath.Join(dir, "base-"+s.base)
			if _, err := testmodel.GenerateAdapter(ctx, adapter, bases[s.base], s.spec); err != nil {
				t.Fatal(err)
			}
			outs := map[string]string{}
			for _, device := range []string{"cuda", "cpu"} {
				out := filepath.Join(dir, s.name+"-"+device)
				code, stdout, stderr := hubcliRun(t, "merge", "--base", base, "--adapter", adapter, "--out", out, "--device", device, "--kernel", s.kernel)
				if code != 0 {
					t.Fatalf("--device %s: exit %d: %s", device, code, stderr)
				}
				if device == "cuda" && !strings.Contains(stdout+stderr, "cuda/0") {
					t.Fatalf("--device cuda did not report the cuda backend:\n%s\n%s", stdout, stderr)
				}
				outs[device] = out
			}
			shards, _ := filepath.Glob(filepath.Join(outs["cpu"], "*.safetensors"))
			if len(shards) == 0 {
				t.Fatal("no shards")
			}
			for _, sh := range shards {
				a, err1 := os.ReadFile(filepath.Join(outs["cuda"], filepath.Base(sh)))
				c, err2 := os.ReadFile(sh)
				if err1 != nil || err2 != nil || !bytes.Equal(a, c) {
					t.Fatalf("%s: cuda and cpu differ (%v, %v)", filepath.Base(sh), err1, err2)
				}
			}
		})
	}
}
