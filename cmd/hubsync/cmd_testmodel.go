package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/internal/units"
)

// newTestmodelCommand is the hidden "testmodel" command: it writes generated bases, adapters and trainer-like
// checkpoints for tests, benchmarks and demos (package internal/testmodel).
func newTestmodelCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "testmodel",
		Short:  "Generate test base models, LoRA adapters and trainer checkpoints (offline)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("testmodel needs a subcommand: base, adapter or checkpoints")
		},
	}
	cmd.AddCommand(newTestmodelBaseCommand(g), newTestmodelAdapterCommand(g), newTestmodelCheckpointsCommand(g))
	return cmd
}

// testmodelBaseOptions are the flags of "testmodel base".
type testmodelBaseOptions struct {
	preset       string
	quant        string
	doubleQuant  bool
	blocksize    int
	dtype        string
	quantStorage string
	fastCodes    bool
	shardSize    string
	seed         int64
}

func newTestmodelBaseCommand(g *globalOptions) *cobra.Command {
	o := &testmodelBaseOptions{}
	cmd := &cobra.Command{
		Use:   "base DIR",
		Short: "Write a generated Hugging Face base model into DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec(cmd)
			if err != nil {
				return err
			}
			return runTestmodelBase(cmd.Context(), g, args[0], spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.preset, "preset", "tiny-llama", "shape: tiny-llama, tiny-qwen2, tiny-mistral, awkward-llama, awkward-qwen2, tinyllama-1.1b or llama3-8b")
	f.StringVar(&o.quant, "quant", "", "weight storage: nf4, fp4 or none (default: the preset's)")
	f.BoolVar(&o.doubleQuant, "double-quant", false, "double-quantize the 4-bit statistics (default: the preset's)")
	f.IntVar(&o.blocksize, "blocksize", 0, "4-bit block size, a power of two in 32..4096 (default: the preset's)")
	f.StringVar(&o.dtype, "dtype", "", "base dtype: bf16, fp16 or fp32 (default: the preset's)")
	f.StringVar(&o.quantStorage, "quant-storage", "", "bnb_4bit_quant_storage: uint8, bfloat16, float16 or float32")
	f.BoolVar(&o.fastCodes, "fast-codes", false, "write random codes and statistics instead of quantizing random floats (fast)")
	f.StringVar(&o.shardSize, "shard-size", "", "shard the weights into files of at most this size (e.g. 2GB); default one file")
	f.Int64Var(&o.seed, "seed", 0, "random seed (default: the preset's)")
	return cmd
}

// testmodelPreset returns a named preset spec.
func testmodelPreset(name string) (testmodel.BaseSpec, error) {
	switch name {
	case "tiny-llama":
		return testmodel.Tiny(testmodel.ArchLlama), nil
	case "tiny-qwen2":
		return testmodel.Tiny(testmodel.ArchQwen2), nil
	case "tiny-mistral":
		return testmodel.Tiny(testmodel.ArchMistral), nil
	case "awkward-llama":
		return testmodel.Awkward(testmodel.ArchLlama), nil
	case "awkward-qwen2":
		return testmodel.Awkward(testmodel.ArchQwen2), nil
	case "tinyllama-1.1b":
		return testmodel.TinyLlama(), nil
	case "llama3-8b":
		return testmodel.Llama3_8B(), nil
	}
	return testmodel.BaseSpec{}, usagef("unknown --preset %q (want tiny-llama, tiny-qwen2, tiny-mistral, awkward-llama, "+
		"awkward-qwen2, tinyllama-1.1b or llama3-8b)", name)
}

// spec builds the base spec from the preset and the flags that were set.
func (o *testmodelBaseOptions) spec(cmd *cobra.Command) (testmodel.BaseSpec, error) {
	s, err := testmodelPreset(o.preset)
	if err != nil {
		return s, err
	}
	f := cmd.Flags()
	if f.Changed("quant") {
		switch o.quant {
		case "nf4", "fp4", "none":
			s.Quant = testmodel.Quant(o.quant)
		default:
			return s, usagef("--quant must be nf4, fp4 or none, not %q", o.quant)
		}
		if s.Quant == testmodel.QuantNone {
			s.DoubleQuant = false
		}
	}
	if f.Changed("double-quant") {
		s.DoubleQuant = o.doubleQuant
	}
	if f.Changed("blocksize") {
		s.Blocksize = o.blocksize
	}
	if f.Changed("dtype") {
		if s.DType, err = testmodelDType(o.dtype); err != nil {
			return s, err
		}
	}
	if f.Changed("quant-storage") {
		d, err := tensor.ParseTorchDType(o.quantStorage)
		if err != nil {
			return s, usagef("--quant-storage: %v", err)
		}
		s.QuantStorage = d
	}
	s.FastRandomCodes = o.fastCodes
	if f.Changed("shard-size") {
		if s.ShardSize, err = parseTestmodelSize(o.shardSize); err != nil {
			return s, usagef("--shard-size: %v", err)
		}
	}
	if f.Changed("seed") {
		s.Seed = o.seed
	}
	return s, nil
}

// testmodelDType parses bf16 / fp16 / fp32 (and torch names).
func testmodelDType(s string) (tensor.DType, error) {
	d, err := tensor.ParseTorchDType(s)
	if err != nil || (d != tensor.BF16 && d != tensor.F16 && d != tensor.F32) {
		return tensor.Invalid, usagef("--dtype must be bf16, fp16 or fp32, not %q", s)
	}
	return d, nil
}

func runTestmodelBase(ctx context.Context, g *globalOptions, dir string, spec testmodel.BaseSpec) error {
	start := time.Now()
	info, err := testmodel.GenerateBase(ctx, dir, spec)
	if err != nil {
		return err
	}
	q := "16-bit"
	if info.Spec.Quant != testmodel.QuantNone {
		q = fmt.Sprintf("%s (blocksize %d, double quant %v)", info.Spec.Quant, info.Spec.Blocksize, info.Spec.DoubleQuant)
	}
	fmt.Fprintf(g.stdout, "wrote %s: %s %s, %d tensors in %d file(s), %d bytes of weights, %s\n", dir,
		info.Spec.Arch, q, len(info.Tensors), len(info.Files), info.TotalSize, time.Since(start).Round(time.Millisecond))
	return nil
}

// testmodelAdapterOptions are the LoRA flags shared by "adapter" and "checkpoints".
type testmodelAdapterOptions struct {
	base          string
	r             int
	alpha         float64
	targets       string
	dora          bool
	rslora        bool
	dtype         string
	seed          int64
	bias          string
	loraBias      bool
	modulesToSave string
	resizeVocab   int
	embedding     bool
}

func (o *testmodelAdapterOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.base, "base", "", "base model directory written by \"testmodel base\" (required)")
	f.IntVar(&o.r, "r", 16, "LoRA rank")
	f.Float64Var(&o.alpha, "alpha", 32, "lora_alpha")
	f.StringVar(&o.targets, "targets", "q_proj,v_proj", "target modules: all-linear (saved expanded, as PEFT does), a comma list, or re:REGEX for a regex string")
	f.BoolVar(&o.dora, "dora", false, "DoRA (lora_magnitude_vector)")
	f.BoolVar(&o.rslora, "rslora", false, "rank-stabilized scaling alpha/sqrt(r)")
	f.StringVar(&o.dtype, "dtype", "f32", "adapter dtype: f32, fp16 or bf16")
	f.Int64Var(&o.seed, "seed", 1, "random seed")
	f.StringVar(&o.bias, "bias", "none", "PEFT bias: none, all or lora_only")
	f.BoolVar(&o.loraBias, "lora-bias", false, "lora_B.bias on every target (needs a base with biases)")
	f.StringVar(&o.modulesToSave, "modules-to-save", "", "comma list of modules saved in full (e.g. lm_head,embed_tokens)")
	f.IntVar(&o.resizeVocab, "resize-vocab", 0, "extra vocabulary rows in saved embeddings / lm_head")
	f.BoolVar(&o.embedding, "embedding-lora", false, "also target embed_tokens with LoRA")
}

func (o *testmodelAdapterOptions) spec() (testmodel.AdapterSpec, error) {
	if o.base == "" {
		return testmodel.AdapterSpec{}, usagef("--base is required")
	}
	s := testmodel.AdapterSpec{R: o.r, Alpha: o.alpha, UseRSLoRA: o.rslora, UseDoRA: o.dora, Seed: o.seed,
		Bias: o.bias, LoRABias: o.loraBias, ResizeVocab: o.resizeVocab, EmbeddingLoRA: o.embedding}
	if o.r <= 0 {
		return s, usagef("--r must be positive")
	}
	switch {
	case o.targets == "all-linear":
		s.TargetModules = testmodel.AllLinear()
	case strings.HasPrefix(o.targets, "re:"):
		s.TargetRegex = strings.TrimPrefix(o.targets, "re:")
	default:
		s.TargetModules = testmodelList(o.targets)
		if len(s.TargetModules) == 0 {
			return s, usagef("--targets is empty")
		}
	}
	s.ModulesToSave = testmodelList(o.modulesToSave)
	d, err := tensor.ParseTorchDType(o.dtype)
	if err != nil || (d != tensor.BF16 && d != tensor.F16 && d != tensor.F32) {
		return s, usagef("--dtype must be f32, fp16 or bf16, not %q", o.dtype)
	}
	s.DType = d
	return s, nil
}

// testmodelList splits a comma list, dropping empty items.
func testmodelList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newTestmodelAdapterCommand(g *globalOptions) *cobra.Command {
	o := &testmodelAdapterOptions{}
	cmd := &cobra.Command{
		Use:   "adapter DIR --base BASEDIR",
		Short: "Write a generated PEFT LoRA adapter for a generated base into DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec()
			if err != nil {
				return err
			}
			info, err := testmodel.GenerateAdapterForDir(cmd.Context(), args[0], o.base, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s: %d LoRA modules, %d tensors\n", args[0], len(info.Modules), len(info.Tensors))
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

// testmodelCheckpointsOptions are the flags of "testmodel checkpoints".
type testmodelCheckpointsOptions struct {
	testmodelAdapterOptions
	steps          string
	interval       time.Duration
	marker         bool
	saveTotalLimit int
	tmpDir         bool
	chunkSize      string
	chunkDelay     time.Duration
	fileDelay      time.Duration
	optimizerSize  string
}

func newTestmodelCheckpointsCommand(g *globalOptions) *cobra.Command {
	o := &testmodelCheckpointsOptions{}
	cmd := &cobra.Command{
		Use:   "checkpoints OUTPUTS --base BASEDIR --steps 100,200,300",
		Short: "Write trainer-like checkpoint-N directories into OUTPUTS, one per step, like a PEFT Trainer run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTestmodelCheckpoints(cmd.Context(), g, args[0], o)
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.steps, "steps", "", "comma list of global steps (required)")
	f.DurationVar(&o.interval, "interval", 0, "pause between checkpoints")
	f.BoolVar(&o.marker, "marker", false, "write "+testmodel.MarkerFile+" after trainer_state.json")
	f.IntVar(&o.saveTotalLimit, "save-total-limit", 0, "delete the oldest checkpoints beyond this many")
	f.BoolVar(&o.tmpDir, "tmp-dir", false, "write into tmp-checkpoint-N, then rename")
	f.StringVar(&o.chunkSize, "chunk-size", "", "write files in chunks of this size (e.g. 64KB) with --chunk-delay between them")
	f.DurationVar(&o.chunkDelay, "chunk-delay", 0, "pause between chunks")
	f.DurationVar(&o.fileDelay, "file-delay", 0, "pause after each file")
	f.StringVar(&o.optimizerSize, "optimizer-size", "64KB", "size of optimizer.pt")
	return cmd
}

func runTestmodelCheckpoints(ctx context.Context, g *globalOptions, outputs string, o *testmodelCheckpointsOptions) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	var steps []int
	for _, p := range testmodelList(o.steps) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return usagef("--steps: %q is not a step number", p)
		}
		steps = append(steps, n)
	}
	if len(steps) == 0 {
		return usagef("--steps is required (a comma list of step numbers)")
	}
	opts := testmodel.CheckpointOptions{Marker: o.marker, SaveTotalLimit: o.saveTotalLimit, TmpDir: o.tmpDir,
		ChunkDelay: o.chunkDelay, FileDelay: o.fileDelay}
	if o.chunkSize != "" {
		n, err := parseTestmodelSize(o.chunkSize)
		if err != nil || n > math.MaxInt32 {
			return usagef("--chunk-size: invalid size %q", o.chunkSize)
		}
		opts.ChunkSize = int(n)
	}
	if opts.OptimizerSize, err = parseTestmodelSize(o.optimizerSize); err != nil {
		return usagef("--optimizer-size: %v", err)
	}
	if opts.Base, err = testmodel.LoadBaseInfo(o.base); err != nil {
		return err
	}
	for i, step := range steps {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.interval):
			}
		}
		opts.MaxSteps = steps[len(steps)-1]
		dir, err := testmodel.WriteCheckpoint(ctx, outputs, step, spec, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "wrote %s\n", dir)
	}
	return nil
}

// parseTestmodelSize parses a byte size as every hubsync flag does (units.ParseBytes); "0" is zero.
func parseTestmodelSize(s string) (int64, error) {
	if strings.TrimSpace(s) == "0" {
		return 0, nil
	}
	return units.ParseBytes(s)
}
