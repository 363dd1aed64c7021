package pipeline

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/merge"
)

// GGUFFileName names the GGUF file of type t of a model called name as llama.cpp's and unsloth's Hub repos do:
// "<name>-<TYPE>.gguf" (Llama-3.2-1B-Instruct-Q4_K_M.gguf).
func GGUFFileName(name string, t gguf.FileType) string { return name + "-" + t.String() + ".gguf" }

// GGUFModelName is the model name GGUF files are named after: the last element of a repo id or directory,
// without a "-GGUF" suffix (me/llama3-sft-GGUF → llama3-sft).
func GGUFModelName(repoOrDir string) string {
	n := path.Base(strings.TrimRight(strings.ReplaceAll(repoOrDir, "\\", "/"), "/"))
	if len(n) > 5 && strings.EqualFold(n[len(n)-5:], "-gguf") {
		n = n[:len(n)-5]
	}
	if n == "." || n == "/" || n == "" {
		n = "model"
	}
	return n
}

// GGUFPlan is one planned GGUF file of a model: its name in the output set and the file.
type GGUFPlan struct {
	Path string
	Type gguf.FileType
	File *gguf.File
}

// PlanGGUF plans the GGUF file of every type from src: opts (Config, TokenizerDir, Threads) with each type,
// named GGUFFileName(name, type). Errors name the file and the problem.
func PlanGGUF(src gguf.Source, opts gguf.Options, name string, types []gguf.FileType) ([]GGUFPlan, error) {
	out := make([]GGUFPlan, 0, len(types))
	for _, t := range types {
		o := opts
		o.Type = t
		if o.Name == "" {
			o.Name = name
		}
		f, err := gguf.Plan(src, o)
		if err != nil {
			return nil, fmt.Errorf("GGUF %s: %w", GGUFFileName(name, t), err)
		}
		out = append(out, GGUFPlan{Path: GGUFFileName(name, t), Type: t, File: f})
	}
	return out, nil
}

// PlanMergedGGUF plans the GGUF files of a merge (merge.Producer.GGUFSource, with the merged config and the
// checkpoint's, else the base's, tokenizer).
func PlanMergedGGUF(pr *merge.Producer, name string, types []gguf.FileType) ([]GGUFPlan, error) {
	src, err := pr.GGUFSource()
	if err != nil {
		return nil, err
	}
	opts, err := pr.GGUFOptions(0)
	if err != nil {
		return nil, err
	}
	return PlanGGUF(src, opts, name, types)
}

// ProgressSource wraps a gguf.Source and reports the input bytes read so far against the sum of its tensors'
// sizes (one pass over the tensors per file written; the total counts one).
type ProgressSource struct {
	gguf.Source
	done     atomic.Int64
	total    int64
	progress func(done, total int64)
}

// NewProgressSource wraps src; progress is called after every read.
func NewProgressSource(src gguf.Source, progress func(done, total int64)) *ProgressSource {
	return &ProgressSource{Source: src, total: SourceBytes(src), progress: progress}
}

// SourceBytes is the sum of the sizes of src's tensors.
func SourceBytes(src gguf.Source) int64 {
	var total int64
	for _, t := range src.Tensors() {
		n := int64(t.DType.Size())
		for _, d := range t.Shape {
			n *= d
		}
		total += n
	}
	return total
}

// Total is the sum of the tensors' sizes.
func (p *ProgressSource) Total() int64 { return p.total }

// ReadTensor implements gguf.Source.
func (p *ProgressSource) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	err := p.Source.ReadTensor(ctx, name, off, n, w)
	if err == nil && p.progress != nil {
		p.progress(p.done.Add(n), p.total)
	}
	return err
}
