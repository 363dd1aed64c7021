package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// benchGGUFOptions are the flags of "bench gguf".
type benchGGUFOptions struct {
	Shape   string
	Dir     string
	Keep    bool
	Threads int
	Type    string
	Rank    int
	Quant   string
}

func newBenchGGUFCommand(g *globalOptions) *cobra.Command {
	o := &benchGGUFOptions{}
	cmd := &cobra.Command{
		Use:   "gguf",
		Short: "Time a GGUF export of a generated 4-bit base + adapter against the plain safetensors merge, and the quantizers",
		Long: `bench gguf generates an NF4 double-quant base of the shape (TinyLlama 1.1B, or Llama-3-8B with --shape 8b)
and an r=16 adapter on all seven projections, then runs in child processes, in the same run, the plain
safetensors merge ("hubsync merge") and the GGUF export of the same case ("hubsync export gguf --type T",
streamed from the merge) and reports each one's wall time, GB/s of input (base and adapter weights read), peak
RSS and the ratio GGUF/merge. It then times each quantizer on one goroutine (MB/s of 16-bit input weights per
core).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchGGUF(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Shape, "shape", "tinyllama", "model shape: tinyllama (1.1B) or 8b (Llama-3-8B)")
	f.StringVar(&o.Dir, "dir", "", "working directory (default: a new directory under $TMPDIR); needs room for the base and the outputs")
	f.BoolVar(&o.Keep, "keep", false, "keep the generated base and adapter (a later run with the same --dir reuses them)")
	f.IntVar(&o.Threads, "threads", 0, "worker threads of both children (default: all cores)")
	f.StringVar(&o.Type, "type", "q4_k_m", "GGUF type of the export")
	f.IntVar(&o.Rank, "rank", 16, "LoRA rank")
	f.StringVar(&o.Quant, "quantizers", "q8_0,q4_0,q4_k,q5_k,q6_k", "ggml types whose quantizer is timed (\"\": none)")
	return cmd
}

func runBenchGGUF(ctx context.Context, g *globalOptions, o *benchGGUFOptions) error {
	preset := o.Shape
	if preset == "8b" {
		preset = "llama3-8b"
	}
	spec, err := benchPreset(preset)
	if err != nil {
		return usagef("--shape must be tinyllama or 8b, not %q", o.Shape)
	}
	spec.FastRandomCodes = true
	ws, err := newBenchWorkspace(o.Dir, "hubsync-bench-gguf-", o.Keep)
	if err != nil {
		return err
	}
	dir := ws.dir
	base, adapter := ws.input("base"), ws.input("adapter")
	merged, ggufOut := ws.scratch("merged"), ws.scratch("bench.gguf")
	defer ws.cleanup()
	w := g.stdout
	fmt.Fprintf(w, "bench gguf: shape %s, %d layers, hidden %d, intermediate %d, vocab %d, nf4 double-quant, r=%d on all projections, GGUF %s\n",
		preset, spec.Layers, spec.Hidden, spec.Intermediate, spec.Vocab, o.Rank, strings.ToUpper(o.Type))
	printBenchMachine(w, dir)
	t0 := time.Now()
	_, reused, err := benchBaseAndAdapter(ctx, base, adapter, spec, o.Rank)
	if err != nil {
		return err
	}
	baseBytes, err := dirWeightBytes(base)
	if err != nil {
		return err
	}
	adBytes, err := dirWeightBytes(adapter)
	if err != nil {
		return err
	}
	in := baseBytes + adBytes
	fmt.Fprintf(w, "inputs: %s (base %s, adapter %s; %s), generated in %.1fs\n", mergeHumanSize(in), mergeHumanSize(baseBytes),
		mergeHumanSize(adBytes), map[bool]string{true: "reused", false: "new"}[reused], time.Since(t0).Seconds())

	threads := []string{}
	if o.Threads > 0 {
		threads = []string{"--threads", fmt.Sprint(o.Threads)}
	}
	mergeArgs := append([]string{"merge", "--base", base, "--adapter", adapter, "--out", merged, "--log-format", "json"}, threads...)
	mWall, mRSS, mOut, err := runChild(ctx, mergeArgs)
	if err != nil {
		return fmt.Errorf("merge child: %w\n%s", err, mOut)
	}
	outBytes, err := dirWeightBytes(merged)
	if err != nil {
		return err
	}
	os.RemoveAll(merged)
	fmt.Fprintf(w, "merge (safetensors, %s written):      %7.2fs  %6.3f GB/s of input  peak RSS %4d MiB\n",
		mergeHumanSize(outBytes), mWall.Seconds(), float64(in)/1e9/mWall.Seconds(), mRSS>>20)

	ggufArgs := append([]string{"export", "gguf", "--base", base, "--adapter", adapter, "--out", ggufOut, "--type", o.Type,
		"--log-format", "json"}, threads...)
	gWall, gRSS, gOut, err := runChild(ctx, ggufArgs)
	if err != nil {
		return fmt.Errorf("export gguf child: %w\n%s", err, gOut)
	}
	st, err := os.Stat(ggufOut)
	if err != nil {
		return err
	}
	os.Remove(ggufOut)
	fmt.Fprintf(w, "export gguf %s (%s written):       %7.2fs  %6.3f GB/s of input  peak RSS %4d MiB  ratio to the merge %.2fx\n",
		strings.ToUpper(o.Type), mergeHumanSize(st.Size()), gWall.Seconds(), float64(in)/1e9/gWall.Seconds(), gRSS>>20,
		gWall.Seconds()/mWall.Seconds())

	if strings.TrimSpace(o.Quant) == "" {
		return nil
	}
	return benchQuantizers(ctx, g, strings.Split(o.Quant, ","))
}

// benchQuantizers times each named ggml quantizer on one goroutine over a bf16-rounded normal 256×4096 matrix,
// for at least half a second, and prints MB/s of 16-bit input per core.
func benchQuantizers(ctx context.Context, g *globalOptions, names []string) error {
	const rows, cols = 256, 4096
	src := make([]float32, rows*cols)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = tensor.BF16ToF32(tensor.F32ToBF16(float32(rng.NormFloat64() * 0.02)))
	}
	fmt.Fprintf(g.stdout, "quantizers (one goroutine, %dx%d bf16-rounded normal weights):\n", rows, cols)
	for _, n := range names {
		t, ok := ggmlTypeByName(strings.TrimSpace(n))
		if !ok {
			return usagef("--quantizers: unknown ggml type %q", n)
		}
		rs, err := t.RowSize(cols)
		if err != nil {
			return err
		}
		dst := make([]byte, rs*rows)
		var reps int
		start := time.Now()
		for reps == 0 || time.Since(start) < 500*time.Millisecond {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := ggml.Quantize(t, dst, src, cols); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
			reps++
		}
		el := time.Since(start).Seconds()
		fmt.Fprintf(g.stdout, "  %-5s %8.1f MB/s per core (%.1f Melem/s)\n", t, float64(reps*rows*cols*2)/1e6/el, float64(reps*rows*cols)/1e6/el)
	}
	return nil
}

// ggmlTypeByName finds a ggml type by its name ("q4_k", case-insensitive).
func ggmlTypeByName(s string) (ggml.Type, bool) {
	for _, t := range []ggml.Type{ggml.F32, ggml.F16, ggml.BF16, ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q8_0, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K} {
		if strings.EqualFold(t.String(), s) {
			return t, true
		}
	}
	return 0, false
}
