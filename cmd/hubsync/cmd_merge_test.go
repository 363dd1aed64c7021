package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	base := filepath.Join(dir, "base")
	bi, err := testmodel.GenerateBase(ctx, base, testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-20")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	badAdapter := filepath.Join(dir, "bad-adapter")
	if _, err := testmodel.GenerateAdapter(ctx, badAdapter, bi, testmodel.AdapterSpec{Seed: 4}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badAdapter, "adapter_config.json"), []byte(`{"peft_type": "LORA", "r": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		outExist bool
	}{
		{"ok", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--threads", "2", "--max-shard-size", "20kB"}, 0, "merged", "", true},
		{"fp32", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--dtype", "fp32", "--device", "cpu", "--kernel", "generic"}, 0, "float32", "", true},
		{"missing base", []string{"--adapter", adapter, "--out", "OUT"}, 2, "", "--base is required", false},
		{"bad dtype", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--dtype", "int8"}, 2, "", "--dtype", false},
		{"bad shard size", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--max-shard-size", "lots"}, 2, "", "--max-shard-size", false},
		{"bad shard layout", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--shard-layout", "flat"}, 2, "", "--shard-layout", false},
		{"hf layout", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--shard-layout", "hf"}, 0, "merged", "", true},
		{"bad device", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--device", "tpu"}, 2, "", "--device", false},
		{"no cuda", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "--device", "cuda"}, 1, "", "built without CUDA support", false},
		{"positional", []string{"--base", base, "--adapter", adapter, "--out", "OUT", "extra"}, 2, "", "", false},
		{"bad adapter", []string{"--base", base, "--adapter", badAdapter, "--out", "OUT"}, 1, "", "rank 8", false},
		{"missing base dir", []string{"--base", filepath.Join(dir, "nope"), "--adapter", adapter, "--out", "OUT"}, 1, "", "does not exist", false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "outs", string(rune('a'+i)), "merged")
			args := []string{"merge"}
			for _, a := range c.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
			if code != c.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), c.stdout)
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), c.stderr)
			}
			_, err := os.Stat(filepath.Join(out, "config.json"))
			if (err == nil) != c.outExist {
				t.Errorf("output exists: %v, want %v", err == nil, c.outExist)
			}
			if !c.outExist {
				if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) > 0 {
					t.Errorf("left behind after a failure: %v", ents)
				}
			}
		})
	}
}

// TestMergeCommandKeepTied: a LoRA on a tied embedding is untied by default and logged; --keep-tied keeps the
// embeddings tied and warns.
func TestMergeCommandKeepTied(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	base := filepath.Join(dir, "base")
	bi, err := testmodel.GenerateBase(ctx, base, testmodel.Tiny(testmodel.ArchQwen2))
	if err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-5")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{EmbeddingLoRA: true, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		extra  []string
		stderr string
		tie    string
	}{
		{"default", nil, "untying embeddings", `"tie_word_embeddings": false`},
		{"keep-tied", []string{"--keep-tied"}, "keeping tied embeddings", `"tie_word_embeddings": true`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name)
			var stdout, stderr bytes.Buffer
			args := append([]string{"merge", "--base", base, "--adapter", adapter, "--out", out}, c.extra...)
			if code := run(ctx, args, strings.NewReader(""), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), c.stderr)
			}
			cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(cfg), c.tie) {
				t.Errorf("config.json lacks %s:\n%s", c.tie, cfg)
			}
		})
	}
}

// TestMergeCommand4Bit: --dtype nf4 writes a bitsandbytes 4-bit model and reports its error (text and --json);
// the 4-bit flags are refused without a 4-bit dtype.
func TestMergeCommand4Bit(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	base := filepath.Join(dir, "base")
	bi, err := testmodel.GenerateBase(ctx, base, testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(dir, "checkpoint-20")
	if _, err := testmodel.GenerateAdapter(ctx, adapter, bi, testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"nf4", []string{"--dtype", "nf4", "--compute-dtype", "bf16"}, 0, "RMSE", ""},
		{"fp4-json", []string{"--dtype", "fp4", "--double-quant=false", "--blocksize", "128", "--json"}, 0, `"max_abs_error"`, ""},
		{"blocksize-without-4bit", []string{"--dtype", "bf16", "--blocksize", "128"}, 2, "", "--blocksize apply to --dtype nf4 or fp4"},
		{"bad-blocksize", []string{"--dtype", "nf4", "--blocksize", "100"}, 2, "", "--blocksize must be"},
		{"bad-storage", []string{"--dtype", "nf4", "--quant-storage", "int8"}, 2, "", "--quant-storage"},
		{"nothing-to-quantize", []string{"--dtype", "nf4", "--skip-modules", "model,lm_head"}, 1, "", "no quantizable weights"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "outs", string(rune('a'+i)))
			args := append([]string{"merge", "--base", base, "--adapter", adapter, "--out", out}, c.args...)
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
			if code != c.code || !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			if code != 0 {
				return
			}
			cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err != nil || !strings.Contains(string(cfg), `"quant_method": "bitsandbytes"`) {
				t.Fatalf("config.json: %s, %v", cfg, err)
			}
		})
	}
}
