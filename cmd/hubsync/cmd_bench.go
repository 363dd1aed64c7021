package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// newBenchCommand is the hidden "bench" command: whole-pipeline benchmarks that go test -bench cannot measure
// (peak RSS of a real process, page cache and disk included).
func newBenchCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "bench",
		Short:  "Benchmark whole merges (hidden)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("bench needs a subcommand: merge, publish or gguf")
		},
	}
	cmd.AddCommand(newBenchMergeCommand(g), newBenchPublishCommand(g), newBenchGGUFCommand(g))
	return cmd
}

// benchMergeOptions are the flags of "bench merge".
type benchMergeOptions struct {
	Preset  string
	Dir     string
	Keep    bool
	Threads int
	Kernel  string
	Device  string
	Profile string
	Rank    int
	Runs    int
	DTypes  string
}

func newBenchMergeCommand(g *globalOptions) *cobra.Command {
	o := &benchMergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge",
		Short: "Generate a 4-bit base and a LoRA adapter, merge them in a child process and compare with a plain copy",
		Long: `bench merge generates an NF4 double-quant base (random codes) of the preset's shape and an r=16 adapter on
all seven projections, measures a floor (read the base files and write as many bytes as the merged model,
fsync'd, on the same file system), then runs "hubsync merge" in a child process and reports its wall time,
output GB/s, peak RSS (from the child's rusage) and the ratio to the floor.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchMerge(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Preset, "preset", "tinyllama", "model shape: tinyllama (1.1B) or llama3-8b")
	f.StringVar(&o.Dir, "dir", "", "working directory (default: a new directory under $TMPDIR); needs room for the base and the output")
	f.BoolVar(&o.Keep, "keep", false, "keep the generated base, adapter and output (a later run with the same --dir reuses the base and adapter)")
	f.IntVar(&o.Threads, "threads", 0, "merge worker threads (default: all cores)")
	f.StringVar(&o.Kernel, "kernel", "", "CPU kernel set for the merge (default: the best)")
	f.StringVar(&o.Device, "device", merge.DeviceAuto, "merge device: auto, cpu or cuda (cuda needs a -tags cuda build)")
	f.StringVar(&o.Profile, "profile", "", "write the child merge's CPU profile to this file")
	f.IntVar(&o.Rank, "rank", 16, "LoRA rank")
	f.IntVar(&o.Runs, "runs", 1, "floor/merge pairs to run (interleaved; the median ratio is reported)")
	f.StringVar(&o.DTypes, "dtype", "", "comma-separated merge --dtype values to time in each run, e.g. bf16,nf4 (a 4-bit one also reports its quantization error; default: the base's dtype)")
	return cmd
}

// benchPreset returns the base spec of a bench preset.
func benchPreset(name string) (testmodel.BaseSpec, error) {
	switch name {
	case "tinyllama", "tinyllama-1.1b":
		return testmodel.TinyLlama(), nil
	case "llama3-8b", "llama-3-8b":
		return testmodel.Llama3_8B(), nil
	}
	return testmodel.BaseSpec{}, usagef("--preset must be tinyllama or llama3-8b, not %q", name)
}

// benchDir is a bench's working directory: dir (created when missing), or a new temporary one named by pattern.
func benchDir(dir, pattern string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", pattern)
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// benchWorkspace is a bench's working directory (benchDir): generated inputs, kept with --keep so that a later
// run with the same --dir reuses them, and scratch outputs, always removed.
type benchWorkspace struct {
	dir             string
	keep, made      bool // made: the directory is a new temporary one (removed with the inputs)
	inputs, outputs []string
}

func newBenchWorkspace(dirFlag, pattern string, keep bool) (*benchWorkspace, error) {
	dir, err := benchDir(dirFlag, pattern)
	if err != nil {
		return nil, err
	}
	return &benchWorkspace{dir: dir, keep: keep, made: dirFlag == ""}, nil
}

// input is the path of a generated input in the workspace.
func (b *benchWorkspace) input(name string) string {
	p := filepath.Join(b.dir, name)
	b.inputs = append(b.inputs, p)
	return p
}

// scratch is the path of an output in the workspace, removed by cleanup.
func (b *benchWorkspace) scratch(name string) string {
	p := filepath.Join(b.dir, name)
	b.outputs = append(b.outputs, p)
	return p
}

// cleanup removes the outputs, and unless --keep the inputs (and a temporary directory).
func (b *benchWorkspace) cleanup() {
	for _, p := range b.outputs {
		os.RemoveAll(p)
	}
	if b.keep {
		return
	}
	for _, p := range b.inputs {
		os.RemoveAll(p)
	}
	if b.made {
		os.RemoveAll(b.dir)
	}
}

// benchBaseAndAdapter generates (or reuses, see benchBase) the bench base and an r=rank adapter on all seven
// projections; a reused base keeps its adapter when one is there.
func benchBaseAndAdapter(ctx context.Context, base, adapter string, spec testmodel.BaseSpec, rank int) (*testmodel.BaseInfo, bool, error) {
	bi, reused, err := benchBase(ctx, base, spec)
	if err != nil {
		return nil, false, fmt.Errorf("generate base: %w", err)
	}
	if _, err := os.Stat(filepath.Join(adapter, "adapter_model.safetensors")); err != nil || !reused {
		os.RemoveAll(adapter)
		if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{R: rank, Alpha: float64(2 * rank),
			TargetModules: testmodel.AllLinear(), Seed: 7}); err != nil {
			return nil, false, fmt.Errorf("generate adapter: %w", err)
		}
	}
	return bi, reused, nil
}

// printBenchMachine prints the machine line every bench starts with.
func printBenchMachine(w io.Writer, dir string) {
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, dir %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, dir)
}

func runBenchMerge(ctx context.Context, g *globalOptions, o *benchMergeOptions) error {
	switch o.Device {
	case merge.DeviceAuto, merge.DeviceCPU, merge.DeviceCUDA:
	default:
		return usagef("--device must be auto, cpu or cuda, not %q", o.Device)
	}
	spec, err := benchPreset(o.Preset)
	if err != nil {
		return err
	}
	spec.FastRandomCodes = true
	ws, err := newBenchWorkspace(o.Dir, "hubsync-bench-", o.Keep)
	if err != nil {
		return err
	}
	dir := ws.dir
	base, adapter := ws.input("base"), ws.input("adapter")
	out, floorFile := ws.scratch("merged"), ws.scratch("floor.bin")
	defer ws.cleanup()
	w := g.stdout
	fmt.Fprintf(w, "bench merge: preset %s, %d layers, hidden %d, intermediate %d, vocab %d, nf4 double-quant, r=%d on all projections\n",
		o.Preset, spec.Layers, spec.Hidden, spec.Intermediate, spec.Vocab, o.Rank)
	printBenchMachine(w, dir)

	t0 := time.Now()
	bi, reused, err := benchBaseAndAdapter(ctx, base, adapter, spec, o.Rank)
	if err != nil {
		return err
	}
	inBytes, err := dirWeightBytes(base)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "inputs: base %s in %d file(s) (%s), generated in %.1fs\n", mergeHumanSize(inBytes), len(bi.Files),
		map[bool]string{true: "reused", false: "new"}[reused], time.Since(t0).Seconds())

	// The output size: bf16 everywhere (the base's dtype).
	var outBytes int64
	for _, wt := range bi.Weights {
		n := int64(1)
		for _, d := range wt.Shape {
			n *= d
		}
		outBytes += n * int64(wt.DType.Size())
	}
	if avail, err := fsutil.AvailableBytes(dir); err == nil {
		if avail < outBytes+outBytes/20 {
			return fmt.Errorf("%s has %s free; the merge needs %s", dir, mergeHumanSize(avail), mergeHumanSize(outBytes))
		}
	}

	args := []string{"merge", "--base", base, "--adapter", adapter, "--out", out, "--log-format", "json", "--device", o.Device}
	if o.Threads > 0 {
		args = append(args, "--threads", fmt.Sprint(o.Threads))
	}
	if o.Kernel != "" {
		args = append(args, "--kernel", o.Kernel)
	}
	if o.Profile != "" {
		args = append(args, "--cpuprofile", o.Profile)
	}
	dtypes := []string{""}
	if o.DTypes != "" {
		dtypes = strings.Split(o.DTypes, ",")
	}
	var ratios []float64
	var peak int64
	for run := 1; run <= max(1, o.Runs); run++ {
		floor, err := copyFloor(ctx, base, floorFile, outBytes)
		os.Remove(floorFile)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		fmt.Fprintf(w, "run %d floor (read base, write %s, fsync):  %7.2fs  %6.2f GB/s\n", run, mergeHumanSize(outBytes),
			floor.Seconds(), float64(outBytes)/1e9/floor.Seconds())
		for _, dt := range dtypes {
			dargs := args
			if dt != "" {
				dargs = append(append([]string{}, args...), "--dtype", dt)
			}
			os.RemoveAll(out)
			wall, rss, childOut, err := runChild(ctx, dargs)
			if err != nil {
				return fmt.Errorf("merge child: %w\n%s", err, childOut)
			}
			backend, quality := "", ""
			for _, line := range bytes.Split(childOut, []byte("\n")) {
				var rec map[string]any
				if json.Unmarshal(line, &rec) != nil {
					continue
				}
				if rec["backend"] != nil {
					backend = fmt.Sprint(rec["backend"])
				}
				if rec["message"] == "merged 4-bit" {
					quality = fmt.Sprintf("  4-bit error vs 16-bit merge: RMSE %.4g, max %.4g", rec["rmse"], rec["max_abs_error"])
				}
			}
			gotBytes, err := dirWeightBytes(out)
			if err != nil {
				return err
			}
			os.RemoveAll(out)
			peak = max(peak, rss)
			ratio := wall.Seconds() / floor.Seconds()
			if dt == dtypes[0] {
				ratios = append(ratios, ratio)
			}
			name := dt
			if name == "" {
				name = "base dtype"
			}
			fmt.Fprintf(w, "run %d merge --dtype %s (child, %s, %s written): %7.2fs  %6.2f GB/s  peak RSS %d MiB  ratio %.2fx%s\n", run, name, backend,
				mergeHumanSize(gotBytes), wall.Seconds(), float64(gotBytes)/1e9/wall.Seconds(), rss>>20, ratio, quality)
		}
	}
	sort.Float64s(ratios)
	fmt.Fprintf(w, "median ratio merge/floor: %.2fx over %d run(s) (goal ≤ 2x); peak RSS %d MiB (goal < 512 MiB)\n",
		ratios[len(ratios)/2], len(ratios), peak>>20)
	return nil
}

// benchBase reuses a base generated earlier in dir with the same spec, or generates it.
func benchBase(ctx context.Context, dir string, spec testmodel.BaseSpec) (*testmodel.BaseInfo, bool, error) {
	if bi, err := testmodel.LoadBaseInfo(dir); err == nil && bi.Spec.Hidden == spec.Hidden && bi.Spec.Layers == spec.Layers &&
		bi.Spec.Vocab == spec.Vocab && bi.Spec.Intermediate == spec.Intermediate {
		return bi, true, nil
	}
	os.RemoveAll(dir)
	bi, err := testmodel.GenerateBase(ctx, dir, spec)
	return bi, false, err
}

// dirWeightBytes sums the sizes of a model directory's safetensors files.
func dirWeightBytes(dir string) (int64, error) {
	ms, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, fmt.Errorf("no safetensors files in %s", dir)
	}
	var n int64
	for _, m := range ms {
		st, err := os.Stat(m)
		if err != nil {
			return 0, err
		}
		n += st.Size()
	}
	return n, nil
}

// copyFloor reads every weight file of base once and writes outBytes bytes (the input's bytes, then the last
// buffer again) to dst with one writer and an fsync, like the merge's shard writer: the I/O a merge cannot avoid.
func copyFloor(ctx context.Context, base, dst string, outBytes int64) (time.Duration, error) {
	ms, err := filepath.Glob(filepath.Join(base, "*.safetensors"))
	if err != nil {
		return 0, err
	}
	start := time.Now()
	f, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	var written int64
	var n int
	for _, m := range ms {
		in, err := os.Open(m)
		if err != nil {
			return 0, err
		}
		for written < outBytes {
			if err := ctx.Err(); err != nil {
				in.Close()
				return 0, err
			}
			n, err = io.ReadFull(in, buf)
			if n > 0 {
				k := min(int64(n), outBytes-written)
				if _, werr := f.Write(buf[:k]); werr != nil {
					in.Close()
					return 0, werr
				}
				written += k
			}
			if err != nil {
				break
			}
		}
		in.Close()
	}
	for written < outBytes {
		k := min(int64(len(buf)), outBytes-written)
		if _, err := f.Write(buf[:k]); err != nil {
			return 0, err
		}
		written += k
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// runChild runs this executable with args and returns its wall time, peak RSS in bytes and combined output.
func runChild(ctx context.Context, args []string) (time.Duration, int64, []byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, nil, err
	}
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return wall, 0, buf.Bytes(), fmt.Errorf("exit code %d", ee.ExitCode())
		}
		return wall, 0, buf.Bytes(), err
	}
	return wall, childMaxRSS(cmd.ProcessState), buf.Bytes(), nil
}
