package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/units"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

// mergeBackends are the non-CPU merge backends built into this binary. A build-tagged file (the CUDA backend,
// -tags cuda) appends its provider here from an init function; the merge planner and writer need no change.
var mergeBackends []merge.BackendProvider

// keepTiedHelp describes --keep-tied (merge, push, watch).
const keepTiedHelp = "with tied embeddings and a LoRA on embed_tokens: keep them tied, merging the update into the shared weight as PEFT does (lm_head changes too; default: untie)"

// shardLayoutHelp describes --shard-layout (merge, push, watch).
const shardLayoutHelp = "how tensors fall into shards: delta (tensors the adapter does not change in their own shards, identical across checkpoints of a run, so uploads skip them) or hf (huggingface_hub's exact layout)"

// parseShardLayoutFlag validates --shard-layout.
func parseShardLayoutFlag(s string) (export.ShardLayout, error) {
	l, err := export.ParseShardLayout(s)
	if err != nil {
		return "", usagef("--shard-layout: %v", err)
	}
	return l, nil
}

// mergeOptions are the flags of hubsync merge.
type mergeOptions struct {
	Base         string
	Adapter      string
	Out          string
	DType        string
	MaxShardSize string
	ShardLayout  string
	Device       string
	Threads      int
	Kernel       string
	CPUProfile   string
	KeepTied     bool
	JSON         bool
	Quant        quantFlags
}

func (o *mergeOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Base, "base", "", "base model: a local directory, or a Hub repo id OWNER/NAME[@REV] (branch, tag or commit) from the HF cache, else downloaded")
	f.StringVar(&o.Adapter, "adapter", "", "PEFT adapter or trainer checkpoint directory (adapter_config.json + adapter_model.safetensors, or adapter_model.bin)")
	f.StringVar(&o.Out, "out", "", "output directory (must not exist, or be empty)")
	f.StringVar(&o.DType, "dtype", "", "output dtype: bf16, fp16 or fp32 (default: the base's original dtype), or nf4|fp4 for a merged bitsandbytes 4-bit model")
	o.Quant.addFlags(f)
	f.StringVar(&o.MaxShardSize, "max-shard-size", "5GB", "largest output shard (huggingface_hub units: 5GB = 5·10⁹ bytes)")
	f.StringVar(&o.ShardLayout, "shard-layout", "delta", shardLayoutHelp)
	f.StringVar(&o.Device, "device", "auto", "compute device: auto, cpu or cuda")
	f.BoolVar(&o.KeepTied, "keep-tied", false, keepTiedHelp)
	f.IntVar(&o.Threads, "threads", 0, "worker threads (default: all cores)")
	f.StringVar(&o.Kernel, "kernel", "", "CPU kernel set: generic, avx2, avx512 (default: $"+kernels.EnvVar+", else the best this CPU supports)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the merge to this file")
	_ = f.MarkHidden("cpuprofile")
	f.BoolVar(&o.JSON, "json", false, "print the result (dir, tensors, shards, bytes, dtype, duration_ms; a 4-bit output's per-tensor quantization error) as one JSON object")
}

func newMergeCommand(g *globalOptions) *cobra.Command {
	o := &mergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge --base B --adapter DIR --out DIR",
		Short: "Merge a LoRA adapter into its base model and write a Hugging Face checkpoint",
		Long: `merge writes the base model with the adapter merged in, as a directory transformers loads with
AutoModelForCausalLM.from_pretrained: safetensors shards (and their index), config.json without
quantization settings, generation_config.json, the tokenizer files (from the adapter directory, else the
base) and a model card.

The base may be bitsandbytes 4-bit (NF4/FP4, with or without double quantization) or 16/32-bit; 4-bit
weights are dequantized exactly as bitsandbytes does. The output is written into a temporary directory
beside --out and renamed into place at the end, so a failed merge leaves nothing behind.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMerge(cmd.Context(), g, o)
		},
	}
	o.addFlags(cmd)
	return cmd
}

// mergeOptions validates the flags and builds the merge options.
func (o *mergeOptions) mergeOptions(g *globalOptions) (merge.Options, error) {
	var opts merge.Options
	for _, req := range []struct{ name, val string }{{"--base", o.Base}, {"--adapter", o.Adapter}, {"--out", o.Out}} {
		if strings.TrimSpace(req.val) == "" {
			return opts, usagef("%s is required", req.name)
		}
	}
	dt, quant, err := o.Quant.outputDType(o.DType)
	if err != nil {
		return opts, err
	}
	size, err := units.ParseBytes(o.MaxShardSize)
	if err == nil && size <= 0 {
		err = errors.New("must be positive")
	}
	if err != nil {
		return opts, usagef("--max-shard-size: %v", err)
	}
	layout, err := parseShardLayoutFlag(o.ShardLayout)
	if err != nil {
		return opts, err
	}
	switch o.Device {
	case merge.DeviceAuto, merge.DeviceCPU, merge.DeviceCUDA:
	default:
		return opts, usagef("--device must be auto, cpu or cuda, not %q", o.Device)
	}
	if o.Threads < 0 {
		return opts, usagef("--threads must be positive")
	}
	var k *kernels.Impl
	if o.Kernel != "" {
		if k, err = kernels.Select(o.Kernel); err != nil {
			return opts, usagef("--kernel: %v", err)
		}
	}
	return merge.Options{
		Base: o.Base, Adapter: o.Adapter, Out: o.Out, DType: dt, MaxShardSize: size, ShardLayout: layout,
		Device: o.Device, Backends: mergeBackends, Threads: o.Threads, Kernel: k, Logger: g.log, KeepTied: o.KeepTied,
		Quant: quant,
	}, nil
}

func runMerge(ctx context.Context, g *globalOptions, o *mergeOptions) error {
	opts, err := o.mergeOptions(g)
	if err != nil {
		return err
	}
	mp := newMergeProgress(g, 10*time.Second, true)
	defer mp.close()
	opts.Progress, opts.TensorProgress = mp.bytesDone, mp.tensorsDone
	opts.FetchBase = func(ctx context.Context, repoID string) (string, error) {
		return fetchBase(ctx, g, repoID)
	}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := merge.Run(ctx, opts)
	mp.close()
	if err != nil {
		return err
	}
	if o.JSON {
		return writeMergeJSON(g.stdout, res)
	}
	if q := res.Quant; q != nil {
		fmt.Fprintf(g.stdout, "4-bit %s: %d weights quantized, error vs the 16-bit merge: RMSE %.4g, max %.4g (worst tensor %s, RMSE %.4g)\n",
			q.Report.Config.QuantType, q.Report.Quantized, q.Report.RMSE, q.Report.Max, q.Report.Worst.Name, q.Report.Worst.RMSE)
	}
	fmt.Fprintf(g.stdout, "merged %d tensors (%d changed by the adapter) into %s: %d shard(s), %s %s, %.1fs (%.2f GB/s, %s)\n",
		res.Tensors, res.Merged, res.Dir, res.Shards, mergeHumanSize(res.Bytes), res.DType.TorchName(),
		res.Duration.Seconds(), float64(res.Bytes)/1e9/res.Duration.Seconds(), res.Backend)
	return nil
}

// fetchBase downloads a base repo ("owner/name[@REV]", default revision main) that is not in the HF cache into it, with the usual token
// sources; the merge calls it only when the cache lacks the repo.
func fetchBase(ctx context.Context, g *globalOptions, spec string) (string, error) {
	repoID, rev := hub.SplitRepoRevision(spec)
	tok, err := defaultAuthEnv().findToken(ctx, g)
	if err != nil {
		return "", err
	}
	c, err := newHubClient(g, tok.Value, nil)
	if err != nil {
		return "", err
	}
	defer c.CloseIdleConnections()
	g.log.Info().Str("base", spec).Msg("base model not in the HF cache: downloading it")
	dir, err := c.Download(ctx, repoID, rev, hub.DownloadOptions{Offline: hub.OfflineFromEnv(nil), DisableXet: hub.XetDisabledFromEnv(nil)})
	if err != nil {
		return "", fmt.Errorf("download base %s: %w", spec, err)
	}
	return dir, nil
}

// mergeProgressLogger logs merge progress at most once per interval (no bar: callers that draw upload bars).
func mergeProgressLogger(g *globalOptions, every time.Duration) func(done, total int64) {
	return newMergeProgress(g, every, false).bytesDone
}

// mergeHumanSize renders bytes in decimal units.
func mergeHumanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.2f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
