package testmodel

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/hubsync/hubsync/internal/timing"

	"github.com/hubsync/hubsync/internal/safetensors"
)

// MarkerFile is the completion marker a cooperative trainer callback writes last (prior-art.md §2.5).
const MarkerFile = ".hubsync-complete"

// CheckpointOptions shape how WriteCheckpoint writes a checkpoint.
type CheckpointOptions struct {
	// Base is the base model the adapter belongs to (required).
	Base *BaseInfo
	// OptimizerSize is the size of optimizer.pt in bytes (default 64 KiB).
	OptimizerSize int64
	// FileDelay pauses after each file, so watchers see the checkpoint grow file by file.
	FileDelay time.Duration
	// ChunkSize, if positive, writes every file in chunks of this many bytes with ChunkDelay between them, so
	// watchers can observe half-written files.
	ChunkSize  int
	ChunkDelay time.Duration
	// Marker writes MarkerFile after trainer_state.json.
	Marker bool
	// SaveTotalLimit, if positive, deletes the oldest checkpoint-* directories beyond this many after the save,
	// as the Trainer's _rotate_checkpoints does (ordered by step; the Trainer orders by mtime and falls back to
	// the step when mtimes are within a second, which is what sequential saves give).
	SaveTotalLimit int
	// TmpDir writes into tmp-checkpoint-<step> and renames it to checkpoint-<step> at the end (transformers
	// 4.36–4.38 behaviour).
	TmpDir bool
	// MaxSteps is trainer_state.json's max_steps (default: the step itself).
	MaxSteps int
	// LoggingSteps is the interval of log_history entries (default 10).
	LoggingSteps int
	// AfterFile, if set, is called with each file's path once it is completely written (before FileDelay), in
	// write order; tests use it to act at precise points of a save.
	AfterFile func(path string)
}

// chunkWriter writes to a file in chunks with pauses between them.
type chunkWriter struct {
	ctx   context.Context
	f     *os.File
	chunk int
	delay time.Duration
}

// Write writes p in chunks, pausing between them; it stops early when the context ends.
func (c *chunkWriter) Write(p []byte) (int, error) {
	if c.chunk <= 0 {
		return c.f.Write(p)
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), c.chunk)
		m, err := c.f.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		if err := timing.Sleep(c.ctx, c.delay); err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteCheckpoint writes outputsDir/checkpoint-<step>/ as a PEFT Trainer save does, in its order
// (prior-art.md §2.2): README.md (PEFT model card), adapter_model.safetensors, adapter_config.json, tokenizer
// files, training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth, then trainer_state.json last (and
// MarkerFile after it when opts.Marker). Files are written in place, as the Trainer does. The adapter's seed is
// offset by the step, so every checkpoint holds different weights. It returns the checkpoint directory.
func WriteCheckpoint(ctx context.Context, outputsDir string, step int, adapter AdapterSpec,
	opts CheckpointOptions) (string, error) {
	if opts.Base == nil {
		return "", fmt.Errorf("testmodel: WriteCheckpoint needs the base (CheckpointOptions.Base)")
	}
	if step < 0 {
		return "", fmt.Errorf("testmodel: negative step %d", step)
	}
	adapter.Seed += int64(step)
	plan, err := planAdapter(opts.Base, adapter)
	if err != nil {
		return "", err
	}
	final := filepath.Join(outputsDir, "checkpoint-"+strconv.Itoa(step))
	dir := final
	if opts.TmpDir {
		dir = filepath.Join(outputsDir, "tmp-checkpoint-"+strconv.Itoa(step))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	put := func(name string, produce func(w io.Writer) error) error {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		err = produce(&chunkWriter{ctx: ctx, f: f, chunk: opts.ChunkSize, delay: opts.ChunkDelay})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("testmodel: write %s: %w", filepath.Join(dir, name), err)
		}
		if opts.AfterFile != nil {
			opts.AfterFile(filepath.Join(dir, name))
		}
		return timing.Sleep(ctx, opts.FileDelay)
	}
	bytesOf := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	rnd := rand.New(rand.NewPCG(uint64(adapter.Seed), 0x5EED))
	randomFile := func(n int64) func(io.Writer) error {
		return func(w io.Writer) error {
			buf := make([]byte, min(n, 1<<20))
			for left := n; left > 0; left -= int64(len(buf)) {
				p := buf[:min(left, int64(len(buf)))]
				for i := range p {
					p[i] = byte(rnd.Uint32())
				}
				if _, err := w.Write(p); err != nil {
					return err
				}
			}
			return nil
		}
	}
	a := plan.info.Spec
	if err := put("README.md", bytesOf(modelCard(a.BaseModelName))); err != nil {
		return "", err
	}
	if err := put("adapter_model.safetensors", func(w io.Writer) error {
		return plan.writeWeights(ctx, func(l *safetensors.Layout, fill safetensors.FillFunc) error {
			_, err := safetensors.Write(ctx, w, l, fill)
			return err
		})
	}); err != nil {
		return "", err
	}
	cfg, err := marshalJSON(plan.info.Config)
	if err != nil {
		return "", err
	}
	if err := put("adapter_config.json", bytesOf(cfg)); err != nil {
		return "", err
	}
	bs := opts.Base.Spec
	for _, f := range tokenizerFiles(bs.Tokenizer, bs.Arch.tokenizerFamily(), bs.Vocab+a.ResizeVocab,
		bs.MaxPositionEmbeddings) {
		if err := put(f.name, bytesOf(f.data)); err != nil {
			return "", err
		}
	}
	optSize := opts.OptimizerSize
	if optSize <= 0 {
		optSize = 64 << 10
	}
	for _, f := range []struct {
		name string
		size int64
	}{{"training_args.bin", 5432}, {"optimizer.pt", optSize}, {"scheduler.pt", 1064}, {"rng_state.pth", 14244}} {
		if err := put(f.name, randomFile(f.size)); err != nil {
			return "", err
		}
	}
	state, err := trainerState(step, opts)
	if err != nil {
		return "", err
	}
	if err := put("trainer_state.json", bytesOf(state)); err != nil {
		return "", err
	}
	if opts.Marker {
		if err := put(MarkerFile, bytesOf(nil)); err != nil {
			return "", err
		}
	}
	if opts.TmpDir {
		if err := os.RemoveAll(final); err != nil {
			return "", err
		}
		if err := os.Rename(dir, final); err != nil {
			return "", err
		}
	}
	if opts.SaveTotalLimit > 0 {
		if err := rotateCheckpoints(outputsDir, opts.SaveTotalLimit); err != nil {
			return "", err
		}
	}
	return final, nil
}

// SimulateTrainer writes a checkpoint for each step, waiting interval between saves, and returns their
// directories. The adapter's seed is offset per step, so each checkpoint differs. MaxSteps defaults to the last
// step.
func SimulateTrainer(ctx context.Context, outputsDir string, steps []int, interval time.Duration,
	adapter AdapterSpec, opts CheckpointOptions) ([]string, error) {
	if opts.MaxSteps == 0 && len(steps) > 0 {
		opts.MaxSteps = slices.Max(steps)
	}
	var dirs []string
	for i, step := range steps {
		if i > 0 {
			if err := timing.Sleep(ctx, interval); err != nil {
				return dirs, err
			}
		}
		d, err := WriteCheckpoint(ctx, outputsDir, step, adapter, opts)
		if err != nil {
			return dirs, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

var checkpointRe = regexp.MustCompile(`^checkpoint-([0-9]+)$`)

// rotateCheckpoints deletes the oldest checkpoint-* directories beyond limit.
func rotateCheckpoints(outputsDir string, limit int) error {
	ents, err := os.ReadDir(outputsDir)
	if err != nil {
		return err
	}
	type ck struct {
		name string
		step int
	}
	var cks []ck
	for _, e := range ents {
		m := checkpointRe.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		cks = append(cks, ck{e.Name(), n})
	}
	slices.SortFunc(cks, func(a, b ck) int { return a.step - b.step })
	for i := 0; i < len(cks)-limit; i++ {
		if err := os.RemoveAll(filepath.Join(outputsDir, cks[i].name)); err != nil {
			return err
		}
	}
	return nil
}

// trainerState renders trainer_state.json as the Trainer does (sorted keys, 2-space indent).
func trainerState(step int, opts CheckpointOptions) ([]byte, error) {
	maxSteps := max(opts.MaxSteps, step, 1)
	logEvery := opts.LoggingSteps
	if logEvery <= 0 {
		logEvery = 10
	}
	epoch := float64(step) / float64(maxSteps)
	r := rand.New(rand.NewPCG(uint64(step), 7))
	var hist []map[string]any
	for s := logEvery; s <= step; s += logEvery {
		hist = append(hist, map[string]any{
			"epoch":         pyNum(float64(s) / float64(maxSteps)),
			"grad_norm":     pyNum(0.3 + 0.2*r.Float64()),
			"learning_rate": pyNum(2e-4 * (1 - float64(s)/float64(maxSteps+1))),
			"loss":          pyNum(math.Round((0.8+1.7*math.Exp(-3*float64(s)/float64(maxSteps))+0.05*r.Float64())*1e4) / 1e4),
			"step":          s,
		})
	}
	if hist == nil {
		hist = []map[string]any{}
	}
	return marshalJSON(map[string]any{
		"best_global_step":      nil,
		"best_metric":           nil,
		"best_model_checkpoint": nil,
		"epoch":                 pyNum(epoch),
		"eval_steps":            500,
		"global_step":           step,
		"is_hyper_param_search": false,
		"is_local_process_zero": true,
		"is_world_process_zero": true,
		"log_history":           hist,
		"logging_steps":         logEvery,
		"max_steps":             maxSteps,
		"num_input_tokens_seen": 0,
		"num_train_epochs":      1,
		"save_steps":            max(step, 1),
		"stateful_callbacks": map[string]any{"TrainerControl": map[string]any{"args": map[string]any{
			"should_epoch_stop": false, "should_evaluate": false, "should_log": false, "should_save": true,
			"should_training_stop": step >= maxSteps}, "attributes": map[string]any{}}},
		"total_flos":       pyNum(float64(step) * 1.234567e13),
		"train_batch_size": 8,
		"trial_name":       nil,
		"trial_params":     nil,
	})
}

// modelCard is PEFT's default README.md for a saved adapter (abridged template).
func modelCard(base string) []byte {
	return fmt.Appendf(nil, `---
base_model: %s
library_name: peft
---

# Model Card for Model ID

<!-- Provide a quick summary of what the model is/does. -->

## Model Details

### Model Description

- **Developed by:** [More Information Needed]
- **Model type:** [More Information Needed]
- **Finetuned from model [optional]:** [More Information Needed]

## Training Details

### Training Procedure

#### Training Hyperparameters

- **Training regime:** [More Information Needed]

### Framework versions

- PEFT 0.17.1
`, base)
}
