package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/hubsync/hubsync/internal/tensor"
)

// CardInfo describes a merge (or, for AdapterCard, an adapter) for its model card.
type CardInfo struct {
	// BaseModel is the base model's Hub repo id (see BaseRepoID). A value that is not an "owner/name" repo id (a
	// local path) is named in the text by its last element but kept out of the base_model metadata.
	BaseModel string
	// AdapterName is the adapter's path or name (e.g. outputs/checkpoint-500).
	AdapterName string
	// Step is the training step of the checkpoint (0: unknown).
	Step          int
	Rank          int
	Alpha         float64
	UseRSLoRA     bool
	UseDoRA       bool
	TargetModules []string
	// DType is the output dtype of a merge.
	DType tensor.DType
	// Shards and TotalSize (bytes of tensor data) describe the merged weights.
	Shards    int
	TotalSize int64
	// Tags are added after the standard tags (duplicates dropped).
	Tags []string
	// Extra holds free-form "key: value" lines, listed sorted by key.
	Extra map[string]string
	// RepoID is the repo the card is published in, for the loading snippet ("" → a local path placeholder).
	RepoID string
	// PipelineTag overrides the pipeline tag ("" → text-generation).
	PipelineTag string
	// TiedNote says what the merge did with a tied base's embeddings ("" → nothing to say).
	TiedNote string
	// Quant describes a bitsandbytes 4-bit output and its measured error (nil: a 16/32-bit output).
	Quant *QuantReport
	// GGUF lists the GGUF files published beside (or instead of) the safetensors weights.
	GGUF []GGUFFile
}

// GGUFFile is one GGUF file on a model card.
type GGUFFile struct {
	// Path is the file's path in the repo; Type its llama-quantize name ("Q4_K_M"); Size its length in bytes.
	Path string
	Type string
	Size int64
}

// repoIDPattern is huggingface_hub's validate_repo_id rule: [namespace/]name of word characters, '-' and '.'.
var repoIDPattern = regexp.MustCompile(`^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$`)

// ValidRepoID reports whether s is a valid Hub repo id ("owner/name" or "name"), as huggingface_hub checks it.
func ValidRepoID(s string) bool {
	return repoIDPattern.MatchString(s) && !strings.Contains(s, "--") && !strings.Contains(s, "..") &&
		!strings.HasSuffix(s, ".git")
}

// cardRepoID reports whether s may name a base model on a card: a valid "owner/name" repo id. A bare name is
// valid on the Hub (legacy models such as gpt2) but is far more often a local directory ("base4"), which would
// give a broken link and a wrong base_model, so it is named as text only.
func cardRepoID(s string) bool { return strings.Contains(s, "/") && ValidRepoID(s) }

// BaseRepoID returns the Hub repo id of a merge's base for its model card, or "" when none is known: repoID when
// the base was given as one, else the repo of an HF cache snapshot directory (…/models--OWNER--NAME/snapshots/REV),
// else config.json's _name_or_path, else the adapter's base_model_name_or_path, each only when it is an
// "owner/name" repo id and not an existing local path.
func BaseRepoID(repoID, dir string, config []byte, adapterBase string) string {
	if cardRepoID(repoID) {
		return repoID
	}
	if id := cacheRepoID(dir); id != "" {
		return id
	}
	var cfg struct {
		NameOrPath string `json:"_name_or_path"`
	}
	_ = json.Unmarshal(config, &cfg) // a config without a readable _name_or_path just names nothing
	for _, s := range []string{cfg.NameOrPath, adapterBase} {
		if cardRepoID(s) && !localPath(s) {
			return s
		}
	}
	return ""
}

// cacheRepoID returns OWNER/NAME when dir is (inside) a snapshot of the HF cache's models--OWNER--NAME folder.
func cacheRepoID(dir string) string {
	if dir == "" {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(filepath.Clean(dir)), "/")
	for i := len(parts) - 3; i >= 0; i-- {
		if parts[i+1] != "snapshots" || !strings.HasPrefix(parts[i], "models--") {
			continue
		}
		owner, name, ok := strings.Cut(strings.TrimPrefix(parts[i], "models--"), "--")
		if !ok || strings.Contains(name, "--") {
			return ""
		}
		if id := owner + "/" + name; cardRepoID(id) {
			return id
		}
		return ""
	}
	return ""
}

// localPath reports whether s names an existing file or directory (so is a path, not a repo id).
func localPath(s string) bool {
	_, err := os.Stat(s)
	return err == nil
}

// frontMatter is the card's YAML metadata, in the order written.
type frontMatter struct {
	BaseModel   string   `yaml:"base_model,omitempty"`
	LibraryName string   `yaml:"library_name"`
	Tags        []string `yaml:"tags"`
	PipelineTag string   `yaml:"pipeline_tag,omitempty"`
}

func (ci CardInfo) frontMatter(library string, std ...string) []byte {
	fm := frontMatter{LibraryName: library, PipelineTag: ci.PipelineTag}
	if fm.PipelineTag == "" {
		fm.PipelineTag = "text-generation"
	}
	if cardRepoID(ci.BaseModel) {
		fm.BaseModel = ci.BaseModel
	}
	seen := map[string]bool{}
	for _, t := range append(std, ci.Tags...) {
		t = strings.TrimSpace(t)
		if t != "" && !seen[t] {
			seen[t] = true
			fm.Tags = append(fm.Tags, t)
		}
	}
	var b bytes.Buffer
	b.WriteString("---\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(fm); err != nil { // strings and string lists always encode
		panic(fmt.Sprintf("export: encode card metadata: %v", err))
	}
	enc.Close()
	b.WriteString("---\n\n")
	return b.Bytes()
}

// scaling is PEFT's LoRA scaling: alpha/r, or alpha/sqrt(r) with rsLoRA.
func (ci CardInfo) scaling() float64 {
	if ci.UseRSLoRA {
		return ci.Alpha / math.Sqrt(float64(ci.Rank))
	}
	return ci.Alpha / float64(ci.Rank)
}

func (ci CardInfo) loadPath() string {
	if ci.RepoID != "" {
		return ci.RepoID
	}
	return "path/to/this/model"
}

// code renders s as inline Markdown code, with a fence longer than any backtick run inside.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// loraLines writes the adapter's hyper-parameters as a Markdown list.
func (ci CardInfo) loraLines(b *bytes.Buffer) {
	if ci.AdapterName != "" {
		fmt.Fprintf(b, "- Adapter: %s\n", code(ci.AdapterName))
	}
	if ci.Step > 0 {
		fmt.Fprintf(b, "- Training step: %d\n", ci.Step)
	}
	if ci.Rank > 0 {
		fmt.Fprintf(b, "- LoRA rank (r): %d\n", ci.Rank)
		fmt.Fprintf(b, "- LoRA alpha: %s\n", fmtFloat(ci.Alpha))
		formula := "alpha / r"
		if ci.UseRSLoRA {
			formula = "alpha / sqrt(r)"
		}
		fmt.Fprintf(b, "- Scaling: %s (%s)\n", fmtFloat(ci.scaling()), formula)
	}
	fmt.Fprintf(b, "- rsLoRA: %t\n", ci.UseRSLoRA)
	fmt.Fprintf(b, "- DoRA: %t\n", ci.UseDoRA)
	if len(ci.TargetModules) > 0 {
		mods := make([]string, len(ci.TargetModules))
		for i, m := range ci.TargetModules {
			mods[i] = code(m)
		}
		fmt.Fprintf(b, "- Target modules: %s\n", strings.Join(mods, ", "))
	}
	if ci.TiedNote != "" {
		fmt.Fprintf(b, "- Embeddings: %s\n", ci.TiedNote)
	}
}

func (ci CardInfo) extraLines(b *bytes.Buffer) {
	keys := make([]string, 0, len(ci.Extra))
	for k := range ci.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(b, "- %s: %s\n", k, ci.Extra[k])
	}
}

func (ci CardInfo) baseName() string {
	if ci.BaseModel == "" {
		return "the base model"
	}
	if cardRepoID(ci.BaseModel) {
		return fmt.Sprintf("[%s](https://huggingface.co/%s)", ci.BaseModel, ci.BaseModel)
	}
	// A local path: its last element only (local paths are never published).
	return code(filepath.Base(filepath.Clean(ci.BaseModel)))
}

// ModelCard renders README.md for a merged model: YAML front matter (base_model, library_name: transformers,
// tags lora, merged, peft, hubsync and ci.Tags, pipeline_tag) and a body saying what was merged and how, with a
// loading snippet.
func ModelCard(ci CardInfo) []byte {
	var b bytes.Buffer
	tags := []string{"lora", "merged", "peft", "hubsync"}
	if ci.Quant != nil {
		tags = append(tags, "4-bit", "bitsandbytes")
	}
	if len(ci.GGUF) > 0 {
		tags = append(tags, "gguf")
	}
	b.Write(ci.frontMatter("transformers", tags...))
	title := ci.RepoID
	if title == "" {
		title = "Merged LoRA model"
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	if ci.Quant != nil {
		fmt.Fprintf(&b, "This model is %s with a LoRA adapter merged into its weights by hubsync, saved as a merged "+
			"4-bit (bitsandbytes %s) model. It loads with transformers and bitsandbytes; no PEFT needed.\n\n",
			ci.baseName(), ci.Quant.Config.QuantType)
	} else {
		fmt.Fprintf(&b, "This model is %s with a LoRA adapter merged into its weights by hubsync. It loads like any "+
			"transformers model: no PEFT or bitsandbytes needed.\n\n", ci.baseName())
	}
	b.WriteString("## Merge\n\n")
	ci.loraLines(&b)
	b.WriteString("- Merge: W' = W + scaling · (B · A)")
	if ci.UseDoRA {
		b.WriteString(", then rescaled row-wise by the DoRA magnitude")
	}
	b.WriteString(", computed in float32 from the dequantized base weights and rounded to nearest even\n")
	if name := ci.DType.TorchName(); name != "" {
		fmt.Fprintf(&b, "- Output dtype: %s\n", name)
	}
	if ci.Shards > 0 {
		fmt.Fprintf(&b, "- Weights: %d safetensors file(s), %s of tensor data (%d bytes)\n", ci.Shards,
			humanSize(ci.TotalSize), ci.TotalSize)
	}
	ci.extraLines(&b)
	if ci.Quant != nil {
		ci.Quant.quantLines(&b)
	}
	dtypeArg := ""
	if name := ci.DType.TorchName(); name != "" {
		dtypeArg = fmt.Sprintf(", torch_dtype=torch.%s", name)
	}
	fmt.Fprintf(&b, "\n## Usage\n\n```python\nimport torch\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"+
		"model = AutoModelForCausalLM.from_pretrained(%q%s, device_map=\"auto\")\n"+
		"tokenizer = AutoTokenizer.from_pretrained(%q)\n```\n", ci.loadPath(), dtypeArg, ci.loadPath())
	ci.ggufSection(&b)
	return b.Bytes()
}

// GGUFCard renders README.md for a repo of GGUF files only (publish: gguf): YAML front matter (base_model,
// library_name: gguf, tags gguf, lora, merged, hubsync and ci.Tags, pipeline_tag), what was merged, and the GGUF
// section (files, types, sizes, llama.cpp and Ollama usage).
func GGUFCard(ci CardInfo) []byte {
	var b bytes.Buffer
	b.Write(ci.frontMatter("gguf", "gguf", "lora", "merged", "hubsync"))
	title := ci.RepoID
	if title == "" {
		title = "Merged LoRA model (GGUF)"
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "GGUF files of %s with a LoRA adapter merged into its weights, written by hubsync (pure Go, no "+
		"llama.cpp build). They load with llama.cpp, Ollama and the other GGUF runtimes.\n\n", ci.baseName())
	b.WriteString("## Merge\n\n")
	ci.loraLines(&b)
	if name := ci.DType.TorchName(); name != "" {
		fmt.Fprintf(&b, "- Merged in: %s (the quantized types are made from the merged weights rounded to it)\n", name)
	}
	ci.extraLines(&b)
	ci.ggufSection(&b)
	return b.Bytes()
}

// ggufSection writes the card's GGUF section: a table of the files and the llama.cpp and Ollama usage lines,
// which pick a file by its type (the Hub's ":TYPE" suffix; Q4_K_M when present, else the first file).
func (ci CardInfo) ggufSection(b *bytes.Buffer) {
	if len(ci.GGUF) == 0 {
		return
	}
	b.WriteString("\n## GGUF\n\n| file | type | size |\n|---|---|---|\n")
	pick := ci.GGUF[0].Type
	for _, f := range ci.GGUF {
		fmt.Fprintf(b, "| %s | %s | %s |\n", code(f.Path), f.Type, humanSize(f.Size))
		if strings.EqualFold(f.Type, "Q4_K_M") {
			pick = f.Type
		}
	}
	ref := ci.RepoID
	if ref == "" {
		ref = "OWNER/REPO"
	}
	fmt.Fprintf(b, "\n```sh\nllama-cli -hf %s:%s\nollama run hf.co/%s:%s\n```\n", ref, pick, ref, pick)
}

// AdapterCard renders README.md for an adapter-only upload: YAML front matter (base_model, library_name: peft,
// tags lora, hubsync and ci.Tags, pipeline_tag) and a body describing the adapter, with a loading snippet.
// DType, Shards and TotalSize are not used.
func AdapterCard(ci CardInfo) []byte {
	var b bytes.Buffer
	b.Write(ci.frontMatter("peft", "lora", "hubsync"))
	title := ci.RepoID
	if title == "" {
		title = "LoRA adapter"
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "A LoRA adapter for %s, uploaded by hubsync.\n\n## Adapter\n\n", ci.baseName())
	ci.loraLines(&b)
	ci.extraLines(&b)
	fmt.Fprintf(&b, "\n## Usage\n\n```python\nfrom peft import AutoPeftModelForCausalLM\n\n"+
		"model = AutoPeftModelForCausalLM.from_pretrained(%q, device_map=\"auto\")\n```\n", ci.loadPath())
	return b.Bytes()
}

// humanSize renders a byte count with decimal units, as the Hub shows sizes ("16.1 GB").
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
