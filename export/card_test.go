package export

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hubsync/hubsync/internal/tensor"
)

// splitCard returns the parsed front matter and the body of a card.
func splitCard(t *testing.T, card []byte) (map[string]any, string) {
	t.Helper()
	s := string(card)
	if !strings.HasPrefix(s, "---\n") {
		t.Fatalf("card does not start with front matter:\n%s", s)
	}
	end := strings.Index(s[4:], "\n---\n")
	if end < 0 {
		t.Fatalf("front matter not closed:\n%s", s)
	}
	var fm map[string]any
	if err := yaml.Unmarshal([]byte(s[4:4+end]), &fm); err != nil {
		t.Fatalf("front matter is not YAML: %v", err)
	}
	return fm, s[4+end+5:]
}

func TestModelCard(t *testing.T) {
	ci := CardInfo{
		BaseModel: "unsloth/llama-3-8b-bnb-4bit", AdapterName: "outputs/checkpoint-500", Step: 500,
		Rank: 16, Alpha: 32, UseRSLoRA: true, TargetModules: []string{"q_proj", "v_proj"},
		DType: tensor.BF16, Shards: 4, TotalSize: 16_060_522_496, Tags: []string{"sft", "lora", "a: b"},
		Extra: map[string]string{"dataset": "alpaca", "author": "me"}, RepoID: "me/llama-merged",
	}
	fm, body := splitCard(t, ModelCard(ci))
	want := map[string]any{
		"base_model": "unsloth/llama-3-8b-bnb-4bit", "library_name": "transformers",
		"tags":         []any{"lora", "merged", "peft", "hubsync", "sft", "a: b"},
		"pipeline_tag": "text-generation",
	}
	if !reflect.DeepEqual(fm, want) {
		t.Errorf("front matter = %v, want %v", fm, want)
	}
	for _, s := range []string{
		"# me/llama-merged", "[unsloth/llama-3-8b-bnb-4bit](https://huggingface.co/unsloth/llama-3-8b-bnb-4bit)",
		"`outputs/checkpoint-500`", "Training step: 500", "LoRA rank (r): 16", "LoRA alpha: 32",
		"Scaling: 8 (alpha / sqrt(r))", "rsLoRA: true", "DoRA: false", "`q_proj`, `v_proj`", "Output dtype: bfloat16",
		"4 safetensors file(s), 16.1 GB of tensor data (16060522496 bytes)",
		"- author: me\n- dataset: alpaca\n",
		`AutoModelForCausalLM.from_pretrained("me/llama-merged", torch_dtype=torch.bfloat16, device_map="auto")`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q:\n%s", s, body)
		}
	}
	// Front matter keys in the documented order.
	card := string(ModelCard(ci))
	if a, b, c, d := strings.Index(card, "base_model:"), strings.Index(card, "library_name:"), strings.Index(card, "tags:"), strings.Index(card, "pipeline_tag:"); !(a < b && b < c && c < d) {
		t.Errorf("front matter order wrong:\n%s", card)
	}
	if !bytes.Equal(ModelCard(ci), ModelCard(ci)) {
		t.Error("card is not deterministic")
	}
}

func TestModelCardPlainScalingAndLocalBase(t *testing.T) {
	ci := CardInfo{BaseModel: "/models/llama", Rank: 8, Alpha: 16, UseDoRA: true, DType: tensor.F16}
	fm, body := splitCard(t, ModelCard(ci))
	if _, ok := fm["base_model"]; ok {
		t.Errorf("local path in base_model: %v", fm)
	}
	if strings.Contains(body, "/models/llama") {
		t.Errorf("the local path is published:\n%s", body)
	}
	for _, s := range []string{"`llama`", "Scaling: 2 (alpha / r)", "DoRA: true", "DoRA magnitude",
		`from_pretrained("path/to/this/model", torch_dtype=torch.float16`} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q:\n%s", s, body)
		}
	}
}

func TestAdapterCard(t *testing.T) {
	ci := CardInfo{BaseModel: "meta-llama/Meta-Llama-3-8B", Rank: 16, Alpha: 16, Tags: []string{"hubsync", "x"},
		RepoID: "me/adapter", AdapterName: "checkpoint-10`odd`"}
	fm, body := splitCard(t, AdapterCard(ci))
	want := map[string]any{
		"base_model": "meta-llama/Meta-Llama-3-8B", "library_name": "peft",
		"tags": []any{"lora", "hubsync", "x"}, "pipeline_tag": "text-generation",
	}
	if !reflect.DeepEqual(fm, want) {
		t.Errorf("front matter = %v, want %v", fm, want)
	}
	for _, s := range []string{"Scaling: 1 (alpha / r)", `AutoPeftModelForCausalLM.from_pretrained("me/adapter"`,
		"`` checkpoint-10`odd` ``"} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q:\n%s", s, body)
		}
	}
}

// TestCardIndependentOfBuild: a card depends only on what was merged, never on how the binary was built (a
// VCS-stamped build used to write its pseudo-version, a test binary "(devel)", so published cards differed from a
// local merge's).
func TestCardIndependentOfBuild(t *testing.T) {
	ci := CardInfo{BaseModel: "o/base", Rank: 8, Alpha: 16, DType: tensor.BF16, RepoID: "me/m"}
	stamp := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		stamp = bi.Main.Version
	}
	for name, card := range map[string][]byte{"model": ModelCard(ci), "adapter": AdapterCard(ci)} {
		if bytes.Contains(card, []byte(stamp)) || bytes.Contains(card, []byte("(devel)")) {
			t.Errorf("%s card carries the build's version %q:\n%s", name, stamp, card)
		}
	}
}

func TestBaseRepoID(t *testing.T) {
	local := t.TempDir()
	cache := filepath.Join(local, "hub", "models--unsloth--llama-3-8b-bnb-4bit", "snapshots", "0123abc")
	tests := []struct {
		name, repoID, dir, config, adapter, want string
	}{
		{"given repo id", "o/n", cache, `{"_name_or_path":"x/y"}`, "a/b", "o/n"},
		{"cache snapshot", "", cache, `{"_name_or_path":"x/y"}`, "a/b", "unsloth/llama-3-8b-bnb-4bit"},
		{"cache subfolder", "", filepath.Join(cache, "sub"), "", "", "unsloth/llama-3-8b-bnb-4bit"},
		{"config name", "", "/models/base4", `{"_name_or_path":"meta-llama/Llama-3-8B"}`, "a/b", "meta-llama/Llama-3-8B"},
		{"adapter's base", "", "/models/base4", `{"_name_or_path":"/models/base4"}`, "a/b", "a/b"},
		{"bare name", "", "/models/base4", `{"_name_or_path":"base4"}`, "base4", ""},
		{"local path in config", "", "/models/base4", `{"_name_or_path":"/models/base4"}`, "/models/base4", ""},
		{"existing relative dir", "", "/m", "", local, ""},
		{"no owner in the cache name", "", "/c/models--gpt2/snapshots/abc", "", "", ""},
		{"broken config", "", "/m", `{`, "", ""},
		{"nothing", "", "", "", "", ""},
	}
	for _, tc := range tests {
		if got := BaseRepoID(tc.repoID, tc.dir, []byte(tc.config), tc.adapter); got != tc.want {
			t.Errorf("%s: BaseRepoID = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzBaseRepoID(f *testing.F) {
	f.Add("", "/c/models--o--n/snapshots/r", `{"_name_or_path":"a/b"}`, "x/y")
	f.Add("", "models--a--b--c/snapshots/x", `{}`, "../a")
	f.Fuzz(func(t *testing.T, repoID, dir, config, adapter string) {
		if got := BaseRepoID(repoID, dir, []byte(config), adapter); got != "" && !cardRepoID(got) {
			t.Fatalf("BaseRepoID gave %q, not an owner/name repo id", got)
		}
	})
}

func TestValidRepoID(t *testing.T) {
	for s, want := range map[string]bool{
		"gpt2": true, "unsloth/llama-3-8b-bnb-4bit": true, "a.b/c_d": true,
		"/abs/path": false, "./rel": false, "a/b/c": false, "a--b/c": false, "a/b.git": false, "": false,
		"a/..b": false, "with space/x": false,
	} {
		if got := ValidRepoID(s); got != want {
			t.Errorf("ValidRepoID(%q) = %t, want %t", s, got, want)
		}
	}
}

func TestTokenizerFiles(t *testing.T) {
	ckpt, base, none := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base, "tokenizer.json")
	write(base, "tokenizer_config.json")
	write(base, "tokenizer.model")
	write(base, "config.json")
	os.Mkdir(filepath.Join(none, "tokenizer.json"), 0o755) // a directory does not count
	write(none, "adapter_config.json")

	if dir, names := TokenizerFiles("", none, base, ckpt); dir != base ||
		!reflect.DeepEqual(names, []string{"tokenizer.json", "tokenizer_config.json", "tokenizer.model"}) {
		t.Errorf("TokenizerFiles = %s %v", dir, names)
	}
	write(ckpt, "special_tokens_map.json")
	write(ckpt, "chat_template.jinja")
	os.Symlink(filepath.Join(base, "tokenizer.json"), filepath.Join(ckpt, "tokenizer.json")) // HF cache style
	if dir, names := TokenizerFiles(ckpt, base); dir != ckpt ||
		!reflect.DeepEqual(names, []string{"tokenizer.json", "special_tokens_map.json", "chat_template.jinja"}) {
		t.Errorf("TokenizerFiles = %s %v", dir, names)
	}
	if dir, names := TokenizerFiles(none, filepath.Join(none, "missing")); dir != "" || names != nil {
		t.Errorf("TokenizerFiles with none = %q %v", dir, names)
	}
	list := TokenizerFileNames()
	list[0] = "changed"
	if TokenizerFileNames()[0] != "tokenizer.json" {
		t.Error("TokenizerFileNames exposes its table")
	}
}
