//go:build cuda

package cuda

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

// TestProviderWithoutDevice: on a machine without a CUDA device (CI) the provider is unavailable, says why, and
// New fails with that reason.
func TestProviderWithoutDevice(t *testing.T) {
	pr := probe()
	if pr.Err == nil {
		t.Skipf("a CUDA device answers (%s)", pr.Device)
	}
	p := Provider()
	if p.Available() {
		t.Fatal("Available() = true without a device")
	}
	why := p.Unavailable()
	if why != pr.Err.Error() {
		t.Fatalf("reason %q, probe says %q", why, pr.Err)
	}
	if _, err := p.New(nil); err == nil || !strings.Contains(err.Error(), why) {
		t.Fatalf("New: %v, want the reason %q", err, why)
	}
	t.Logf("cuda: %s", why)
}

// fakeChildEnv marks the test process that runs against testdata/fakecuda.c's libcuda.so.1.
const fakeChildEnv = "HUBSYNC_FAKE_CUDA_CHILD"

// TestFakeDriver builds a stand-in libcuda.so.1 (host memory, host loops for the kernels) and runs, in a child
// process that loads it, the whole provider: probe, PTX load, self-check, and random tiles of every kind through
// gpu.c's data path against the Go CPU backend's bytes, with several goroutines at once. It proves the plumbing
// around the kernels, not the device's arithmetic (that needs a GPU).
func TestFakeDriver(t *testing.T) {
	if os.Getenv(fakeChildEnv) == "1" {
		fakeDriverChild(t)
		return
	}
	out, err := runOnFakeDriver(t, "-test.run=^TestFakeDriver$", "-test.v")
	if err != nil || !strings.Contains(string(out), "fake device ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// runOnFakeDriver builds testdata/fakecuda.c as libcuda.so.1 and runs this test binary with args in a child
// process that loads it, returning the child's output.
func runOnFakeDriver(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	build := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", filepath.Join(dir, "libcuda.so.1"), "fakecuda.c")
	build.Dir = "testdata"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the fake driver: %v\n%s", err, out)
	}
	child := exec.Command(os.Args[0], args...)
	child.Env = append(os.Environ(), fakeChildEnv+"=1", "LD_LIBRARY_PATH="+dir)
	return child.CombinedOutput()
}

// TestFakeDriverBenchmark runs BenchmarkKernelThroughput once against the stand-in driver: every tile kind is
// staged, its kernels and the device-to-device copy run, and the three metrics are reported (the figures
// themselves mean nothing on the fake).
func TestFakeDriverBenchmark(t *testing.T) {
	if os.Getenv(fakeChildEnv) == "1" {
		t.Skip("the child runs the benchmark")
	}
	out, err := runOnFakeDriver(t, "-test.run=^$", "-test.bench=^BenchmarkKernelThroughput$", "-test.benchtime=1x")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, bt := range benchTiles {
		line := ""
		for l := range strings.Lines(string(out)) {
			if strings.Contains(l, "BenchmarkKernelThroughput/"+bt.name) {
				line = l
			}
		}
		for _, m := range []string{"kernel_GB/s", "copy_GB/s", "copy_ratio"} {
			if !strings.Contains(line, m) {
				t.Errorf("%s: no %s in %q\n%s", bt.name, m, line, out)
			}
		}
	}
}

func fakeDriverChild(t *testing.T) {
	p := Provider()
	if !p.Available() {
		t.Fatalf("fake device unavailable: %s", p.Unavailable())
	}
	for _, k := range kernels.Available() {
		b, err := p.New(k)
		if err != nil {
			t.Fatal(err)
		}
		cpu := merge.NewCPUBackend(k)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 77))
				for range 150 {
					c := randCase(rng)
					if c.dora == merge.DoRARows && k.Name != "generic" {
						continue
					}
					want := c.build(rng)
					got := clone(want)
					if err := cpu.MergeTile(context.Background(), want); err != nil {
						errs <- err
						return
					}
					if err := b.MergeTile(context.Background(), got); err != nil {
						errs <- err
						return
					}
					if got.NonFinite != want.NonFinite || outDiff(c.out, got.Out, want.Out) >= 0 {
						errs <- fmt.Errorf("%s: %v: differs from the cpu backend (non-finite %d, cpu %d)", k.Name, c, got.NonFinite, want.NonFinite)
						return
					}
					for j := range want.ColSumSq {
						if g, w := got.ColSumSq[j], want.ColSumSq[j]; g != w && (g == g || w == w) {
							errs <- fmt.Errorf("%s: %v: column sums differ", k.Name, c)
							return
						}
					}
					if got.NonFinite >= 0 {
						if g, w := got.Work[got.NonFinite], want.Work[want.NonFinite]; math.Float32bits(g) != math.Float32bits(w) && (g == g || w == w) {
							errs <- fmt.Errorf("%s: %v: work at the non-finite index differs", k.Name, c)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !t.Failed() {
		t.Log("fake device ok")
	}
}
