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

func runTestmodelCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String() + errb.String()
}

func TestTestmodelCommands(t *testing.T) {
	dir := t.TempDir()
	base, adapter, outputs := filepath.Join(dir, "base"), filepath.Join(dir, "adapter"), filepath.Join(dir, "outputs")
	if code, out := runTestmodelCLI(t, "testmodel", "base", base, "--preset", "awkward-qwen2", "--quant", "fp4",
		"--double-quant", "--blocksize", "32", "--dtype", "fp16", "--shard-size", "4KB", "--seed", "7"); code != 0 {
		t.Fatalf("base: exit %d: %s", code, out)
	}
	info, err := testmodel.LoadBaseInfo(base)
	if err != nil {
		t.Fatal(err)
	}
	s := info.Spec
	if s.Arch != testmodel.ArchQwen2 || s.Quant != testmodel.QuantFP4 || !s.DoubleQuant || s.Blocksize != 32 ||
		s.DType.TorchName() != "float16" || s.ShardSize != 4000 || s.Seed != 7 || !info.Indexed {
		t.Errorf("spec %+v", s)
	}
	if code, out := runTestmodelCLI(t, "testmodel", "adapter", adapter, "--base", base, "--r", "4", "--alpha", "8",
		"--targets", "all-linear", "--dora", "--rslora", "--dtype", "bf16", "--bias", "all"); code != 0 {
		t.Fatalf("adapter: exit %d: %s", code, out)
	}
	if _, err := testmodel.ReferenceMerge(base, adapter); err != nil {
		t.Errorf("reference merge of the CLI's output: %v", err)
	}
	if code, out := runTestmodelCLI(t, "testmodel", "checkpoints", outputs, "--base", base, "--steps", "10,20,30",
		"--marker", "--save-total-limit", "2", "--targets", "q_proj,v_proj", "--optimizer-size", "2KB"); code != 0 {
		t.Fatalf("checkpoints: exit %d: %s", code, out)
	}
	ents, err := os.ReadDir(outputs)
	if err != nil || len(ents) != 2 || ents[0].Name() != "checkpoint-20" || ents[1].Name() != "checkpoint-30" {
		t.Errorf("outputs %v %v", ents, err)
	}
	if _, err := os.Stat(filepath.Join(outputs, "checkpoint-30", testmodel.MarkerFile)); err != nil {
		t.Error(err)
	}
}

func TestTestmodelUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"testmodel"},
		{"testmodel", "base"},
		{"testmodel", "base", dir, "--preset", "gpt2"},
		{"testmodel", "base", dir, "--quant", "int8"},
		{"testmodel", "base", dir, "--dtype", "int8"},
		{"testmodel", "base", dir, "--shard-size", "lots"},
		{"testmodel", "adapter", dir},
		{"testmodel", "adapter", dir, "--base", dir, "--dtype", "u8"},
		{"testmodel", "checkpoints", dir, "--base", dir},
		{"testmodel", "checkpoints", dir, "--base", dir, "--steps", "a,b"},
	} {
		if code, out := runTestmodelCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, out)
		}
	}
	// A bad spec that passes flag parsing is a failure (exit 1), with the reason.
	if code, out := runTestmodelCLI(t, "testmodel", "base", filepath.Join(dir, "b"), "--blocksize", "48"); code != exitFailure ||
		!strings.Contains(out, "block size") {
		t.Errorf("exit %d: %s", code, out)
	}
}

func TestParseTestmodelSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2GB", 2_000_000_000, true}, {"5gb", 5_000_000_000, true}, {"1.5MB", 1_500_000, true},
		{"64KiB", 65536, true}, {"1GiB", 1 << 30, true}, {"123", 123, true}, {"10 MB", 10_000_000, true},
		{"7b", 7, true}, {"", 0, false}, {"GB", 0, false}, {"-1KB", 0, false}, {"1XB", 0, false},
		{"NaN", 0, false}, {"1e30GB", 0, false},
	} {
		got, err := parseTestmodelSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTestmodelSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}
