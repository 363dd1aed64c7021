package pipeline

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/watcher"
)

// Names inside a job's staging directory.
const (
	// partialSuffix marks an output set being built (renamed away when complete).
	partialSuffix = ".partial"
	// adapterConfigFile marks a PEFT adapter directory.
	adapterConfigFile = "adapter_config.json"
)

// adapterWeightFiles are the adapter weight files published, first found wins.
var adapterWeightFiles = []string{"adapter_model.safetensors", "adapter_model.bin"}

// IsAdapterDir reports whether dir holds a PEFT adapter (adapter_config.json).
func IsAdapterDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, adapterConfigFile))
	return err == nil && st.Mode().IsRegular()
}

// outputSet is what one output kind publishes: files in a local directory with their digests.
type outputSet struct {
	Kind  string
	Dir   string
	Files []export.FileDigest
	// src produces the merged shards that are not in Dir (staging none); nil when every file is in Dir.
	src *mergedSource
}

// closeSets releases the merge plans of staged-none sets.
func closeSets(sets []outputSet) {
	for _, s := range sets {
		s.src.close()
	}
}

// bytes is the sum of the files' sizes.
func (s *outputSet) bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}

// prepareOptions say how to build the outputs of one checkpoint.
type prepareOptions struct {
	// Src is the checkpoint directory (pinned copy for the daemon).
	Src string
	// Name is the checkpoint's name (checkpoint-N) for cards; Step its step (0: unknown).
	Name string
	Step int64
	// Staging is the directory the output sets are written into (Staging/merged, Staging/adapter).
	Staging string
	Target  *Target
	// Progress receives merge progress (done, total bytes).
	Progress func(done, total int64)
	Log      zerolog.Logger
}

// prepare writes every output set the target publishes. An existing complete set of a kind is replaced. On
// error nothing of the failed set is left behind. The caller closes the sets (closeSets).
func prepare(ctx context.Context, env *Env, o prepareOptions) (_ []outputSet, err error) {
	var sets []outputSet
	defer func() {
		if err != nil {
			closeSets(sets)
		}
	}()
	for _, k := range o.Target.kinds() {
		var set *outputSet
		var err error
		switch k {
		case KindMerged:
			set, err = prepareMerged(ctx, env, o, KindMerged)
		case KindMerged4Bit:
			qo := o
			qo.Target = o.Target.quantTarget()
			set, err = prepareMerged(ctx, env, qo, KindMerged4Bit)
		case KindAdapter:
			set, err = prepareAdapter(ctx, o)
		case KindGGUF:
			set, err = prepareGGUFOnly(ctx, env, o)
		}
		if err != nil {
			return nil, err
		}
		sets = append(sets, *set)
	}
	return sets, nil
}

// baseFor returns the base model to merge into: the target's, else the adapter's base_model_name_or_path.
func baseFor(src string, t *Target) (string, error) {
	if t.Base != "" {
		return t.Base, nil
	}
	cfgPath := filepath.Join(src, adapterConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", &merge.InputError{File: cfgPath, Msg: "cannot read the adapter config", Err: err}
	}
	ac, err := merge.ParseAdapterConfig(raw)
	if err != nil {
		return "", &merge.InputError{File: cfgPath, Msg: "invalid adapter config", Err: err}
	}
	if ac.BaseModelNameOrPath == "" {
		return "", &merge.InputError{File: cfgPath, Tensor: "base_model_name_or_path",
			Msg: "is empty: give the base model (--base, or base: in the watch entry)"}
	}
	return ac.BaseModelNameOrPath, nil
}

// prepareMerged merges the adapter in o.Src into its base, into o.Staging/kind (merged, or merged-4bit for the
// second output of a dtype pair, whose o.Target is quantTarget's). With staging disk the merge
// checks the free space of the staging file system against its plan before writing, streams, and computes every
// file's digest while writing; with staging none only the small files are written and the shards are digested
// by a first pass (see prepareMergedNone); auto picks none when the staging file system has less than twice the
// output's size free.
func prepareMerged(ctx context.Context, env *Env, o prepareOptions, kind string) (*outputSet, error) {
	out := filepath.Join(o.Staging, kind)
	if err := os.RemoveAll(out); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", out, err)
	}
	src, err := openProducer(ctx, env, o, out)
	if err != nil {
		return nil, err
	}
	// GGUF files of the merge go in the same commit, on the same card (the 16/32-bit output only).
	var ggufs []GGUFPlan
	if kind == KindMerged && len(o.Target.GGUF) > 0 {
		if ggufs, err = planTargetGGUF(src, o.Target); err != nil {
			src.close()
			return nil, err
		}
		src.plan.SetCardGGUF(ggufCardFiles(ggufs))
	}
	mode, why := env.chooseStaging(o.Target.Staging, o.Staging, src.producer.Shards().FileSize()+ggufBytes(ggufs))
	if o.Target.Quant != nil && mode == StagingNone {
		// A 4-bit output is re-quantized from its 16-bit merge on disk (merge.Options.Quant): it cannot be produced
		// range by range, so it always stages on disk.
		if o.Target.Staging == StagingNone {
			o.Log.Warn().Msg("--staging none applies to 16/32-bit outputs; a 4-bit output stages on disk")
		}
		mode, why = StagingDisk, "a 4-bit output is re-quantized from its 16-bit merge on disk"
	}
	o.Log.Info().Str("staging", mode).Str("why", why).Msg("staging of the merged shards")
	if mode == StagingNone {
		set, err := prepareMergedNone(ctx, src, o, out)
		if err == nil {
			err = addGGUF(ctx, set, src, ggufs, mode, false)
		}
		if err != nil {
			src.close()
			return nil, err
		}
		return set, nil
	}
	defer src.close()
	res, err := src.plan.Execute(ctx)
	if err != nil {
		return nil, err
	}
	set := &outputSet{Kind: kind, Dir: res.Dir, Files: res.Files}
	if err := addGGUF(ctx, set, nil, ggufs, mode, true); err != nil {
		os.RemoveAll(res.Dir)
		return nil, err
	}
	return set, nil
}

// prepareAdapter builds o.Staging/adapter: adapter_config.json, the adapter weights, the tokenizer files (hard
// links, copies across file systems; written, synced and committed by export.WriteAdapter) and a README.md model
// card (export.AdapterCard). Optimizer, scheduler, RNG
// state, training_args.bin (a pickle: loading it runs code) and trainer_state.json are not published.
func prepareAdapter(ctx context.Context, o prepareOptions) (*outputSet, error) {
	final := filepath.Join(o.Staging, KindAdapter)
	tmp := final + partialSuffix
	for _, p := range []string{final, tmp} {
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("clearing %s: %w", p, err)
		}
	}
	cfgPath := filepath.Join(o.Src, adapterConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, &merge.InputError{File: cfgPath, Msg: "cannot read the adapter config", Err: err}
	}
	ac, err := merge.ParseAdapterConfig(raw)
	if err != nil {
		return nil, &merge.InputError{File: cfgPath, Msg: "invalid adapter config", Err: err}
	}
	names := []string{adapterConfigFile}
	weights := ""
	for _, w := range adapterWeightFiles {
		if st, err := os.Stat(filepath.Join(o.Src, w)); err == nil && st.Mode().IsRegular() {
			weights = w
			break
		}
	}
	if weights == "" {
		return nil, &merge.InputError{File: o.Src, Msg: "no adapter weights (adapter_model.safetensors) in the checkpoint"}
	}
	names = append(names, weights)
	if dir, toks := export.TokenizerFiles(o.Src); dir != "" {
		names = append(names, toks...)
	}
	repo := o.Target.Repo
	if o.Target.publish() == "both" {
		repo = o.Target.AdapterRepo
	}
	card := export.AdapterCard(export.CardInfo{
		BaseModel: export.BaseRepoID("", "", nil, ac.BaseModelNameOrPath), AdapterName: o.Name, Step: int(o.Step), Rank: ac.R, Alpha: ac.LoraAlpha,
		UseRSLoRA: ac.UseRSLoRA, UseDoRA: ac.UseDoRA, TargetModules: ac.TargetModules, RepoID: repo,
	})
	if _, files, err := export.WriteAdapter(ctx, final, export.AdapterDir{Src: o.Src, Files: names, Card: card}); err != nil {
		return nil, err
	} else {
		return &outputSet{Kind: KindAdapter, Dir: final, Files: files}, nil
	}
}

// journalOutputs records output sets in the journal: Path is relative to the job's staging directory
// (kind/rel), so the local file is StagingDir/Path and the path in the repo is the destination's prefix + rel.
func journalOutputs(sets []outputSet) []journal.Output {
	var out []journal.Output
	for _, s := range sets {
		for _, f := range s.Files {
			o := journal.Output{Path: s.Kind + "/" + f.Path, Size: f.Size,
				SHA256: hex.EncodeToString(f.SHA256[:]), Sample: f.Sample}
			if p := s.src.shard(f.Path); p != nil {
				o.Produced = true
				o.Blocks = make([]byte, 0, 32*len(p.digest.Blocks))
				for _, b := range p.digest.Blocks {
					o.Blocks = append(o.Blocks, b[:]...)
				}
			}
			out = append(out, o)
		}
	}
	return out
}

// setsFromJournal rebuilds the output sets of a merged job from its journal record, checking that every file is
// still in the staging directory with its recorded size. Produced shards (staging none) are not on disk: their
// pass-one block digests are returned by set kind and path, for attachProducer.
func setsFromJournal(job *journal.Job, kinds []string) ([]outputSet, map[string]map[string][][32]byte, error) {
	produced := map[string]map[string][][32]byte{}
	byKind := map[string]*outputSet{}
	for _, k := range kinds {
		byKind[k] = &outputSet{Kind: k, Dir: filepath.Join(job.StagingDir, k)}
	}
	for _, o := range job.Outputs {
		k, rel, ok := strings.Cut(o.Path, "/")
		s := byKind[k]
		if !ok || s == nil {
			return nil, nil, fmt.Errorf("journal output %q is not under %s", o.Path, strings.Join(kinds, " or "))
		}
		local := filepath.Join(s.Dir, filepath.FromSlash(rel))
		if o.Produced {
			if len(o.Blocks)%32 != 0 || int64(len(o.Blocks)/32) != (o.Size+merge.VerifyBlockSize-1)/merge.VerifyBlockSize {
				return nil, nil, fmt.Errorf("journal output %q has %d bytes of block digests for %d bytes", o.Path, len(o.Blocks), o.Size)
			}
			bl := make([][32]byte, len(o.Blocks)/32)
			for i := range bl {
				copy(bl[i][:], o.Blocks[32*i:])
			}
			if produced[k] == nil {
				produced[k] = map[string][][32]byte{}
			}
			produced[k][rel] = bl
		} else if st, err := os.Stat(local); err != nil {
			return nil, nil, fmt.Errorf("merged output missing: %w", err)
		} else if st.Size() != o.Size {
			return nil, nil, fmt.Errorf("merged output %s is %d bytes, the journal recorded %d", local, st.Size(), o.Size)
		}
		var d export.FileDigest
		d.Path, d.Size, d.Sample = rel, o.Size, o.Sample
		b, err := hex.DecodeString(o.SHA256)
		if err != nil || len(b) != 32 {
			return nil, nil, fmt.Errorf("journal output %q has a bad sha256 %q", o.Path, o.SHA256)
		}
		copy(d.SHA256[:], b)
		s.Files = append(s.Files, d)
	}
	var out []outputSet
	for _, k := range kinds {
		if len(byKind[k].Files) == 0 {
			return nil, nil, fmt.Errorf("the journal records no %s outputs", k)
		}
		out = append(out, *byKind[k])
	}
	return out, produced, nil
}

// pin pins the checkpoint src into dst (replacing an interrupted earlier pin). files, when known, are the
// checkpoint's content as found complete.
func pin(ctx context.Context, src, dst string, files []watcher.FileInfo, log zerolog.Logger) (*watcher.Pinned, error) {
	opts := []watcher.PinOption{watcher.WithReplace(), watcher.WithPinLogger(log)}
	if len(files) > 0 {
		opts = append(opts, watcher.WithExpected(files))
	}
	p, err := watcher.Pin(ctx, src, dst, opts...)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && ctx.Err() == nil {
			if _, serr := os.Stat(src); serr != nil {
				return nil, permanent(fmt.Errorf("checkpoint %s disappeared before it could be pinned (trainer rotation?): %w", src, err))
			}
		}
		return nil, err
	}
	return p, nil
}

// rateLimited returns f called at most once per every (the last call of a burst may be dropped; callers flush).
func rateLimited(every time.Duration, now func() time.Time, f func()) func(force bool) {
	var last time.Time
	return func(force bool) {
		t := now()
		if !force && !last.IsZero() && t.Sub(last) < every {
			return
		}
		last = t
		f()
	}
}

// sortedKeys returns m's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
