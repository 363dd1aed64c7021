// Package merge merges a PEFT LoRA adapter into its base model and writes a standard Hugging Face checkpoint.
//
// The base is a local model directory (or a Hub repo id found in the HF cache) holding bitsandbytes 4-bit (NF4
// or FP4, with or without double quantization) or plain F32/F16/BF16 weights, in one file or sharded. The merge
// dequantizes exactly as bitsandbytes does (and rounds to the weight's quant_state dtype, as bitsandbytes returns
// it), adds scaling·(B·A) in float32 with every PEFT option (rank/alpha patterns, rsLoRA, fan_in_fan_out,
// lora_bias, trained biases, DoRA on Linear and Embedding layers, embedding LoRA, modules_to_save including resized
// vocabularies), and rounds to the output dtype exactly as torch does (model-formats.md §4, §5, §8).
//
// [NewPlan] opens and validates everything and decides every output tensor before any math runs; the shard plan,
// headers, progress totals and the disk-space check come from it. [Plan.Execute] then streams: every tensor is cut
// into tiles that workers compute in parallel (a [Backend]: the CPU kernels, or CUDA in a -tags cuda build) and
// the writer takes in order, so memory stays bounded by the tiles in flight, not by the model, and the output is
// the same bytes for any number of workers.
//
// Output tensor order (which decides how tensors fall into shards) is the natural Hugging Face module order
// (embeddings, layers by number with attention then MLP then norms, final norm, lm_head; see naturalLess), since
// neither a safetensors file (sorted by dtype and name) nor an index (sorted by name) keeps the state-dict order.
// By default the tensors the adapter does not change go first, in their own shards (Options.ShardLayout).
package merge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/hubsync/hubsync/internal/fsutil"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/tensor"
)

// Result reports a finished merge.
type Result struct {
	// Dir is the final output directory.
	Dir string
	// Files lists every output file with its size, SHA-256 and leading sample, as written.
	Files []export.FileDigest
	// Tensors is the number of output tensors; Merged how many of them a LoRA update changed.
	Tensors, Merged int
	// Bytes is the tensors' data size.
	Bytes int64
	// Shards is the number of weight files.
	Shards int
	// DType is the model dtype written to config.json.
	DType tensor.DType
	// Backend names the backend that computed the tiles.
	Backend  string
	Duration time.Duration
	// Card is what the model card (README.md) was rendered from.
	Card export.CardInfo
	// Quant reports a 4-bit output's measured error against the 16-bit merge (nil for a 16/32-bit output).
	Quant *QuantResult
}

// Run plans and executes a merge.
func Run(ctx context.Context, opts Options) (*Result, error) {
	p, err := NewPlan(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Execute(ctx)
}

// specs lists the output tensors for the shard planner, in state-dict order.
func (p *Plan) specs() []export.TensorSpec {
	out := make([]export.TensorSpec, len(p.tensors))
	for i, t := range p.tensors {
		out[i] = export.TensorSpec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	return out
}

// auxFiles lists the small files copied into the output: generation_config.json from the base and the
// tokenizer files from the adapter directory, else from the base.
func (p *Plan) auxFiles() []export.AuxFile {
	var aux []export.AuxFile
	if st, err := os.Stat(filepath.Join(p.base.dir, genConfigFile)); err == nil && st.Mode().IsRegular() {
		aux = append(aux, export.AuxFile{Name: genConfigFile, Src: filepath.Join(p.base.dir, genConfigFile)})
	}
	dir, toks := export.TokenizerFiles(p.ad.dir, p.base.dir)
	for _, n := range toks {
		aux = append(aux, export.AuxFile{Name: n, Src: filepath.Join(dir, n)})
	}
	return aux
}

// Execute writes the merged model into a temporary directory beside Options.Out and renames it into place. On
// any error nothing is left behind. With Options.Quant the 16-bit merge is written first (beside Options.Out) and
// then re-quantized into the 4-bit output.
func (p *Plan) Execute(ctx context.Context) (*Result, error) {
	if p.opts.Quant != nil {
		start := time.Now()
		res, err := p.executeQuant(ctx)
		if res != nil {
			res.Duration = time.Since(start)
		}
		return res, err
	}
	return p.execute16(ctx)
}

// execute16 writes the 16/32-bit merge into Options.Out.
func (p *Plan) execute16(ctx context.Context) (*Result, error) {
	start := time.Now()
	sp, err := p.planShards()
	if err != nil {
		return nil, err
	}
	aux := p.auxFiles()
	need := sp.FileSize() + 1<<20 // + index, config, card
	for _, a := range aux {
		if st, err := os.Stat(a.Src); err == nil {
			need += st.Size()
		}
	}
	if !p.opts.SkipDiskCheck {
		if err := checkDiskSpace(p.opts.Out, need); err != nil {
			return nil, err
		}
	}
	outDir, err := filepath.Abs(p.opts.Out)
	if err != nil {
		return nil, fmt.Errorf("merge: output directory %s: %w", p.opts.Out, err)
	}
	p.log.Info().Str("base", p.base.dir).Str("adapter", p.ad.dir).Str("out", outDir).
		Int("tensors", len(p.tensors)).Int("merged", p.merged).Int("shards", len(sp.Shards)).
		Int64("bytes", sp.TotalSize).Str("dtype", p.modelDType.TorchName()).Str("backend", p.backend.Name()).
		Int("threads", p.opts.Threads).Msg("merging")

	order := make([]*outTensor, 0, len(p.tensors))
	byName := make(map[string]*outTensor, len(p.tensors))
	for _, t := range p.tensors {
		byName[t.Name] = t
	}
	for _, s := range sp.Shards {
		for _, ti := range s.Layout.Tensors {
			order = append(order, byName[ti.Name])
		}
	}
	st := newStream(ctx, p, order)
	var card export.CardInfo
	var filesErr error
	dir, files, err := export.WriteModel(ctx, p.opts.Out, sp, st.fill, func() (export.ModelFiles, error) {
		var m export.ModelFiles
		m, card, filesErr = p.modelFiles(sp, aux)
		return m, filesErr
	})
	st.stop()
	if err != nil {
		if err == filesErr {
			return nil, err
		}
		return nil, p.outputErr(ctx, err)
	}
	res := &Result{
		Dir: dir, Files: files, Tensors: len(p.tensors), Merged: p.merged, Bytes: sp.TotalSize,
		Shards: len(sp.Shards), DType: p.modelDType, Backend: p.backend.Name(), Duration: time.Since(start),
		Card: card,
	}
	p.log.Info().Str("out", dir).Int64("took_ms", res.Duration.Milliseconds()).
		Str("rate", fmt.Sprintf("%.3f GB/s", float64(res.Bytes)/1e9/res.Duration.Seconds())).Msg("merged")
	return res, nil
}

// planShards lays the output tensors out in shards.
func (p *Plan) planShards() (*export.ShardPlan, error) {
	sp, err := p.ShardPlan()
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return sp, nil
}

// modelFiles is the merged directory's config.json (dtype, vocabulary and untying rewritten), copied auxiliary
// files and model card, and what the card was rendered from.
func (p *Plan) modelFiles(sp *export.ShardPlan, aux []export.AuxFile) (export.ModelFiles, export.CardInfo, error) {
	cfg, err := export.MergedConfig(p.base.config, p.modelDType, p.vocabSize, p.untie)
	if err != nil {
		return export.ModelFiles{}, export.CardInfo{}, &InputError{File: filepath.Join(p.base.dir, configFile), Msg: "cannot rewrite", Err: err}
	}
	card := p.cardInfo(sp)
	return export.ModelFiles{Config: cfg, Aux: aux, Card: export.ModelCard(card)}, card, nil
}

// outputErr wraps an error of writing the output directory (a cancelled merge reports the context's error).
func (p *Plan) outputErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !IsBadInput(err) {
		return fmt.Errorf("merge: %w", ctx.Err())
	}
	return fmt.Errorf("merge: %w", err)
}

var checkpointStep = regexp.MustCompile(`checkpoint-(\d+)$`)

// cardInfo describes the merge for the model card.
func (p *Plan) cardInfo(sp *export.ShardPlan) export.CardInfo {
	c := p.ad.cfg
	base := export.BaseRepoID(p.base.repoID, p.base.dir, p.base.config, c.BaseModelNameOrPath)
	if base == "" {
		base = p.base.dir
	}
	name := p.opts.AdapterName
	if name == "" {
		name = filepath.Base(filepath.Clean(p.ad.dir))
	}
	ci := export.CardInfo{
		BaseModel: base, AdapterName: name, Rank: c.R, Alpha: c.LoraAlpha, UseRSLoRA: c.UseRSLoRA,
		UseDoRA: c.UseDoRA, TargetModules: c.TargetModules, DType: p.modelDType, Shards: len(sp.Shards),
		TotalSize: sp.TotalSize, Tags: p.opts.CardTags, Extra: p.opts.CardExtra, TiedNote: p.tiedNote,
		RepoID: p.opts.CardRepoID, GGUF: p.cardGGUF,
	}
	if m := checkpointStep.FindStringSubmatch(name); m != nil {
		ci.Step, _ = strconv.Atoi(m[1])
	}
	return ci
}

// checkDiskSpace fails when the file system that will hold out has fewer than need free bytes.
func checkDiskSpace(out string, need int64) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("merge: output %s: %w", out, err)
	}
	dir := filepath.Dir(abs)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("merge: output %s: %w", out, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	avail, err := fsutil.AvailableBytes(dir)
	if err != nil {
		return fmt.Errorf("merge: check free space in %s: %w", dir, err)
	}
	if avail < need {
		return &DiskSpaceError{Dir: dir, Need: need, Avail: avail}
	}
	return nil
}
