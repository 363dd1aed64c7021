package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hubsync/hubsync/export"
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
	// Opts are the options it was planned with.
	Opts gguf.Options
}

// PlanGGUF plans the GGUF file of every type from src: opts (Config, TokenizerDir, Threads) with each type,
// named GGUFFileName(name, type). An error is a *GGUFPlanError naming the file and the problem.
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
			return nil, &GGUFPlanError{Index: len(out), Path: GGUFFileName(name, t), Err: err}
		}
		out = append(out, GGUFPlan{Path: GGUFFileName(name, t), Type: t, File: f, Opts: o})
	}
	return out, nil
}

// GGUFPlanError is a GGUF file that cannot be planned: the input is refused for that type.
type GGUFPlanError struct {
	// Index is the type's position in the list; Path the file's name.
	Index int
	Path  string
	Err   error
}

// Error names the file and the problem.
func (e *GGUFPlanError) Error() string { return "GGUF " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the writer's error.
func (e *GGUFPlanError) Unwrap() error { return e.Err }

// PlanMergedGGUF plans the GGUF files of a merge (merge.Producer.GGUFSource, with the merged config and the
// checkpoint's, else the base's, tokenizer).
func PlanMergedGGUF(pr *merge.Producer, name, pre string, types []gguf.FileType) ([]GGUFPlan, error) {
	src, err := pr.GGUFSource()
	if err != nil {
		return nil, err
	}
	opts, err := pr.GGUFOptions(0)
	if err != nil {
		return nil, err
	}
	opts.Pre = pre
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

// ggufRel is the path in the output set (relative to the merged model's folder) of the target's GGUF file of
// type typ.
func (t *Target) ggufRel(typ gguf.FileType) string {
	return path.Join(t.GGUFPath, GGUFFileName(GGUFModelName(t.Repo), typ))
}

// planTargetGGUF plans the target's GGUF files from the checkpoint's merge, at their paths in the output set.
// Planning reads no tensor data: its errors (an architecture, tokenizer or tensor shape the GGUF writer refuses)
// are the checkpoint's, and fail its job alone (PermanentError).
func planTargetGGUF(src *mergedSource, t *Target) ([]GGUFPlan, error) {
	plans, err := PlanMergedGGUF(src.producer, GGUFModelName(t.Repo), t.GGUFPre, t.GGUF)
	if err != nil {
		return nil, permanent(err)
	}
	for i := range plans {
		plans[i].Path = t.ggufRel(plans[i].Type)
	}
	return plans, nil
}

// ggufCardFiles lists planned GGUF files for a model card.
func ggufCardFiles(plans []GGUFPlan) []export.GGUFFile {
	out := make([]export.GGUFFile, len(plans))
	for i, p := range plans {
		out[i] = export.GGUFFile{Path: p.Path, Type: p.Type.String(), Size: p.File.Size()}
	}
	return out
}

// ggufBytes is the planned GGUF files' total size.
func ggufBytes(plans []GGUFPlan) int64 {
	var n int64
	for _, p := range plans {
		n += p.File.Size()
	}
	return n
}

// addGGUF adds the planned GGUF files to set. Staging none: pass one produces each file once, without writing
// it, for its digest and block digests, and the upload produces it again (src serves it). Disk: each file is
// written atomically into set.Dir at its path and digested from there; when set.Dir holds the merged shards
// (fromDir) the file is made from them (gguf.OpenDir: the same tensor bytes, read instead of merged again), if
// the file planned from them has the same layout.
func addGGUF(ctx context.Context, set *outputSet, src *mergedSource, plans []GGUFPlan, mode string, fromDir bool) error {
	var ds *gguf.DirSource
	if mode != StagingNone && fromDir && len(plans) > 0 {
		if d, err := gguf.OpenDir(set.Dir); err == nil {
			ds = d
			defer ds.Close()
		}
	}
	for _, pl := range plans {
		if ds != nil {
			if f, err := gguf.Plan(ds, pl.Opts); err == nil && sameLayout(f, pl.File) {
				pl.File = f
			}
		}
		if mode == StagingNone {
			d, err := merge.DigestProduced(ctx, pl.Path, pl.File.Size(), pl.File.ProduceRange)
			if err != nil {
				return fmt.Errorf("GGUF %s: %w", pl.Path, err)
			}
			src.shards[pl.Path] = &producedShard{gguf: pl.File, digest: d}
			set.Files = append(set.Files, d.FileDigest)
			continue
		}
		p := filepath.Join(set.Dir, filepath.FromSlash(pl.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("GGUF %s: %w", pl.Path, err)
		}
		if err := gguf.WriteFile(ctx, p, pl.File); err != nil {
			return fmt.Errorf("GGUF %s: %w", pl.Path, err)
		}
		d, err := digestFile(ctx, p, pl.Path)
		if err != nil {
			return fmt.Errorf("GGUF %s: %w", pl.Path, err)
		}
		set.Files = append(set.Files, d)
	}
	sort.Slice(set.Files, func(i, j int) bool { return set.Files[i].Path < set.Files[j].Path })
	return nil
}

// digestFile hashes the file p (size, SHA-256, sample) as the output set's file rel.
func digestFile(ctx context.Context, p, rel string) (export.FileDigest, error) {
	f, err := os.Open(p)
	if err != nil {
		return export.FileDigest{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return export.FileDigest{}, err
	}
	d, err := merge.DigestProduced(ctx, rel, st.Size(), func(ctx context.Context, off, n int64, w io.Writer) error {
		_, err := io.Copy(w, io.NewSectionReader(f, off, n))
		return err
	})
	if err != nil {
		return export.FileDigest{}, err
	}
	return d.FileDigest, nil
}

// prepareGGUFOnly builds o.Staging/gguf for publish gguf: the GGUF card (README.md) and the target's GGUF
// files (on disk, or produced while uploading with staging none), made from the checkpoint's merge.
func prepareGGUFOnly(ctx context.Context, env *Env, o prepareOptions) (_ *outputSet, err error) {
	final := filepath.Join(o.Staging, KindGGUF)
	if err := os.RemoveAll(final); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", final, err)
	}
	src, err := openProducer(ctx, env, o, final)
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			src.close()
		}
	}()
	plans, err := planTargetGGUF(src, o.Target)
	if err != nil {
		return nil, err
	}
	mode, why := env.chooseStaging(o.Target.Staging, o.Staging, ggufBytes(plans))
	o.Log.Info().Str("staging", mode).Str("why", why).Msg("staging of the GGUF files")
	ci, err := src.plan.CardInfo()
	if err != nil {
		return nil, err
	}
	ci.Shards, ci.TotalSize, ci.GGUF = 0, 0, ggufCardFiles(plans)
	out, err := export.CreateOutput(final)
	if err != nil {
		return nil, err
	}
	defer out.Abort()
	if err := out.WriteFile("README.md", export.GGUFCard(ci)); err != nil {
		return nil, err
	}
	files := out.Files()
	dir, err := out.Commit()
	if err != nil {
		return nil, err
	}
	set := &outputSet{Kind: KindGGUF, Dir: dir, Files: files}
	if mode == StagingNone {
		set.src, keep = src, true
	}
	if err := addGGUF(ctx, set, src, plans, mode, false); err != nil {
		os.RemoveAll(dir)
		if keep {
			keep = false
			set.src = nil
		}
		return nil, err
	}
	return set, nil
}

// sameLayout reports whether two planned GGUF files have the same size and tensors (names, types, dims, offsets).
func sameLayout(a, b *gguf.File) bool {
	if a.Size() != b.Size() {
		return false
	}
	ta, tb := a.Tensors(), b.Tensors()
	if len(ta) != len(tb) {
		return false
	}
	for i := range ta {
		x, y := ta[i], tb[i]
		if x.Name != y.Name || x.Type != y.Type || x.Offset != y.Offset || x.Bytes != y.Bytes || len(x.Dims) != len(y.Dims) {
			return false
		}
		for j := range x.Dims {
			if x.Dims[j] != y.Dims[j] {
				return false
			}
		}
	}
	return true
}
