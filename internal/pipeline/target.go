package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// Output kinds: what a job publishes, and the staging subdirectory it is written to.
const (
	KindMerged  = "merged"
	KindAdapter = "adapter"
	// KindMerged4Bit is the second merged output of a target with two dtypes (bf16,nf4): the bitsandbytes 4-bit
	// model, published to QuantRepo.
	KindMerged4Bit = "merged-4bit"
	// KindGGUF is the GGUF files of the merge alone, with their card (publish gguf), committed where the merged
	// model would go. (With publish merged or both the GGUF files are part of the merged output's commit.)
	KindGGUF = "gguf"
)

// Target says what to publish from a checkpoint and where: one watch entry of the configuration, or the flags of
// `hubsync push --merged|--adapter-only`.
type Target struct {
	// Repo is the model repo (OWNER/NAME); it is created when missing (Private).
	Repo    string
	Private bool
	// Revision is the branch committed to (layouts tags and subfolders) or the branch step branches start
	// from (layout branches). Default main.
	Revision string
	// PathInRepo is the repo folder everything goes under ("" = the root).
	PathInRepo string
	// Publish is config.PublishMerged, PublishAdapter or PublishBoth (the adapter then goes to AdapterRepo).
	Publish     string
	AdapterRepo string
	// Layout is config.LayoutTags (at the revision's root, one tag per step), LayoutBranches (one branch per step)
	// or LayoutSubfolders (one folder per step).
	Layout string
	// TagFormat, BranchFormat and SubfolderFormat name the per-step tag, branch and folder ({step},
	// {checkpoint}). An empty TagFormat makes no tag.
	TagFormat, BranchFormat, SubfolderFormat string
	// Tag is an explicit tag for the commit (push --tag); it overrides TagFormat.
	Tag string
	// Message is the commit summary format ({step}, {checkpoint}); "" = "Upload {checkpoint} (step {step})".
	Message string
	// CreatePR opens a pull request instead of committing (push --create-pr; never with tags or pruning).
	CreatePR bool
	// PruneKeep > 0 keeps only the newest PruneKeep per-step tags, branches or folders matching the formats.
	PruneKeep int
	// KeepStale disables the deletion of model files of an earlier step that the new one lacks (e.g. a
	// different shard count) at the publishing location.
	KeepStale bool

	// Base is the base model (local dir or repo id; "" = the adapter's base_model_name_or_path).
	Base string
	// DType is the merged output's dtype (Invalid: the base's).
	DType tensor.DType
	// MaxShardSize caps each shard (0: 5 GB).
	MaxShardSize int64
	// ShardLayout groups tensors into shards (merge.Options.ShardLayout; "": delta).
	ShardLayout export.ShardLayout
	// Device is the merge device (auto, cpu, cuda).
	Device string
	// KeepTied keeps tied embeddings tied under an embedding LoRA (merge.Options.KeepTied).
	KeepTied bool
	// Quant makes the merged output a bitsandbytes 4-bit model (merge.Options.Quant; DType is its compute dtype).
	Quant *merge.QuantOutput
	// Also4Bit, when set, adds a second merged output to every checkpoint (watch[].dtype bf16,nf4): the
	// bitsandbytes 4-bit model, with compute dtype Also4BitDType, committed to QuantRepo with the same layout,
	// formats and tags as the first.
	Also4Bit      *merge.QuantOutput
	Also4BitDType tensor.DType
	QuantRepo     string
	// Staging is StagingDisk, StagingNone or StagingAuto ("" = auto): whether the merged shards are written to
	// the staging directory or produced again while uploading.
	Staging string
	// GGUF lists the GGUF types the merge is also published as (push --gguf, watch gguf:), one file per type
	// named GGUFFileName(GGUFModelName(Repo), type), in the merged model's commit (publish merged or both) or
	// alone with a GGUF card (publish gguf). Staging applies to them as to the shards.
	GGUF []gguf.FileType
	// GGUFPath is the folder of the GGUF files relative to the merged model's ("" = beside it).
	GGUFPath string
	// GGUFPre overrides the BPE pre-tokenizer name (tokenizer.ggml.pre) recognised from tokenizer.json.
	GGUFPre string
}

// TargetFromWatch turns a (resolved and validated) watch entry into a Target, with the daemon's device.
func TargetFromWatch(w config.Watch, device string) (Target, error) {
	float, q, both, err := config.SplitDType(w.DType)
	if err != nil {
		return Target{}, fmt.Errorf("watch %s: dtype: %w", w.Dir, err)
	}
	var quant, also *merge.QuantOutput
	var alsoDT tensor.DType
	dtype := float
	if qt := merge.ParseQuantType(q); qt != "" {
		qo := &merge.QuantOutput{Type: qt, Blocksize: w.Quant.Blocksize, DoubleQuant: w.Quant.DoubleQuant == nil || *w.Quant.DoubleQuant,
			Storage: tensor.U8, SkipModules: w.Quant.SkipModules}
		if w.Quant.Storage == "bf16" {
			qo.Storage = tensor.BF16
		}
		compute := w.Quant.ComputeDType
		if both {
			// The pair's float dtype is the 4-bit model's compute dtype unless quant.compute_dtype says otherwise.
			also = qo
			if compute == "" {
				compute = float
			}
			if alsoDT, err = ParseDType(compute); err != nil {
				return Target{}, fmt.Errorf("watch %s: quant.compute_dtype: %w", w.Dir, err)
			}
		} else {
			quant, dtype = qo, compute
		}
	}
	dt, err := ParseDType(dtype)
	if err != nil {
		return Target{}, fmt.Errorf("watch %s: %w", w.Dir, err)
	}
	quantRepo := w.QuantRepo
	if also != nil && quantRepo == "" {
		quantRepo = w.Repo + "-bnb-4bit"
	}
	var types []gguf.FileType
	if len(w.GGUF) > 0 {
		if types, err = gguf.ParseFileTypes(strings.Join(w.GGUF, ",")); err != nil {
			return Target{}, fmt.Errorf("watch %s: gguf: %w", w.Dir, err)
		}
	}
	return Target{GGUF: types, GGUFPath: w.GGUFPath, GGUFPre: w.GGUFPre, Quant: quant, Also4Bit: also, Also4BitDType: alsoDT, QuantRepo: quantRepo,
		Repo: w.Repo, Private: w.Private, Revision: w.Revision, Publish: w.Publish, AdapterRepo: w.AdapterRepo,
		Layout: w.Layout, TagFormat: w.TagFormat, BranchFormat: w.BranchFormat, SubfolderFormat: w.SubfolderFormat,
		Message: w.CommitMessage, PruneKeep: w.Prune.Keep, Base: w.Base, DType: dt,
		MaxShardSize: int64(w.MaxShardSize), ShardLayout: export.ShardLayout(w.ShardLayout), Device: device,
		KeepTied: w.KeepTied, Staging: w.Staging,
	}, nil
}

// ParseDType accepts "", bf16, fp16, fp32 and torch's names (bfloat16, float16, float32).
func ParseDType(s string) (tensor.DType, error) {
	if s == "" {
		return tensor.Invalid, nil
	}
	dt, err := tensor.ParseTorchDType(s)
	if err != nil || (dt != tensor.BF16 && dt != tensor.F16 && dt != tensor.F32) {
		return tensor.Invalid, fmt.Errorf("dtype must be bf16, fp16 or fp32, not %q", s)
	}
	return dt, nil
}

func (t *Target) revision() string {
	if t.Revision == "" {
		return config.DefaultRevision
	}
	return t.Revision
}

func (t *Target) publish() string {
	if t.Publish == "" {
		return config.PublishMerged
	}
	return t.Publish
}

func (t *Target) layout() string {
	if t.Layout == "" {
		return config.LayoutTags
	}
	return t.Layout
}

// kinds lists the output kinds the target publishes, merged first.
func (t *Target) kinds() []string {
	switch t.publish() {
	case config.PublishAdapter:
		return []string{KindAdapter}
	case config.PublishGGUF:
		return []string{KindGGUF}
	case config.PublishBoth:
		if t.Also4Bit != nil {
			return []string{KindMerged, KindMerged4Bit, KindAdapter}
		}
		return []string{KindMerged, KindAdapter}
	}
	if t.Also4Bit != nil {
		return []string{KindMerged, KindMerged4Bit}
	}
	return []string{KindMerged}
}

// quantTarget is the target of the second, 4-bit output (Also4Bit): the same target with the 4-bit merge options
// and QuantRepo, so that the merge, its card and its commit are those a single-dtype nf4|fp4 target makes.
func (t *Target) quantTarget() *Target {
	q := *t
	q.Quant, q.DType, q.Repo = t.Also4Bit, t.Also4BitDType, t.QuantRepo
	q.Also4Bit, q.Also4BitDType, q.QuantRepo = nil, tensor.Invalid, ""
	q.Publish = config.PublishMerged
	return &q
}

// journalTarget is the target as the journal records it.
func (t *Target) journalTarget() journal.Target {
	return journal.Target{Repo: t.Repo, Revision: t.revision(), Layout: t.layout(), Publish: t.publish(),
		PathInRepo: t.PathInRepo, AdapterRepo: t.AdapterRepo}
}

// dest is one commit of a job: an output kind to a repo, branch and folder.
type dest struct {
	Kind   string
	Repo   string
	Branch string
	// Prefix is the repo folder the files go under ("" = root), slash-separated, no trailing slash.
	Prefix string
	// Tag is the tag to create on the commit ("" = none).
	Tag string
	// Summary is the commit title; Description its body.
	Summary, Description string
}

// dests lists the commits publishing step of checkpoint name (checkpoint-N) makes, in order.
func (t *Target) dests(step int64, name string) []dest {
	var out []dest
	for _, k := range t.kinds() {
		d := dest{Kind: k, Repo: t.Repo, Branch: t.revision(), Prefix: strings.Trim(t.PathInRepo, "/")}
		if k == KindAdapter && t.publish() == config.PublishBoth {
			d.Repo = t.AdapterRepo
		}
		if k == KindMerged4Bit {
			d.Repo = t.QuantRepo
		}
		switch t.layout() {
		case config.LayoutBranches:
			d.Branch = config.Expand(t.BranchFormat, step)
		case config.LayoutSubfolders:
			d.Prefix = path.Join(d.Prefix, config.Expand(t.SubfolderFormat, step))
			d.Prefix = strings.TrimPrefix(d.Prefix, "./")
		default:
			if t.TagFormat != "" {
				d.Tag = config.Expand(t.TagFormat, step)
			}
		}
		if t.Tag != "" {
			d.Tag = t.Tag
		}
		msg := t.Message
		if msg == "" {
			msg = config.DefaultCommitMessage
		}
		d.Summary = expandName(msg, step, name)
		what := "the merged model"
		switch k {
		case KindAdapter:
			what = "the LoRA adapter"
		case KindMerged4Bit:
			what = "the merged " + t.Also4Bit.Type + " 4-bit model"
		case KindGGUF:
			what = "the GGUF files of the merged model"
		}
		d.Description = fmt.Sprintf("%s of %s (training step %d), published by hubsync.", capitalize(what), name, step)
		out = append(out, d)
	}
	return out
}

// expandName is config.Expand, except that {checkpoint} is the directory's actual name (push may publish a
// directory not named checkpoint-N).
func expandName(format string, step int64, name string) string {
	if name == "" {
		name = "checkpoint-" + strconv.FormatInt(step, 10)
	}
	return strings.NewReplacer("{step}", strconv.FormatInt(step, 10), "{checkpoint}", name).Replace(format)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// repoPath is the path in the repo of a file rel (slash-separated) of the output set.
func (d *dest) repoPath(rel string) string {
	if d.Prefix == "" {
		return rel
	}
	return d.Prefix + "/" + rel
}

// commitID derives the commit trailer id of one commit of a job from everything that identifies it, so that a
// later process recognises the commit: sha256(repo|branch|prefix|watchDir|step|layout|kind), 24 hex digits.
func commitID(d dest, watchDir string, step int64, layout string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{d.Repo, d.Branch, d.Prefix, watchDir,
		strconv.FormatInt(step, 10), layout, d.Kind}, "|")))
	return "hubsync-" + hex.EncodeToString(h[:])[:24]
}

// formatPattern turns a per-step name format into a regexp capturing the step.
func formatPattern(format string) (*regexp.Regexp, error) {
	q := regexp.QuoteMeta(format)
	q = strings.ReplaceAll(q, regexp.QuoteMeta("{step}"), `([0-9]+)`)
	q = strings.ReplaceAll(q, regexp.QuoteMeta("{checkpoint}"), `checkpoint-([0-9]+)`)
	re, err := regexp.Compile("^" + q + "$")
	if err != nil {
		return nil, err
	}
	if re.NumSubexp() == 0 {
		return nil, fmt.Errorf("format %q names no step", format)
	}
	return re, nil
}

// stepOf returns the step a name made from format carries (every placeholder must agree).
func stepOf(re *regexp.Regexp, name string) (int64, bool) {
	m := re.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	var step int64 = -1
	for _, s := range m[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		// Only canonical numbers: config.Expand never writes leading zeros, so "step-007" is not ours.
		if err != nil || strconv.FormatInt(n, 10) != s || (step >= 0 && n != step) {
			return 0, false
		}
		step = n
	}
	return step, true
}
