package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/safetensors"
)

func TestWriteCheckpointOrderAndContents(t *testing.T) {
	base := genBase(t, Tiny(ArchLlama))
	out := t.TempDir()
	var order []string
	opts := CheckpointOptions{Base: base, Marker: true, OptimizerSize: 1000,
		AfterFile: func(p string) { order = append(order, filepath.Base(p)) }}
	dir, err := WriteCheckpoint(context.Background(), out, 120, AdapterSpec{R: 4}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(out, "checkpoint-120") {
		t.Errorf("dir %s", dir)
	}
	want := []string{"README.md", "adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
		"special_tokens_map.json", "tokenizer.json", "training_args.bin", "optimizer.pt", "scheduler.pt",
		"rng_state.pth", "trainer_state.json", MarkerFile}
	if !slices.Equal(order, want) {
		t.Errorf("write order %v, want %v", order, want)
	}
	files := listFiles(t, dir)
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Errorf("files %v", files)
	}
	if err := safetensors.CheckFile(filepath.Join(dir, "adapter_model.safetensors")); err != nil {
		t.Error(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "optimizer.pt")); err != nil || st.Size() != 1000 {
		t.Errorf("optimizer.pt: %v %v", st, err)
	}
	var state struct {
		GlobalStep int                  `json:"global_step"`
		Epoch      float64              `json:"epoch"`
		MaxSteps   int                  `json:"max_steps"`
		Log        []struct{ Step int } `json:"log_history"`
		Best       *string              `json:"best_model_checkpoint"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "trainer_state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &state); err != nil {
		t.Fatal(err)
	}
	if state.GlobalStep != 120 || state.MaxSteps != 120 || state.Epoch != 1 || len(state.Log) != 12 ||
		state.Log[11].Step != 120 || state.Best != nil {
		t.Errorf("trainer_state %+v", state)
	}
	// The adapter is a valid adapter for the base (the reference merge accepts it).
	if _, err := ReferenceMerge(base.Dir, dir); err != nil {
		t.Error(err)
	}
}

func TestSimulateTrainerRotationAndTmpDir(t *testing.T) {
	base := genBase(t, Awkward(ArchQwen2))
	out := t.TempDir()
	var renamedSeen bool
	opts := CheckpointOptions{Base: base, SaveTotalLimit: 2, TmpDir: true, AfterFile: func(p string) {
		if filepath.Base(filepath.Dir(p))[:4] != "tmp-" {
			renamedSeen = true
		}
	}}
	dirs, err := SimulateTrainer(context.Background(), out, []int{10, 20, 30}, time.Millisecond,
		AdapterSpec{R: 2, TargetModules: AllLinear()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if renamedSeen {
		t.Error("TmpDir: files were written outside tmp-checkpoint-N")
	}
	if len(dirs) != 3 {
		t.Fatalf("dirs %v", dirs)
	}
	if got := listFiles(t, out); !slices.Equal(got, []string{"checkpoint-20", "checkpoint-30"}) {
		t.Errorf("after rotation: %v", got)
	}
	a20, _ := os.ReadFile(filepath.Join(out, "checkpoint-20", "adapter_model.safetensors"))
	a30, _ := os.ReadFile(filepath.Join(out, "checkpoint-30", "adapter_model.safetensors"))
	if len(a20) == 0 || bytes.Equal(a20, a30) {
		t.Error("checkpoints hold identical adapters")
	}
	var state struct {
		GlobalStep int `json:"global_step"`
		MaxSteps   int `json:"max_steps"`
	}
	data, _ := os.ReadFile(filepath.Join(out, "checkpoint-20", "trainer_state.json"))
	if err := json.Unmarshal(data, &state); err != nil || state.GlobalStep != 20 || state.MaxSteps != 30 {
		t.Errorf("trainer_state %+v %v", state, err)
	}
}

// TestCheckpointPartialWrites shows that a watcher sees half-written files while ChunkDelay slows the writes.
func TestCheckpointPartialWrites(t *testing.T) {
	base := genBase(t, Tiny(ArchLlama))
	out := t.TempDir()
	path := filepath.Join(out, "checkpoint-5", "adapter_model.safetensors")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	partial := make(chan error, 1)
	wg.Add(1)
	go func() { // the watcher
		defer wg.Done()
		for ctx.Err() == nil {
			if st, err := os.Stat(path); err == nil && st.Size() > 0 {
				if err := safetensors.CheckFile(path); err != nil {
					partial <- err
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := WriteCheckpoint(ctx, out, 5, AdapterSpec{R: 8, TargetModules: AllLinear()},
		CheckpointOptions{Base: base, ChunkSize: 4096, ChunkDelay: 15 * time.Millisecond})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case perr := <-partial:
		if !errors.Is(perr, safetensors.ErrFormat) {
			t.Errorf("a half-written file gave %v, want a format error", perr)
		}
	default:
		t.Error("the watcher never saw a half-written adapter file")
	}
	if err := safetensors.CheckFile(path); err != nil {
		t.Errorf("finished file: %v", err)
	}
}

func TestWriteCheckpointErrors(t *testing.T) {
	if _, err := WriteCheckpoint(context.Background(), t.TempDir(), 1, AdapterSpec{}, CheckpointOptions{}); err == nil {
		t.Error("no base accepted")
	}
	base := genBase(t, Tiny(ArchLlama))
	if _, err := WriteCheckpoint(context.Background(), t.TempDir(), 1, AdapterSpec{LoRABias: true},
		CheckpointOptions{Base: base}); err == nil {
		t.Error("an invalid adapter spec was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := SimulateTrainer(ctx, t.TempDir(), []int{1, 2}, time.Hour, AdapterSpec{},
		CheckpointOptions{Base: base}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
