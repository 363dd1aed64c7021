package merge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge/kernels"
)

// Options configure a merge.
type Options struct {
	// Base is the base model: a local directory, or a Hub repo id ("owner/name") found in the HF cache or
	// fetched with FetchBase.
	Base string
	// Adapter is the PEFT adapter (or trainer checkpoint) directory.
	Adapter string
	// Out is the output directory; it must not exist or be empty.
	Out string
	// DType is the output dtype of every floating-point tensor (F32, F16 or BF16). Invalid keeps each tensor's
	// original dtype: the quant_state dtype of 4-bit weights, the stored dtype of the others.
	DType tensor.DType
	// MaxShardSize is the largest shard in bytes (0: export.DefaultMaxShardSize, 5 GB).
	MaxShardSize int64
	// ShardLayout groups the output tensors into shards ("": export.ShardLayoutDelta, the tensors the adapter
	// does not change first; export.ShardLayoutHF: huggingface_hub's layout). See Plan.ShardPlan.
	ShardLayout export.ShardLayout
	// Device is "auto" (default), "cpu", or the name of one of Backends ("cuda").
	Device string
	// Backends are the non-CPU backends this build offers (the CUDA backend in a -tags cuda build).
	Backends []BackendProvider
	// Threads is the number of tile workers (0: GOMAXPROCS).
	Threads int
	// Kernel is the CPU kernel set (nil: kernels.FromEnv, i.e. $HUBSYNC_KERNEL or the best for this CPU).
	Kernel *kernels.Impl
	// FetchBase downloads a base repo that is not in the HF cache into it and returns its local directory; it
	// gets the base as given, "owner/name" or "owner/name@REV" (hub.SplitRepoRevision). When nil, such a base is
	// an error; with HF_HUB_OFFLINE set it is never called.
	FetchBase func(ctx context.Context, repoID string) (string, error)
	// Logger receives progress and warnings (zero value: disabled).
	Logger zerolog.Logger
	// Progress is called with the output bytes written so far and the total, from the writing goroutine.
	Progress func(done, total int64)
	// TensorProgress, when set, is called from the writing goroutine after each output tensor is written, with
	// the tensors written so far and their total.
	TensorProgress func(done, total int)
	// AdapterName names the adapter on the model card (default: the adapter directory's base name, e.g.
	// "checkpoint-500"; local paths are never published).
	AdapterName string
	// CardRepoID is the repo the merged model is published in: the model card's title and loading snippet name
	// it ("" → a placeholder path).
	CardRepoID string
	// CardExtra adds free-form "key: value" lines to the model card.
	CardExtra map[string]string
	// CardTags are added to the model card's tags.
	CardTags []string
	// SkipDiskCheck disables the free-space check (for file systems whose statfs is meaningless).
	SkipDiskCheck bool
	// KeepTied keeps a tied base's embeddings tied when the adapter has a LoRA (or DoRA) on the input embedding:
	// the update then lands in the shared weight and changes lm_head too, as PEFT's merge_and_unload does. By
	// default the output is untied instead: lm_head.weight is the original embedding, embed_tokens the merged one.
	KeepTied bool
	// Quant, when set, writes a merged bitsandbytes 4-bit checkpoint instead (DType is then its compute dtype).
	Quant *QuantOutput
}

// TensorKind says how an output tensor is produced.
type TensorKind uint8

const (
	// KindCopy copies the base tensor's bytes unchanged.
	KindCopy TensorKind = iota + 1
	// KindConvert converts a base float tensor to the output dtype.
	KindConvert
	// KindDequant dequantizes a 4-bit base weight the adapter does not change.
	KindDequant
	// KindMerge adds a LoRA update (and DoRA rescaling) to a base or replaced tensor.
	KindMerge
	// KindReplace takes the tensor from the adapter (modules_to_save, trained biases, resized embeddings).
	KindReplace
)

// String names the kind.
func (k TensorKind) String() string {
	switch k {
	case KindCopy:
		return "copy"
	case KindConvert:
		return "convert"
	case KindDequant:
		return "dequant"
	case KindMerge:
		return "merge"
	case KindReplace:
		return "replace"
	}
	return "invalid"
}

// OutputTensor describes one tensor of the merged model, as the plan decided it before any math runs.
type OutputTensor struct {
	Name  string
	DType tensor.DType
	Shape []int64
	// Bytes is the tensor's size in the output.
	Bytes int64
	Kind  TensorKind
	// BaseTensors are the base checkpoint keys that feed it (a 4-bit weight lists all its components).
	BaseTensors []string
	// AdapterTensors are the adapter keys that feed it.
	AdapterTensors []string
}

// Plan is a validated merge: every input opened and checked, every output tensor decided. Nothing has been
// written. Close it when it is not executed.
type Plan struct {
	opts    Options
	log     zerolog.Logger
	base    *baseModel
	ad      *adapter
	backend Backend
	kernel  *kernels.Impl
	tensors []*outTensor
	// modelDType is config.json's new torch_dtype.
	modelDType tensor.DType
	// vocabSize is the new vocab_size after a resize (0: unchanged).
	vocabSize int64
	// untie is set when the output gets an lm_head.weight the tied base did not have.
	untie bool
	// tiedNote says what happened to a tied base's embeddings, for the model card ("" when nothing did).
	tiedNote string
	merged   int
	// cardGGUF lists GGUF files published with the merge, for the model card (SetCardGGUF).
	cardGGUF []export.GGUFFile
}

// lmHead is the output embedding's weight in causal-LM checkpoints.
const lmHead = "lm_head.weight"

// outTensor is an output tensor with everything the executor needs.
type outTensor struct {
	OutputTensor
	// Exactly one source: a float tensor (from the base or the adapter) or a 4-bit weight.
	src  tensorRef
	q    *quantWeight
	srcD tensor.DType // dtype of src (float or not)
	// baseRound is the dtype a dequantized 4-bit base is rounded to before the update.
	baseRound tensor.DType
	// A LoRA update on the weight, or a lora_B bias added to a bias.
	lora     *loraModule
	rank     int
	scaling  float64
	transpo  bool // the stored weight is the transpose of B·A (fan_in_fan_out, embeddings)
	doraCols bool // DoRA normalises columns (two passes)
	biasOf   *loraModule
	rows     int64
	cols     int64
	// baseShape is the base checkpoint's logical shape; replaced marks a source taken from the adapter.
	baseShape []int64
	replaced  bool
}

// NewPlan opens and validates the inputs and plans the output; it writes nothing.
func NewPlan(ctx context.Context, opts Options) (_ *Plan, err error) {
	if opts.Out == "" {
		return nil, errors.New("merge: no output directory given")
	}
	if opts.DType != tensor.Invalid && !isFloat(opts.DType) {
		return nil, fmt.Errorf("merge: output dtype %s is not F32, F16 or BF16", opts.DType)
	}
	if opts.MaxShardSize <= 0 {
		opts.MaxShardSize = export.DefaultMaxShardSize
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.GOMAXPROCS(0)
	}
	if opts.ShardLayout, err = export.ParseShardLayout(string(opts.ShardLayout)); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	p := &Plan{opts: opts, log: opts.Logger}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	p.kernel = opts.Kernel
	if p.kernel == nil {
		if p.kernel, err = kernels.FromEnv(); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
	}
	if p.backend, err = selectBackend(opts.Device, opts.Backends, p.kernel); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if note := autoFallback(opts.Device, opts.Backends); note != "" {
		p.log.Info().Str("backend", p.backend.Name()).Msg(note)
	}
	dir, repoID, err := resolveBase(ctx, opts.Base, opts.FetchBase)
	if err != nil {
		return nil, err
	}
	if p.base, err = openBase(dir); err != nil {
		return nil, err
	}
	p.base.repoID = repoID
	if p.ad, err = openAdapter(opts.Adapter); err != nil {
		return nil, err
	}
	if err := p.build(); err != nil {
		return nil, err
	}
	if err := p.checkQuant(); err != nil {
		return nil, err
	}
	return p, nil
}

// Close releases the plan's open files and backend.
func (p *Plan) Close() error {
	if p.base != nil {
		p.base.close()
	}
	if p.ad != nil {
		p.ad.close()
	}
	if p.backend != nil {
		return p.backend.Close()
	}
	return nil
}

// Tensors lists the output tensors in state-dict order.
func (p *Plan) Tensors() []OutputTensor {
	out := make([]OutputTensor, len(p.tensors))
	for i, t := range p.tensors {
		out[i] = t.OutputTensor
	}
	return out
}

// OutputBytes is the total size of the output tensors' data.
func (p *Plan) OutputBytes() int64 {
	var n int64
	for _, t := range p.tensors {
		n += t.Bytes
	}
	return n
}

// Changed reports whether the adapter changes the tensor: a LoRA (or DoRA, or lora_B bias) update merged into it,
// or a tensor taken from the adapter (modules_to_save, trained biases, resized embeddings). Every other output
// tensor is copied, converted or dequantized from the base alone (a lm_head untied from a LoRA'd embedding too,
// unless the adapter saved the embedding's base layer) and has the same bytes for every checkpoint of one base,
// dtype and adapter config.
func (k TensorKind) Changed() bool { return k == KindMerge || k == KindReplace }

// ShardPlan assigns the output tensors to shard files by Options.ShardLayout. hf: every tensor in state-dict
// order, packed by huggingface_hub's rule (export.PlanShards). delta: the tensors the adapter does not change
// (TensorKind.Changed false) first, in state-dict order, then the changed ones, each group packed by that rule on
// its own (export.PlanShardGroups). Which tensors change, and every size, depend only on the base, the output
// dtype and the adapter config (target modules, modules_to_save, ranks), so the unchanged group's shards have
// the same names and bytes for every checkpoint of a training run.
func (p *Plan) ShardPlan() (*export.ShardPlan, error) {
	if p.opts.ShardLayout == export.ShardLayoutHF {
		return export.PlanShards(p.specs(), p.opts.MaxShardSize)
	}
	var same, changed []export.TensorSpec
	for i, s := range p.specs() {
		if p.tensors[i].Kind.Changed() {
			changed = append(changed, s)
		} else {
			same = append(same, s)
		}
	}
	return export.PlanShardGroups([][]export.TensorSpec{same, changed}, p.opts.MaxShardSize)
}

// BaseDir is the local base model directory (resolved from the HF cache for a repo id).
func (p *Plan) BaseDir() string { return p.base.dir }

// Backend names the backend the plan will run on.
func (p *Plan) Backend() string { return p.backend.Name() }

// ModelDType is the dtype written as config.json's torch_dtype.
func (p *Plan) ModelDType() tensor.DType { return p.modelDType }

// build decides every output tensor.
func (p *Plan) build() error {
	b, ad := p.base, p.ad
	quant, err := b.findQuantWeights()
	if err != nil {
		return err
	}
	side := map[string]bool{}
	for _, q := range quant {
		for _, c := range q.components() {
			if c != q.name {
				side[c] = true
			}
		}
	}
	var names []string
	for k, r := range b.refs {
		if strings.HasSuffix(k, ".SCB") || strings.HasSuffix(k, ".weight_format") {
			return badf(r.path(), k, "8-bit bitsandbytes weights are not supported (only 4-bit and 16/32-bit bases)")
		}
		if !side[k] {
			names = append(names, k)
		}
	}
	sortNatural(names)
	isOutput := make(map[string]bool, len(names))
	for _, n := range names {
		isOutput[n] = true
	}
	tied := b.tiedEmbedding()
	if err := ad.resolveWrapped(func(n string) bool { return isOutput[n] || (n == lmHead && tied != "") }); err != nil {
		return err
	}
	if len(ad.originals) > 0 {
		p.log.Debug().Strs("tensors", ad.originals).Msg("ignoring modules_to_save original_module tensors (the untrained copies)")
	}
	for target, r := range ad.replace {
		if isOutput[target] {
			continue
		}
		if target == lmHead && tied != "" {
			// modules_to_save lm_head of a model with tied embeddings: the trained lm_head no longer equals the
			// embedding, so the output gets its own lm_head.weight and config.json unties them.
			p.untie = true
			names = append(names, target)
			sortNatural(names)
			isOutput[target] = true
			continue
		}
		return badf(r.path(), r.info.Name, "adapter tensor matches no base tensor (looked for %s in %s)", target, b.dir)
	}
	// A LoRA on the tied input embedding: during training the update changed only the embedding lookup, while
	// lm_head kept computing logits with the original weight. Merging it into the shared weight would change
	// lm_head too, so the output is untied unless KeepTied asks for PEFT's behaviour.
	untieLoRA := false
	if m := ad.modules[strings.TrimSuffix(tied, ".weight")]; tied != "" && m != nil && !isOutput[lmHead] {
		kind := "LoRA"
		if m.magnitude != nil {
			kind = "DoRA"
		}
		if p.opts.KeepTied {
			p.tiedNote = fmt.Sprintf("kept tied (--keep-tied): the %s update of %s also changes lm_head, as in PEFT's merge_and_unload", kind, m.name)
			p.log.Warn().Str("embedding", tied).Msg("keeping tied embeddings (--keep-tied): the " + kind +
				" update of the input embedding also changes lm_head, so the merged model's logits differ from the trained model's")
		} else {
			untieLoRA, p.untie = true, true
			p.tiedNote = fmt.Sprintf("untied: lm_head.weight is the original %s, %s carries the merged %s update; config.json sets tie_word_embeddings: false", tied, tied, kind)
			p.log.Info().Str("embedding", tied).Msg("untying embeddings: lm_head.weight gets the original embedding, " + tied +
				" the merged " + kind + " update, config.json tie_word_embeddings: false (--keep-tied keeps them tied, as PEFT does)")
			names = append(names, lmHead)
			sortNatural(names)
			isOutput[lmHead] = true
		}
	}
	for _, m := range ad.sortedModules() {
		if !isOutput[m.name+".weight"] {
			return badf(m.a.path(), m.name, "adapter module matches no base tensor (no %s.weight in %s)", m.name, b.dir)
		}
	}
	p.modelDType = p.chooseModelDType(quant)

	byName := map[string]*outTensor{}
	for _, name := range names {
		src := name
		if name == lmHead && untieLoRA {
			src = tied // the untied lm_head is the embedding as it was before the update
		}
		t, err := p.planTensor(src, quant[src])
		if err != nil {
			return err
		}
		t.Name = name
		byName[name] = t
		p.tensors = append(p.tensors, t)
	}
	for _, m := range ad.sortedModules() {
		if err := p.planLoRA(m, byName); err != nil {
			return err
		}
	}
	if err := p.checkVocab(); err != nil {
		return err
	}
	for _, t := range p.tensors {
		t.Bytes = tensor.ByteSize(t.DType, mustNumel(t.Shape))
		if t.Kind == KindMerge {
			p.merged++
		}
	}
	return nil
}

func mustNumel(shape []int64) int64 {
	n, _ := tensor.NumElements(shape)
	return n
}

// chooseModelDType picks config.json's torch_dtype: --dtype; else the 4-bit weights' quant_state dtype (the
// model's original dtype); else config.json's own; else the most common float dtype among the base tensors.
func (p *Plan) chooseModelDType(quant map[string]*quantWeight) tensor.DType {
	if p.opts.DType != tensor.Invalid {
		return p.opts.DType
	}
	count := map[tensor.DType]int64{}
	for _, q := range quant {
		count[q.state.DType] += q.state.NumElements()
	}
	if dt := majority(count); dt != tensor.Invalid {
		return dt
	}
	if dt := p.base.modelDTypeFromConfig(); dt != tensor.Invalid {
		return dt
	}
	for _, r := range p.base.refs {
		if isFloat(r.info.DType) {
			count[r.info.DType] += r.info.NumElements()
		}
	}
	if dt := majority(count); dt != tensor.Invalid {
		return dt
	}
	return tensor.BF16
}

func majority(count map[tensor.DType]int64) tensor.DType {
	best, bestN := tensor.Invalid, int64(-1)
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		if n, ok := count[dt]; ok && n > bestN {
			best, bestN = dt, n
		}
	}
	return best
}

// planTensor decides the source, dtype and shape of one output tensor, before LoRA updates are attached.
func (p *Plan) planTensor(name string, q *quantWeight) (*outTensor, error) {
	b := p.base
	t := &outTensor{OutputTensor: OutputTensor{Name: name}}
	var baseShape []int64
	var baseDType tensor.DType
	if q != nil {
		t.q = q
		t.baseRound = q.state.DType
		baseShape = q.state.Shape
		baseDType = q.state.DType
		t.BaseTensors = q.components()
		if err := p.checkQuantMap(q); err != nil {
			return nil, err
		}
	} else if r, ok := b.refs[name]; ok {
		t.src = r
		t.srcD = r.info.DType
		baseShape = r.info.Shape
		baseDType = r.info.DType
		t.BaseTensors = []string{name}
	} else {
		// The lm_head of a tied model: it starts out as the embedding.
		e := b.refs[b.tiedEmbedding()]
		baseShape = e.info.Shape
		baseDType = e.info.DType
	}
	t.Shape = append([]int64(nil), baseShape...)
	t.baseShape = baseShape
	outDType := baseDType
	if p.opts.DType != tensor.Invalid && (q != nil || isFloat(baseDType)) {
		outDType = p.opts.DType
	}
	t.DType = outDType
	switch {
	case q != nil:
		t.Kind = KindDequant
	case outDType == baseDType:
		t.Kind = KindCopy
	default:
		t.Kind = KindConvert
	}
	if r, ok := p.ad.replace[name]; ok {
		if q == nil && !isFloat(baseDType) {
			return nil, badf(r.path(), r.info.Name, "replaces base tensor %s of dtype %s; only float tensors can be replaced", name, baseDType)
		}
		if !sameTrailingDims(r.info.Shape, baseShape) {
			return nil, badf(r.path(), r.info.Name, "shape %s cannot replace base tensor %s of shape %s",
				tensor.FormatShape(r.info.Shape), name, tensor.FormatShape(baseShape))
		}
		if _, err := checkedAdapterStream(r); err != nil {
			return nil, err
		}
		t.q = nil
		t.src = r
		t.srcD = r.info.DType
		t.baseRound = tensor.Invalid
		t.Shape = append([]int64(nil), r.info.Shape...)
		t.Kind = KindReplace
		t.replaced = true
		t.BaseTensors = nil
		t.AdapterTensors = []string{r.info.Name}
	}
	t.cols = 1
	if len(t.Shape) > 0 {
		t.cols = t.Shape[len(t.Shape)-1]
	}
	if t.cols > 0 {
		t.rows = mustNumel(t.Shape) / t.cols
	}
	return t, nil
}

// sameTrailingDims accepts a replacement that keeps the rank and every dimension but the first (a resized
// vocabulary changes only the first).
func sameTrailingDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 1; i < len(a); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkQuantMap compares the file's quant_map with the built-in codebook. bitsandbytes dequantizes with its
// built-in table and ignores the stored copy (model-formats.md §4.3); hubsync does the same and warns on a
// difference, which only a hand-edited or foreign file would show.
func (p *Plan) checkQuantMap(q *quantWeight) error {
	vals, err := readF32(q.quantMap)
	if err != nil {
		return err
	}
	for i, v := range vals {
		if math.Float32bits(v) != math.Float32bits(q.code[i]) && !(v == 0 && q.code[i] == 0) {
			p.log.Warn().Str("tensor", q.quantMap.info.Name).Str("file", q.quantMap.path()).Int("code", i).
				Float32("file_value", v).Float32("builtin_value", q.code[i]).
				Msg("quant_map differs from bitsandbytes' built-in " + q.state.QuantType + " table; dequantizing with the built-in table, as bitsandbytes does")
			break
		}
	}
	return nil
}

// planLoRA attaches module m's update to its weight (and its lora_B bias to the module's bias), checking every
// shape against the base and the rank against the config.
func (p *Plan) planLoRA(m *loraModule, byName map[string]*outTensor) error {
	ad := p.ad
	wname := m.name + ".weight"
	t := byName[wname]
	path := m.a.path()
	if len(t.Shape) != 2 {
		return badf(path, m.name, "LoRA target %s has shape %s; only 2-D weights (Linear, Embedding) are merged", wname, tensor.FormatShape(t.Shape))
	}
	if t.q == nil && !isFloat(t.srcD) {
		return badf(t.src.path(), wname, "unsupported dtype %s for a LoRA target (F32, F16, BF16 or bitsandbytes 4-bit)", t.srcD)
	}
	A, B := m.a.info, m.b.info
	if len(A.Shape) != 2 || len(B.Shape) != 2 {
		return badf(path, m.name, "LoRA factors must be 2-D: %s is %s, %s is %s", A.Name, tensor.FormatShape(A.Shape), B.Name, tensor.FormatShape(B.Shape))
	}
	scaling, rank := ad.cfg.Scaling(m.name)
	var r, out, in int64
	if m.embedding {
		// lora_embedding_A [r, num_embeddings], lora_embedding_B [embedding_dim, r]; W [num_embeddings, dim].
		r, in, out = A.Shape[0], A.Shape[1], B.Shape[0]
		if B.Shape[1] != r {
			return badf(path, B.Name, "shape %s does not match %s %s (rank %d)", tensor.FormatShape(B.Shape), A.Name, tensor.FormatShape(A.Shape), r)
		}
		if t.Shape[0] != in || t.Shape[1] != out {
			return badf(path, m.name, "embedding LoRA %s %s × %s %s gives [%d, %d] but the base weight %s is %s",
				A.Name, tensor.FormatShape(A.Shape), B.Name, tensor.FormatShape(B.Shape), in, out, wname, tensor.FormatShape(t.Shape))
		}
		t.transpo = true
	} else {
		// lora_A [r, in], lora_B [out, r]; W [out, in], or [in, out] with fan_in_fan_out.
		r, in, out = A.Shape[0], A.Shape[1], B.Shape[0]
		if B.Shape[1] != r {
			return badf(path, B.Name, "shape %s does not match %s %s (rank %d)", tensor.FormatShape(B.Shape), A.Name, tensor.FormatShape(A.Shape), r)
		}
		want := []int64{out, in}
		if ad.cfg.FanInFanOut {
			want = []int64{in, out}
			t.transpo = true
		}
		if !tensor.EqualShapes(t.Shape, want) {
			how := ""
			if ad.cfg.FanInFanOut {
				how = " (fan_in_fan_out: [in, out])"
			}
			return badf(path, m.name, "LoRA %s %s × %s %s needs a base weight of shape %s%s, but %s is %s",
				A.Name, tensor.FormatShape(A.Shape), B.Name, tensor.FormatShape(B.Shape), tensor.FormatShape(want), how, wname, tensor.FormatShape(t.Shape))
		}
	}
	if r != int64(rank) {
		src := fmt.Sprintf("r = %d", ad.cfg.R)
		if p := matchPattern(ad.cfg.RankPattern, m.name); p != nil {
			src = fmt.Sprintf("rank_pattern[%q] = %d", p.Key, int(p.Value))
		}
		return badf(path, A.Name, "rank %d (shape %s) differs from the config's %s in %s", r, tensor.FormatShape(A.Shape), src, ad.configPath)
	}
	for _, f := range []*tensorRef{m.a, m.b} {
		if _, err := readAdapterFloats(*f); err != nil {
			return err
		}
	}
	t.lora = m
	t.rank = int(r)
	t.scaling = scaling
	t.Kind = KindMerge
	t.AdapterTensors = append(t.AdapterTensors, A.Name, B.Name)
	if m.magnitude != nil {
		mi := m.magnitude.info
		if len(mi.Shape) != 1 || mi.Shape[0] != out {
			return badf(path, mi.Name, "DoRA magnitude has shape %s; expected [%d] (the %s)", tensor.FormatShape(mi.Shape), out,
				map[bool]string{true: "embedding dim", false: "output features"}[m.embedding])
		}
		if _, err := readAdapterFloats(*m.magnitude); err != nil {
			return err
		}
		t.doraCols = t.transpo
		t.AdapterTensors = append(t.AdapterTensors, mi.Name)
	}
	if m.loraBias != nil {
		bi := m.loraBias.info
		bname := m.name + ".bias"
		bt := byName[bname]
		if bt == nil {
			return badf(path, bi.Name, "lora_bias needs the base layer's bias, but the base has no %s", bname)
		}
		if len(bi.Shape) != 1 || bi.Shape[0] != out || !tensor.EqualShapes(bt.Shape, []int64{out}) {
			return badf(path, bi.Name, "shape %s and base bias %s shape %s must both be [%d]", tensor.FormatShape(bi.Shape), bname, tensor.FormatShape(bt.Shape), out)
		}
		if bt.q == nil && !isFloat(bt.srcD) {
			return badf(bt.src.path(), bname, "unsupported dtype %s for a bias receiving lora_B.bias", bt.srcD)
		}
		if _, err := readAdapterFloats(*m.loraBias); err != nil {
			return err
		}
		bt.biasOf = m
		bt.scaling = scaling
		bt.Kind = KindMerge
		bt.AdapterTensors = append(bt.AdapterTensors, bi.Name)
	}
	return nil
}

// checkVocab finds a resized vocabulary (a replaced tensor whose first dimension differs from the base's) and
// checks that every tensor with the old vocabulary dimension was resized alike.
func (p *Plan) checkVocab() error {
	var first *outTensor
	for _, t := range p.tensors {
		if !t.replaced || len(t.Shape) == 0 || t.baseShape[0] == t.Shape[0] {
			continue
		}
		if first != nil && t.Shape[0] != first.Shape[0] {
			return badf(t.src.path(), t.src.info.Name, "resizes %s to %d rows but %s was resized to %d rows", t.Name, t.Shape[0], first.Name, first.Shape[0])
		}
		if first == nil {
			first = t
		}
	}
	if first == nil {
		return nil
	}
	oldV := p.base.cfg.VocabSize
	if oldV <= 0 {
		oldV = first.baseShape[0]
	}
	for _, t := range p.tensors {
		if len(t.baseShape) == 2 && t.baseShape[0] == oldV && t.Shape[0] == oldV && !t.replaced && (t.q != nil || isFloat(t.srcD)) {
			return badf(p.ad.file.Path, t.Name, "keeps the old vocabulary of %d rows while %s was resized to %d; the adapter must save both", oldV, first.Name, first.Shape[0])
		}
	}
	p.vocabSize = first.Shape[0]
	return nil
}

// checkedAdapterStream validates that an adapter tensor that replaces a base tensor is a finite float tensor,
// reading it in bounded chunks.
func checkedAdapterStream(r tensorRef) (int64, error) {
	es := int64(r.info.DType.Size())
	n := r.info.NumElements()
	const chunk = 1 << 18
	buf := make([]byte, min(n, chunk)*es)
	vals := make([]float32, min(n, chunk))
	for off := int64(0); off < n; off += chunk {
		k := min(chunk, n-off)
		if err := r.readAt(buf[:k*es], off*es); err != nil {
			return 0, err
		}
		if err := tensor.DecodeFloats(r.info.DType, buf[:k*es], vals[:k]); err != nil {
			return 0, err
		}
		if i := firstNonFinite(vals[:k]); i >= 0 {
			return 0, badf(r.path(), r.info.Name, "adapter tensor holds a non-finite value (%v at %s)", vals[i], indexString(r.info.Shape, off+int64(i)))
		}
	}
	return n, nil
}
