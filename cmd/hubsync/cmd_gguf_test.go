package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/merge"
)

// parseGGUF reads a GGUF file with the gguf package's strict reader and returns its header.
func parseGGUF(t *testing.T, path string) *gguf.Header {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := gguf.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return h
}

// dirNames lists the names in dir ("" when it does not exist).
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestExportGGUFCLI: export gguf from a checkpoint writes a GGUF file the reader parses (architecture, file type,
// every tensor); from the merged directory of the same checkpoint it writes the same bytes; a list of types
// writes <name>-<TYPE>.gguf files into a directory, --json lists them.
func TestExportGGUFCLI(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 40)
	ckpt := filepath.Join(f.outputs, "checkpoint-40")
	dir := t.TempDir()
	out := filepath.Join(dir, "tiny-Q8_0.gguf")
	code, stdout, errb := hubcliRun(t, "export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", out, "--type", "Q8_0")
	if code != 0 {
		t.Fatalf("export gguf: exit %d\n%s", code, errb)
	}
	if !strings.Contains(stdout, "tiny-Q8_0.gguf (Q8_0") {
		t.Errorf("stdout %q", stdout)
	}
	h := parseGGUF(t, out)
	if kv, ok := h.Get("general.architecture"); !ok || kv.Value != "llama" {
		t.Errorf("general.architecture = %v", kv.Value)
	}
	if kv, ok := h.Get("general.file_type"); !ok || kv.Value != uint32(gguf.FileQ8_0) {
		t.Errorf("general.file_type = %#v", kv.Value)
	}
	if kv, ok := h.Get("general.name"); !ok || kv.Value != "tiny" {
		t.Errorf("general.name = %#v, want tiny (from the file name)", kv.Value)
	}
	if _, ok := h.Tensor("token_embd.weight"); !ok || len(h.Tensors) < 10 {
		t.Errorf("tensors %v", h.Tensors)
	}
	if kv, ok := h.Get("tokenizer.ggml.pre"); !ok || kv.Value == "qwen2" {
		t.Errorf("tokenizer.ggml.pre = %#v, want the recognised name", kv.Value)
	}

	// --gguf-pre overrides the recognised pre-tokenizer name.
	pre := filepath.Join(dir, "pre.gguf")
	if code, _, errb := hubcliRun(t, "export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", pre, "--type", "f16", "--gguf-pre", "qwen2"); code != 0 {
		t.Fatalf("export gguf --gguf-pre: exit %d\n%s", code, errb)
	}
	if kv, ok := parseGGUF(t, pre).Get("tokenizer.ggml.pre"); !ok || kv.Value != "qwen2" {
		t.Errorf("with --gguf-pre qwen2: tokenizer.ggml.pre = %#v", kv.Value)
	}

	// From the merged directory: the same bytes (the merge streams into the file what merge writes).
	merged := filepath.Join(dir, "merged")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: merged, Device: "cpu"}); err != nil {
		t.Fatal(err)
	}
	fromDir := filepath.Join(dir, "fromdir.gguf")
	if code, _, errb := hubcliRun(t, "export", "gguf", "--model", merged, "--out", fromDir, "--type", "q8_0", "--name", "tiny"); code != 0 {
		t.Fatalf("export gguf --model: exit %d\n%s", code, errb)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(fromDir)
	if string(a) != string(b) {
		t.Errorf("--model of the merged directory differs from the streamed merge (%d vs %d bytes)", len(b), len(a))
	}

	// Several types: a directory of <name>-<TYPE>.gguf.
	multi := filepath.Join(dir, "llama3-sft-GGUF")
	code, stdout, errb = hubcliRun(t, "export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", multi, "--type", "q8_0,f16", "--json", "--threads", "1")
	if code != 0 {
		t.Fatalf("export gguf several types: exit %d\n%s", code, errb)
	}
	var res exportGGUFJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Files) != 2 {
		t.Fatalf("--json %q (%v)", stdout, err)
	}
	if got := strings.Join(dirNames(t, multi), ","); got != "llama3-sft-F16.gguf,llama3-sft-Q8_0.gguf" {
		t.Errorf("files %s", got)
	}
	for _, fi := range res.Files {
		if st, err := os.Stat(fi.Path); err != nil || st.Size() != fi.Size {
			t.Errorf("%+v: %v", fi, err)
		}
		parseGGUF(t, fi.Path)
	}
	// --threads does not change the bytes.
	c, _ := os.ReadFile(filepath.Join(multi, "llama3-sft-Q8_0.gguf"))
	if h2 := parseGGUF(t, filepath.Join(multi, "llama3-sft-Q8_0.gguf")); h2.DataSize != h.DataSize || string(c[h2.DataOffset:]) != string(a[h.DataOffset:]) {
		t.Error("tensor data differs with --threads 1")
	}
}

// TestExportGGUFCLIErrors: usage errors exit 2; an input the GGUF writer refuses (unknown architecture, no
// tokenizer, a tensor shape the type cannot hold, also as the second of two types) exits 1 with the problem
// named, and leaves no file (nor a directory it made).
func TestExportGGUFCLIErrors(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 3)
	ckpt := filepath.Join(f.outputs, "checkpoint-3")
	dir := t.TempDir()
	merged := filepath.Join(dir, "merged")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: merged, Device: "cpu"}); err != nil {
		t.Fatal(err)
	}
	alien := filepath.Join(dir, "alien")
	notok := filepath.Join(dir, "notok")
	for _, d := range []string{alien, notok} {
		if err := os.CopyFS(d, os.DirFS(merged)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(alien, "config.json"))
	var m map[string]any
	json.Unmarshal(cfg, &m)
	m["architectures"], m["model_type"] = []string{"AlienForCausalLM"}, "alien"
	cfg, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(alien, "config.json"), cfg, 0o644)
	for _, n := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"} {
		os.Remove(filepath.Join(notok, n))
	}
	out := filepath.Join(dir, "out")
	tests := []struct {
		name string
		args []string
		code int
		msg  []string
	}{
		{"no type", []string{"--model", merged, "--out", out + ".gguf"}, 2, []string{"--type"}},
		{"bad type", []string{"--model", merged, "--out", out + ".gguf", "--type", "q3_k_xl"}, 2, []string{"q3_k_xl"}},
		{"no input", []string{"--out", out + ".gguf", "--type", "f16"}, 2, []string{"--model"}},
		{"model and adapter", []string{"--model", merged, "--adapter", ckpt, "--out", out + ".gguf", "--type", "f16"}, 2, []string{"--model"}},
		{"adapter without base", []string{"--adapter", ckpt, "--out", out + ".gguf", "--type", "f16"}, 2, []string{"--base"}},
		{"unknown architecture", []string{"--model", alien, "--out", out + ".gguf", "--type", "f16"}, 1, []string{"AlienForCausalLM"}},
		{"no tokenizer", []string{"--model", notok, "--out", out + ".gguf", "--type", "f16"}, 1, []string{"tokenizer"}},
		{"shape the type cannot hold", []string{"--base", f.base, "--adapter", ckpt, "--out", out + ".gguf", "--type", "q4_k_m"}, 1, []string{out + ".gguf: ", "cannot"}},
		{"second type fails", []string{"--base", f.base, "--adapter", ckpt, "--out", out, "--type", "f16,q4_k_m"}, 1, []string{filepath.Join(out, "out-Q4_K_M.gguf") + ": "}},
		{"missing model", []string{"--model", filepath.Join(dir, "nothing"), "--out", out + ".gguf", "--type", "f16"}, 1, []string{"nothing"}},
	}
	for _, tc := range tests {
		code, _, errb := hubcliRun(t, append([]string{"export", "gguf"}, tc.args...)...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d: %s", tc.name, code, tc.code, errb)
		}
		for _, s := range tc.msg {
			if !strings.Contains(errb, s) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errb, s)
			}
		}
		// No partial output: no file, no temporary file, no directory made for several types.
		for _, n := range dirNames(t, dir) {
			if strings.HasPrefix(n, "out") {
				t.Errorf("%s: left %s behind", tc.name, n)
				os.RemoveAll(filepath.Join(dir, n))
			}
		}
	}
}
