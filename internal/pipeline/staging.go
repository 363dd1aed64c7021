package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/merge"
)

// Staging modes of a merged output (Target.Staging, config key staging, --staging).
const (
	// StagingDisk writes the merged shards into the staging directory, then uploads them.
	StagingDisk = config.StagingDisk
	// StagingNone never writes the shards: pass one computes each shard's digest, pass two produces every
	// upload part again from the merge.
	StagingNone = config.StagingNone
	// StagingAuto is none when the staging file system has less than twice the output's size free, else disk.
	StagingAuto = config.StagingAuto
)

// ParseStaging checks a staging mode ("" = auto).
func ParseStaging(s string) (string, error) {
	switch s {
	case "":
		return StagingAuto, nil
	case StagingDisk, StagingNone, StagingAuto:
		return s, nil
	}
	return "", fmt.Errorf("staging %q: want disk, none or auto", s)
}

// producedShard is a merged shard (or a GGUF file of the merge) that is not on disk: it is produced again for
// every upload part.
type producedShard struct {
	index int
	// gguf, when set, is the GGUF file produced instead of shard index.
	gguf   *gguf.File
	digest *merge.ShardDigest
}

// mergedSource is what produces the shards of a merged output set staged "none".
type mergedSource struct {
	plan     *merge.Plan
	producer *merge.Producer
	shards   map[string]*producedShard // by path in the output set
}

func (m *mergedSource) close() {
	if m != nil && m.plan != nil {
		m.plan.Close()
	}
}

// content is the upload's ContentFunc for one produced shard: the bytes are checked against pass one's block
// digests as they are produced, and a difference is reported as hub.ErrContentChanged (nothing is committed).
func (m *mergedSource) content(s *producedShard) hub.ContentFunc {
	return func(ctx context.Context, off, n int64, w io.Writer) error {
		var err error
		if s.gguf != nil {
			err = merge.VerifyProduced(ctx, s.digest, off, n, w, s.gguf.ProduceRange)
		} else {
			err = m.producer.ProduceVerified(ctx, s.index, s.digest, off, n, w)
		}
		if errors.Is(err, merge.ErrOutputChanged) {
			return fmt.Errorf("%w: %w", hub.ErrContentChanged, err)
		}
		return err
	}
}

// chooseStaging resolves a staging mode for an output of need bytes written under dir.
func (e *Env) chooseStaging(mode, dir string, need int64) (string, string) {
	mode, err := ParseStaging(mode)
	if err != nil || mode != StagingAuto {
		return mode, "requested"
	}
	free := e.AvailableBytes
	if free == nil {
		free = fsutil.AvailableBytes
	}
	avail, err := free(dir)
	if err != nil {
		return StagingDisk, fmt.Sprintf("free space of %s unknown (%v)", dir, err)
	}
	if avail < 2*need {
		return StagingNone, fmt.Sprintf("%d bytes free in %s, less than twice the %d-byte output", avail, dir, need)
	}
	return StagingDisk, fmt.Sprintf("%d bytes free in %s, at least twice the %d-byte output", avail, dir, need)
}

// mergeOptions are the merge options of a checkpoint's merged output written to out.
func mergeOptions(env *Env, o prepareOptions, base, out string) merge.Options {
	return merge.Options{
		Base: base, Adapter: o.Src, Out: out, DType: o.Target.DType, MaxShardSize: o.Target.MaxShardSize,
		Device: o.Target.Device, Backends: env.Backends, Threads: env.MergeThreads, Logger: o.Log,
		FetchBase: env.fetchBase(o.Log), Progress: o.Progress, AdapterName: o.Name, KeepTied: o.Target.KeepTied,
		CardRepoID: o.Target.Repo, ShardLayout: o.Target.ShardLayout, Quant: o.Target.Quant,
	}
}

// openProducer plans the merge of o's checkpoint and its shard producer.
func openProducer(ctx context.Context, env *Env, o prepareOptions, out string) (*mergedSource, error) {
	base, err := baseFor(o.Src, o.Target)
	if err != nil {
		return nil, err
	}
	p, err := merge.NewPlan(ctx, mergeOptions(env, o, base, out))
	if err != nil {
		return nil, err
	}
	pr, err := p.Producer()
	if err != nil {
		p.Close()
		return nil, err
	}
	return &mergedSource{plan: p, producer: pr, shards: map[string]*producedShard{}}, nil
}

// prepareMergedNone is the merged output without its shards on disk: the small files are written into out, and
// pass one produces every shard once, without writing it, for its size, sha256, sample and block digests.
func prepareMergedNone(ctx context.Context, src *mergedSource, o prepareOptions, out string) (*outputSet, error) {
	files, _, err := src.producer.WriteSmallFiles(ctx)
	if err != nil {
		return nil, err
	}
	for i, s := range src.producer.Shards().Shards {
		d, err := src.producer.Digest(ctx, i) // reports merge progress (o.Progress)
		if err != nil {
			return nil, err
		}
		src.shards[s.FileName] = &producedShard{index: i, digest: d}
		files = append(files, d.FileDigest)
	}
	return &outputSet{Kind: KindMerged, Dir: out, Files: files, src: src}, nil
}

// attachProducer re-opens the producer of a merged set staged "none" whose pass-one digests come from the
// journal (a restart skips pass one), checking that the plan still has those shards with those sizes.
func attachProducer(ctx context.Context, env *Env, o prepareOptions, set *outputSet, blocks map[string][][32]byte) error {
	src, err := openProducer(ctx, env, o, set.Dir)
	if err != nil {
		return err
	}
	byName := map[string]int{}
	for i, s := range src.producer.Shards().Shards {
		byName[s.FileName] = i
	}
	var ggufs map[string]*gguf.File
	for _, f := range set.Files {
		bl, produced := blocks[f.Path]
		if !produced {
			continue
		}
		if strings.HasSuffix(f.Path, ".gguf") && len(o.Target.GGUF) > 0 {
			if ggufs == nil {
				plans, err := planTargetGGUF(src, o.Target)
				if err != nil {
					src.close()
					return err
				}
				ggufs = map[string]*gguf.File{}
				for _, p := range plans {
					ggufs[p.Path] = p.File
				}
			}
			gf := ggufs[f.Path]
			if gf == nil || gf.Size() != f.Size {
				src.close()
				return fmt.Errorf("GGUF %s: the merge no longer plans it with %d bytes", f.Path, f.Size)
			}
			src.shards[f.Path] = &producedShard{gguf: gf, digest: &merge.ShardDigest{FileDigest: f, Blocks: bl}}
			continue
		}
		i, ok := byName[f.Path]
		if !ok || src.producer.Shards().Shards[i].Layout.Size != f.Size {
			src.close()
			return fmt.Errorf("merged shard %s: the merge plan no longer has it with %d bytes", f.Path, f.Size)
		}
		src.shards[f.Path] = &producedShard{index: i, digest: &merge.ShardDigest{FileDigest: f, Blocks: bl}}
	}
	set.src = src
	return nil
}

// shard returns the produced shard at path in the set, or nil (also for a nil source).
func (m *mergedSource) shard(path string) *producedShard {
	if m == nil {
		return nil
	}
	return m.shards[path]
}
