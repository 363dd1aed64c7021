package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/merge"
)

// ggufTypesHelp lists the GGUF output types (export gguf --type, push/watch --gguf).
const ggufTypesHelp = "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k (case-insensitive)"

// ggufPreHelp describes --gguf-pre (export gguf, push, watch).
const ggufPreHelp = "byte-level BPE pre-tokenizer name written as tokenizer.ggml.pre (llama-bpe, qwen2, gpt-2, …), for a tokenizer.json whose split rules hubsync does not recognise (default: recognised)"

func newExportCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a merged model in another format (gguf)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("export needs a format: hubsync export gguf --help")
		},
	}
	cmd.AddCommand(newExportGGUFCommand(g))
	return cmd
}

// exportGGUFOptions are the flags of hubsync export gguf.
type exportGGUFOptions struct {
	Base, Adapter, Model string
	Out, Types, Name     string
	Pre                  string
	DType                string
	Threads              int
	KeepTied, JSON       bool
}

func newExportGGUFCommand(g *globalOptions) *cobra.Command {
	o := &exportGGUFOptions{}
	cmd := &cobra.Command{
		Use:   "gguf (--base B --adapter CKPT | --model DIR) --out FILE --type T",
		Short: "Write a GGUF file (llama.cpp, Ollama) of a merge or of a merged 16-bit model, without llama.cpp",
		Long: `gguf writes the model as a GGUF file that llama.cpp and Ollama load, in pure Go: from a LoRA
checkpoint merged into its base (--base, --adapter; the merge streams tile by tile into the GGUF file, no
merged safetensors are written), or from a merged 16/32-bit model directory (--model).

--type is one of ` + ggufTypesHelp + `, or a comma-separated list of them; with a list, --out is a
directory (created when missing) and the files are named <name>-<TYPE>.gguf, <name> being --name (default:
--out's base name without .gguf, -<TYPE> and -GGUF suffixes; also general.name). Quantized types are
computed from the merged weights rounded to the model's 16-bit dtype (config.json's torch_dtype), as merge,
convert and llama-quantize give them; a float32 model (--dtype fp32) is quantized from its float32 weights.

Each file is written to a temporary file beside it and renamed into place: a failure or ^C leaves no file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExportGGUF(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Base, "base", "", "base model of --adapter: a local directory, or a Hub repo id OWNER/NAME[@REV] from the HF cache, else downloaded")
	f.StringVar(&o.Adapter, "adapter", "", "PEFT adapter or trainer checkpoint directory to merge into --base")
	f.StringVar(&o.Model, "model", "", "a merged 16/32-bit model directory (safetensors, config.json, tokenizer) instead of --base/--adapter")
	f.StringVar(&o.Out, "out", "", "output file (a directory with several --type)")
	f.StringVar(&o.Types, "type", "", "GGUF type: "+ggufTypesHelp+"; a comma-separated list writes one file per type")
	f.StringVar(&o.Name, "name", "", "model name: general.name and, with several types, the file names <name>-<TYPE>.gguf")
	f.StringVar(&o.DType, "dtype", "", "with --adapter: the merge's 16/32-bit dtype the GGUF types are made from: bf16, fp16 or fp32 (default: the base's)")
	f.StringVar(&o.Pre, "gguf-pre", "", ggufPreHelp)
	f.IntVar(&o.Threads, "threads", 0, "worker threads (default: all cores; the bytes do not depend on it)")
	f.BoolVar(&o.KeepTied, "keep-tied", false, keepTiedHelp)
	f.BoolVar(&o.JSON, "json", false, "print the result (files with path, type and size; duration_ms) as one JSON object")
	return cmd
}

// exportGGUFJSON is export gguf --json's result.
type exportGGUFJSON struct {
	Files      []exportGGUFFile `json:"files"`
	DurationMS int64            `json:"duration_ms"`
}

type exportGGUFFile struct {
	Path string `json:"path"`
	Type string `json:"type"`
	Size int64  `json:"size"`
}

func runExportGGUF(ctx context.Context, g *globalOptions, o *exportGGUFOptions) error {
	if strings.TrimSpace(o.Out) == "" {
		return usagef("--out is required")
	}
	if strings.TrimSpace(o.Types) == "" {
		return usagef("--type is required (%s)", ggufTypesHelp)
	}
	types, err := gguf.ParseFileTypes(o.Types)
	if err != nil {
		return usagef("--type: %v", err)
	}
	if (o.Model == "") == (o.Adapter == "" && o.Base == "") {
		return usagef("give --model DIR, or --base and --adapter")
	}
	if o.Model == "" && (o.Base == "" || o.Adapter == "") {
		return usagef("--base and --adapter go together")
	}
	if o.Model != "" && (o.DType != "" || o.KeepTied) {
		return usagef("--dtype and --keep-tied apply to a merge (--base, --adapter)")
	}
	if o.Threads < 0 {
		return usagef("--threads must be positive")
	}
	start := time.Now()
	mp := newMergeProgress(g, 10*time.Second, true)
	defer mp.close()
	var src gguf.Source
	var opts gguf.Options
	if o.Model != "" {
		ds, err := gguf.OpenDir(o.Model)
		if err != nil {
			return err
		}
		defer ds.Close()
		cfgPath := filepath.Join(o.Model, "config.json")
		cfg, err := os.ReadFile(cfgPath)
		if err != nil {
			return fmt.Errorf("%s: %w", cfgPath, err)
		}
		dir, _ := export.TokenizerFiles(o.Model)
		src, opts = ds, gguf.Options{Config: cfg, TokenizerDir: dir}
	} else {
		dt, err := pipeline.ParseDType(o.DType)
		if err != nil {
			return usagef("--dtype: %v", err)
		}
		p, err := merge.NewPlan(ctx, merge.Options{Base: o.Base, Adapter: o.Adapter, Out: o.Out, DType: dt,
			Backends: mergeBackends, Threads: o.Threads, Logger: g.log, KeepTied: o.KeepTied,
			FetchBase: func(ctx context.Context, repoID string) (string, error) { return fetchBase(ctx, g, repoID) }})
		if err != nil {
			return err
		}
		defer p.Close()
		pr, err := p.Producer()
		if err != nil {
			return err
		}
		if src, err = pr.GGUFSource(); err != nil {
			return err
		}
		if opts, err = pr.GGUFOptions(0); err != nil {
			return err
		}
	}
	opts.Threads = o.Threads
	opts.Pre = o.Pre
	// Progress: input bytes read, over one pass per file.
	total := pipeline.SourceBytes(src) * int64(len(types))
	ps := pipeline.NewProgressSource(src, func(done, _ int64) { mp.bytesDone(min(done, total), total) })
	name := o.Name
	if name == "" {
		name = ggufDefaultName(o.Out, types)
	}
	var paths []string
	createdDir := false
	if len(types) > 1 {
		for _, t := range types {
			paths = append(paths, filepath.Join(o.Out, pipeline.GGUFFileName(name, t)))
		}
		if _, err := os.Stat(o.Out); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(o.Out, 0o755); err != nil {
				return err
			}
			createdDir = true
		}
	} else {
		paths = []string{o.Out}
	}
	plans, err := pipeline.PlanGGUF(ps, opts, name, types)
	if err != nil {
		if createdDir {
			os.Remove(o.Out)
		}
		var pe *pipeline.GGUFPlanError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", paths[pe.Index], pe.Err)
		}
		return err
	}
	var done []string
	res := exportGGUFJSON{}
	for i, pl := range plans {
		if err := gguf.WriteFile(ctx, paths[i], pl.File); err != nil {
			// No partial output: the files written before this one go too, and a directory made for them.
			for _, p := range done {
				os.Remove(p)
			}
			if createdDir {
				os.Remove(o.Out)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", paths[i], ctx.Err())
			}
			return fmt.Errorf("%s: %w", paths[i], err)
		}
		done = append(done, paths[i])
		res.Files = append(res.Files, exportGGUFFile{Path: paths[i], Type: pl.Type.String(), Size: pl.File.Size()})
	}
	mp.close()
	res.DurationMS = time.Since(start).Milliseconds()
	if o.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, f := range res.Files {
		fmt.Fprintf(g.stdout, "wrote %s (%s, %s)\n", f.Path, f.Type, mergeHumanSize(f.Size))
	}
	fmt.Fprintf(g.stdout, "%d GGUF file(s) in %.1fs\n", len(res.Files), time.Since(start).Seconds())
	return nil
}

// ggufDefaultName is export gguf's model name when --name is not given: --out's base name without the .gguf
// extension, a -<TYPE> suffix of the single type and a -GGUF suffix (model-Q4_K_M.gguf → model).
func ggufDefaultName(out string, types []gguf.FileType) string {
	n := filepath.Base(filepath.Clean(out))
	if len(types) == 1 {
		n = strings.TrimSuffix(n, ".gguf")
		if suf := "-" + types[0].String(); len(n) > len(suf) && strings.EqualFold(n[len(n)-len(suf):], suf) {
			n = n[:len(n)-len(suf)]
		}
	}
	return pipeline.GGUFModelName(n)
}
