package watcher

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// simTrainer writes checkpoints the way the transformers Trainer does for a PEFT model (prior-art.md §2.2): in
// place, file after file, each file in chunks so that partial files are visible, trainer_state.json last.
type simTrainer struct {
	t     testing.TB
	rng   *rand.Rand
	chunk int           // bytes per write
	pause time.Duration // sleep between chunks
	// lastStart is when the latest chunk write began.
	lastStart time.Time
}

func newSimTrainer(t testing.TB, seed uint64) *simTrainer {
	return &simTrainer{t: t, rng: rand.New(rand.NewPCG(seed, 7)), chunk: 512, pause: time.Millisecond}
}

// adapterBytes returns a small LoRA adapter safetensors file with random bf16 weights.
func (s *simTrainer) adapterBytes() []byte {
	s.t.Helper()
	var ts []safetensors.Data
	for _, name := range []string{"q_proj", "v_proj"} {
		for _, ab := range []struct {
			n     string
			shape []int64
		}{{"lora_A", []int64{4, 32}}, {"lora_B", []int64{32, 4}}} {
			n := ab.shape[0] * ab.shape[1]
			buf := make([]byte, 2*n)
			for i := int64(0); i < n; i++ {
				binary.LittleEndian.PutUint16(buf[2*i:], tensor.F32ToBF16(float32(s.rng.NormFloat64())))
			}
			ts = append(ts, safetensors.Data{
				Entry: safetensors.Entry{
					Name:  fmt.Sprintf("base_model.model.model.layers.0.self_attn.%s.%s.weight", name, ab.n),
					DType: tensor.BF16, Shape: ab.shape,
				},
				Bytes: buf,
			})
		}
	}
	p := filepath.Join(s.t.TempDir(), "adapter.safetensors")
	if _, err := safetensors.WriteTensors(p, ts, nil); err != nil {
		s.t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		s.t.Fatal(err)
	}
	return data
}

func (s *simTrainer) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return b
}

// writeChunked writes data into path in chunks, pausing between them.
func (s *simTrainer) writeChunked(path string, data []byte) {
	s.t.Helper()
	f, err := os.Create(path)
	if err != nil {
		s.t.Error(err)
		return
	}
	defer f.Close()
	for off := 0; off < len(data); off += s.chunk {
		end := min(off+s.chunk, len(data))
		s.lastStart = time.Now()
		if _, err := f.Write(data[off:end]); err != nil {
			s.t.Error(err)
			return
		}
		time.Sleep(s.pause)
	}
}

func trainerStateJSON(step int64) []byte {
	st := map[string]any{
		"best_metric": nil, "best_model_checkpoint": nil, "epoch": float64(step) / 100, "eval_steps": 500,
		"global_step": step, "is_hyper_param_search": false, "is_local_process_zero": true,
		"log_history":   []any{map[string]any{"epoch": 0.1, "grad_norm": 0.5, "learning_rate": 1e-4, "loss": 1.25, "step": step}},
		"logging_steps": 10, "max_steps": 1000, "num_train_epochs": 3, "save_steps": 10, "total_flos": 1.5e12,
		"train_batch_size": 4, "trial_name": nil, "trial_params": nil,
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}

// files returns the checkpoint's files in the Trainer's write order.
func (s *simTrainer) files(step int64) []struct {
	name string
	data []byte
} {
	cfg, _ := json.MarshalIndent(map[string]any{
		"base_model_name_or_path": "unsloth/llama-3-8b-bnb-4bit", "peft_type": "LORA", "r": 4, "lora_alpha": 8,
		"target_modules": []string{"q_proj", "v_proj"}, "task_type": "CAUSAL_LM",
	}, "", "  ")
	return []struct {
		name string
		data []byte
	}{
		{"README.md", []byte("---\nlibrary_name: peft\n---\n# adapter\n")},
		{"adapter_model.safetensors", s.adapterBytes()},
		{"adapter_config.json", cfg},
		{"tokenizer_config.json", []byte(`{"model_max_length": 8192, "padding_side": "right"}`)},
		{"special_tokens_map.json", []byte(`{"bos_token": "<|begin_of_text|>"}`)},
		{"tokenizer.json", s.random(8 << 10)},
		{"training_args.bin", s.random(700)},
		{"optimizer.pt", s.random(24 << 10)},
		{"scheduler.pt", s.random(1 << 10)},
		{"rng_state.pth", s.random(14 << 10)},
		{TrainerStateFile, trainerStateJSON(step)},
	}
}

// writeCheckpoint writes dir/checkpoint-step (or name, when given) and returns when trainer_state.json is
// complete.
func (s *simTrainer) writeCheckpoint(outDir, name string, step int64) string {
	s.t.Helper()
	if name == "" {
		name = fmt.Sprintf("checkpoint-%d", step)
	}
	dir := filepath.Join(outDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	for _, f := range s.files(step) {
		s.writeChunked(filepath.Join(dir, f.name), f.data)
	}
	return dir
}

// writeInstant writes a complete checkpoint without pauses.
func writeInstant(t testing.TB, outDir string, step int64) string {
	t.Helper()
	s := newSimTrainer(t, uint64(step))
	s.chunk, s.pause = math.MaxInt32, 0
	return s.writeCheckpoint(outDir, "", step)
}
