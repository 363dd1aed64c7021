package watcher

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		step int64
		ok   bool
	}{
		{"checkpoint-0", 0, true},
		{"checkpoint-500", 500, true},
		{"checkpoint-0500", 500, true},
		{"checkpoint-9223372036854775807", 9223372036854775807, true},
		{"checkpoint-9223372036854775808", 0, false},
		{"checkpoint-", 0, false},
		{"checkpoint--5", 0, false},
		{"checkpoint-5a", 0, false},
		{"checkpoint-+5", 0, false},
		{"tmp-checkpoint-5", 0, false},
		{"checkpoint-5.tmp", 0, false},
		{"Checkpoint-5", 0, false},
		{"runs", 0, false},
	} {
		step, ok := ParseStep(tc.name)
		if step != tc.step || ok != tc.ok {
			t.Errorf("ParseStep(%q) = %d, %v; want %d, %v", tc.name, step, ok, tc.step, tc.ok)
		}
	}
}

func TestParseTrainerState(t *testing.T) {
	full := string(trainerStateJSON(500))
	for _, tc := range []struct {
		name    string
		in      string
		step    int64
		wantErr string
	}{
		{"trainer output", full, 500, ""},
		{"minimal", `{"global_step": 7}`, 7, ""},
		{"float step", `{"global_step": 7.0}`, 7, ""},
		{"best checkpoint", `{"global_step": 3, "best_model_checkpoint": "out/checkpoint-3", "epoch": 1.5}`, 3, ""},
		{"truncated", full[:len(full)/2], 0, "not a complete JSON object"},
		{"truncated before brace", strings.TrimRight(full, "}\n"), 0, "not a complete JSON object"},
		{"empty", ``, 0, "not a complete JSON object"},
		{"no step", `{"epoch": 1}`, 0, "no global_step"},
		{"null step", `{"global_step": null}`, 0, "no global_step"},
		{"string step", `{"global_step": "5"}`, 0, "is not a number"},
		{"fractional step", `{"global_step": 5.5}`, 0, "not a non-negative integer"},
		{"negative step", `{"global_step": -5}`, 0, "negative"},
		{"huge step", `{"global_step": 1e300}`, 0, "not a non-negative integer"},
		{"array", `[1,2]`, 0, "not a complete JSON object"},
		{"trailing data", `{"global_step": 5} {"global_step": 6}`, 0, "trailing data"},
		{"trailing whitespace", "{\"global_step\": 5}\n\n", 5, ""},
		{"key case matters", `{"Global_Step": 5}`, 0, "no global_step"},
		{"null document", `null`, 0, "not a complete JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseTrainerState([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.GlobalStep != tc.step {
				t.Fatalf("GlobalStep = %d, want %d", st.GlobalStep, tc.step)
			}
		})
	}
}

func FuzzParseTrainerState(f *testing.F) {
	f.Add(trainerStateJSON(500))
	f.Add([]byte(`{"global_step": 7.0, "epoch": 0.25, "best_model_checkpoint": "x"}`))
	f.Add([]byte(`{"global_step": -1}`))
	f.Add([]byte(`{"global_step": 1e19}`))
	f.Add([]byte(`{"global_step": 5} x`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseTrainerState(data)
		if err != nil {
			return
		}
		if st.GlobalStep < 0 {
			t.Fatalf("negative step %d accepted", st.GlobalStep)
		}
		// Whatever parses must be a JSON object whose global_step is that integer.
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("accepted invalid JSON: %v", err)
		}
		v, ok := m["global_step"].(float64)
		if !ok {
			t.Fatalf("accepted global_step %v", m["global_step"])
		}
		if d := v - float64(st.GlobalStep); d > 1e-6*v+1 || d < -(1e-6*v+1) {
			t.Fatalf("GlobalStep %d, document says %v", st.GlobalStep, v)
		}
	})
}

// ckptFixture builds a checkpoint directory for the table below.
type ckptFixture func(t *testing.T, dir string)

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func adapterCheckpoint(step int64) ckptFixture {
	return func(t *testing.T, dir string) {
		s := newSimTrainer(t, 1)
		for _, f := range s.files(step) {
			writeFile(t, filepath.Join(dir, f.name), f.data)
		}
	}
}

// shardedCheckpoint writes a full fine-tune: two model shards, their index, trainer_state.
func shardedCheckpoint(step int64) ckptFixture {
	return func(t *testing.T, dir string) {
		s := newSimTrainer(t, 2)
		a := s.adapterBytes()
		writeFile(t, filepath.Join(dir, "config.json"), []byte(`{"model_type": "llama"}`))
		writeFile(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), a)
		writeFile(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), a)
		writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"metadata": {"total_size": 10},
 "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}`))
		writeFile(t, filepath.Join(dir, TrainerStateFile), trainerStateJSON(step))
	}
}

func then(fs ...ckptFixture) ckptFixture {
	return func(t *testing.T, dir string) {
		for _, f := range fs {
			f(t, dir)
		}
	}
}

func remove(name string) ckptFixture {
	return func(t *testing.T, dir string) {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func put(name, content string) ckptFixture {
	return func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, name), []byte(content)) }
}

func truncate(name string, keep int64) ckptFixture {
	return func(t *testing.T, dir string) {
		if err := os.Truncate(filepath.Join(dir, name), keep); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dirName  string
		build    ckptFixture
		marker   string
		complete bool
		byMarker bool
		reasons  []string // substrings of Reason
		weights  int
	}{
		{name: "complete adapter", build: adapterCheckpoint(500), complete: true, weights: 1},
		{name: "complete sharded model", build: shardedCheckpoint(500), complete: true, weights: 2},
		{name: "missing trainer_state", build: then(adapterCheckpoint(500), remove(TrainerStateFile)),
			reasons: []string{"trainer_state.json missing"}},
		{name: "wrong global_step", build: adapterCheckpoint(400), reasons: []string{"global_step is 400, want 500"}},
		{name: "trainer_state being written", build: then(adapterCheckpoint(500), truncate(TrainerStateFile, 100)),
			reasons: []string{"trainer_state.json: not a complete JSON object"}},
		{name: "truncated adapter safetensors", build: then(adapterCheckpoint(500), truncate("adapter_model.safetensors", 300)),
			reasons: []string{"adapter_model.safetensors", "invalid safetensors file"}},
		{name: "safetensors header only", build: then(adapterCheckpoint(500), truncate("adapter_model.safetensors", 4)),
			reasons: []string{"adapter_model.safetensors"}},
		{name: "truncated shard", build: then(shardedCheckpoint(500), truncate("model-00002-of-00002.safetensors", 1000)),
			reasons: []string{"model-00002-of-00002.safetensors"}},
		{name: "index names a missing shard", build: then(shardedCheckpoint(500), remove("model-00002-of-00002.safetensors")),
			reasons: []string{"model.safetensors.index.json names shard model-00002-of-00002.safetensors, which does not exist"}},
		{name: "index being written", build: then(shardedCheckpoint(500), truncate("model.safetensors.index.json", 20)),
			reasons: []string{"model.safetensors.index.json: not a complete JSON index"}},
		{name: "index outside the checkpoint", build: then(shardedCheckpoint(500),
			put("model.safetensors.index.json", `{"weight_map": {"a": "../x.safetensors"}}`)),
			reasons: []string{"outside the checkpoint"}},
		{name: "adapter without config", build: then(adapterCheckpoint(500), remove("adapter_config.json")),
			reasons: []string{"adapter_config.json missing"}},
		{name: "adapter config being written", build: then(adapterCheckpoint(500), truncate("adapter_config.json", 10)),
			reasons: []string{"adapter_config.json: not a complete JSON object"}},
		{name: "adapter config before weights", build: then(adapterCheckpoint(500), remove("adapter_model.safetensors")),
			reasons: []string{"adapter_config.json present but no adapter_model.safetensors"}},
		{name: "several problems", build: then(adapterCheckpoint(500), remove(TrainerStateFile), remove("adapter_config.json")),
			reasons: []string{"trainer_state.json missing", "adapter_config.json missing"}},
		{name: "marker present", build: then(adapterCheckpoint(500), remove(TrainerStateFile), put(DefaultMarker, "")),
			complete: true, byMarker: true},
		{name: "custom marker", marker: "COMPLETED", build: then(put("COMPLETED", "")), complete: true, byMarker: true},
		{name: "default marker ignored when another is configured", marker: "COMPLETED",
			build: then(put(DefaultMarker, "")), reasons: []string{"trainer_state.json missing"}},
		{name: "empty directory", build: func(*testing.T, string) {}, reasons: []string{"trainer_state.json missing"}},
		{name: "deepspeed subdir", build: then(adapterCheckpoint(500), put("global_step500/zero_pp_rank_0_mp_rank_00_model_states.pt", "x"),
			put("latest", "global_step500")), complete: true, weights: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.dirName
			if name == "" {
				name = "checkpoint-500"
			}
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tc.build(t, dir)
			c, err := Check(dir, CheckOptions{Marker: tc.marker})
			if err != nil {
				t.Fatal(err)
			}
			if c.Step != 500 {
				t.Errorf("Step = %d", c.Step)
			}
			if c.Complete != tc.complete || c.ByMarker != tc.byMarker {
				t.Fatalf("Complete=%v ByMarker=%v (reason %q), want %v %v", c.Complete, c.ByMarker, c.Reason, tc.complete, tc.byMarker)
			}
			if tc.complete && c.Reason != "" {
				t.Errorf("complete with reason %q", c.Reason)
			}
			for _, r := range tc.reasons {
				if !strings.Contains(c.Reason, r) {
					t.Errorf("Reason %q does not mention %q", c.Reason, r)
				}
			}
			if tc.weights != 0 && len(c.Weights) != tc.weights {
				t.Errorf("Weights = %v, want %d", c.Weights, tc.weights)
			}
			if len(c.Files) == 0 && tc.name != "empty directory" {
				t.Error("no Files listed")
			}
			for _, f := range c.Files {
				st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Rel)))
				if err != nil || st.Size() != f.Size || !st.ModTime().Equal(f.ModTime) {
					t.Errorf("Files entry %+v does not match the file (%v)", f, err)
				}
			}
		})
	}
}

func TestCheckErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := Check(filepath.Join(root, "checkpoint-1"), CheckOptions{}); !isNotExist(err) {
		t.Errorf("missing dir: err = %v, want not-exist", err)
	}
	if _, err := Check(filepath.Join(root, "outputs"), CheckOptions{}); err == nil || !strings.Contains(err.Error(), "not a checkpoint-N") {
		t.Errorf("bad name: err = %v", err)
	}
	writeFile(t, filepath.Join(root, "checkpoint-2"), []byte("x"))
	if _, err := Check(filepath.Join(root, "checkpoint-2"), CheckOptions{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: err = %v", err)
	}
}

// BenchmarkCheck measures one examination of a complete adapter checkpoint (what the watcher does per debounced
// burst of events, or per poll).
func BenchmarkCheck(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "checkpoint-500")
	s := newSimTrainer(b, 1)
	for _, f := range s.files(500) {
		writeFileB(b, filepath.Join(dir, f.name), f.data)
	}
	b.ResetTimer()
	for range b.N {
		c, err := Check(dir, CheckOptions{})
		if err != nil || !c.Complete {
			b.Fatal(c.Reason, err)
		}
	}
}
