package merge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/torchzip"
)

// Base model file names (model-formats.md §2.1), and transformers' torch.save names.
const (
	baseSingleFile      = "model.safetensors"
	baseIndexFile       = "model.safetensors.index.json"
	basePickleFile      = "pytorch_model.bin"
	basePickleIndexFile = "pytorch_model.bin.index.json"
	configFile          = "config.json"
	genConfigFile       = "generation_config.json"
)

// tensorRef locates one tensor: the open file holding it and its header entry.
type tensorRef struct {
	file *safetensors.File
	info safetensors.TensorInfo
}

func (r tensorRef) path() string { return r.file.Path }

// readAt reads len(p) bytes of the tensor starting off bytes into it.
func (r tensorRef) readAt(p []byte, off int64) error {
	return r.file.ReadTensorAt(r.info, p, off)
}

// baseModel is an opened base model directory: config.json and every weight file, with each tensor resolved to
// the file that holds it.
type baseModel struct {
	dir    string
	repoID string // when the base was given as a Hub repo id
	config []byte
	cfg    modelConfig
	files  []*safetensors.File
	refs   map[string]tensorRef
}

// modelConfig holds the config.json fields the merge reads.
type modelConfig struct {
	TorchDType         string `json:"torch_dtype"`
	DType              string `json:"dtype"`
	VocabSize          int64  `json:"vocab_size"`
	TieWordEmbeddings  *bool  `json:"tie_word_embeddings"`
	ModelType          string `json:"model_type"`
	QuantizationConfig *struct {
		QuantMethod string `json:"quant_method"`
		LoadIn8bit  bool   `json:"load_in_8bit"`
	} `json:"quantization_config"`
}

func (b *baseModel) close() {
	for _, f := range b.files {
		f.Close()
	}
}

// repoIDPattern accepts "owner/name" Hub repo ids (huggingface_hub's validate_repo_id, with a namespace).
var repoIDPattern = regexp.MustCompile(`^[\w][\w.\-]{0,95}/[\w][\w.\-]{0,95}$`)

// resolveBase turns the --base argument into a local model directory: an existing directory is used as is; an
// "owner/name" or "owner/name@REV" repo id (REV a branch, tag or commit id) is looked up in the Hugging Face cache
// as huggingface_hub does (refs/REV names the snapshot; a commit id is snapshots/SHA), and fetched with fetch
// (given the spec as written, revision included) when it is not there. With HF_HUB_OFFLINE set, fetch is never
// called: an uncached base is an error at once.
func resolveBase(ctx context.Context, spec string, fetch func(context.Context, string) (string, error)) (dir, repoID string, err error) {
	if spec == "" {
		return "", "", badf("", "", "no base model given")
	}
	st, statErr := os.Stat(spec)
	if statErr == nil {
		if !st.IsDir() {
			return "", "", badf(spec, "", "the base model must be a directory (holding config.json and model.safetensors)")
		}
		return spec, "", nil
	}
	repo, rev := hub.SplitRepoRevision(spec)
	looksLocal := strings.HasPrefix(spec, ".") || strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, "~")
	if looksLocal || !repoIDPattern.MatchString(repo) || strings.Contains(repo, "--") || strings.Contains(repo, "..") ||
		!validRevision(rev) || strings.HasSuffix(spec, "@") {
		return "", "", badf(spec, "", "base model directory does not exist (%v)", statErr)
	}
	cache := hfHubCache()
	snap, lookErr := cachedSnapshot(cache, repo, rev)
	if lookErr == nil {
		return snap, repo, nil
	}
	if hub.OfflineFromEnv(nil) {
		return "", "", fmt.Errorf("base model %s: not in the HF cache (%v), and HF_HUB_OFFLINE is set, so it is not downloaded", spec, lookErr)
	}
	if fetch == nil {
		return "", "", badf(spec, "", "base model is not in the HF cache (looked in %s: %v) and no download was configured", cache, lookErr)
	}
	d, err := fetch(ctx, spec)
	if err != nil {
		return "", "", fmt.Errorf("base model %s: not in the HF cache (%v); download failed: %w", spec, lookErr, err)
	}
	return d, repo, nil
}

// validRevision accepts "" (main) and git-ref-like names without path tricks.
func validRevision(rev string) bool {
	if rev == "" {
		return true
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
			return false
		}
	}
	return true
}

// hfHubCache is huggingface_hub's cache directory (hub.HubCacheDir: $HF_HUB_CACHE, legacy
// $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub).
func hfHubCache() string { return hub.HubCacheDir(nil) }

// cachedSnapshot finds repoID's snapshot of rev ("" = main) in the cache (hub.ResolveCachedSnapshot). The
// snapshot must hold config.json and the weights.
func cachedSnapshot(cache, repoID, rev string) (string, error) {
	snap, err := hub.ResolveCachedSnapshot(cache, repoID, rev)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(snap, configFile)); err != nil {
		return "", fmt.Errorf("snapshot %s has no %s", snap, configFile)
	}
	for _, n := range []string{baseSingleFile, baseIndexFile, basePickleFile, basePickleIndexFile} {
		if _, err := os.Stat(filepath.Join(snap, n)); err == nil {
			return snap, nil
		}
	}
	return "", fmt.Errorf("snapshot %s has neither %s nor %s", snap, baseSingleFile, baseIndexFile)
}

// openBase opens a base model directory: config.json plus model.safetensors, or the shards listed by
// model.safetensors.index.json. Every file's header is validated; every index entry must name a tensor present
// in its shard.
func openBase(dir string) (_ *baseModel, err error) {
	b := &baseModel{dir: dir, refs: map[string]tensorRef{}}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	cfgPath := filepath.Join(dir, configFile)
	b.config, err = fsutil.ReadRegularFile(cfgPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, badf(cfgPath, "", "missing: the base model directory needs its config.json")
		}
		return nil, fmt.Errorf("read %s: %w", cfgPath, err)
	}
	if err := json.Unmarshal(b.config, &b.cfg); err != nil {
		return nil, &InputError{File: cfgPath, Msg: "not a valid config JSON object", Err: err}
	}
	if q := b.cfg.QuantizationConfig; q != nil && q.LoadIn8bit {
		return nil, badf(cfgPath, "quantization_config", "8-bit bitsandbytes bases are not supported (only 4-bit and 16/32-bit)")
	}
	// safetensors first, as transformers prefers it; else the torch.save files older checkpoints have.
	found := false
	for _, layout := range []struct {
		index, single string
		open          func(string) (*safetensors.File, error)
	}{{baseIndexFile, baseSingleFile, openSafetensors}, {basePickleIndexFile, basePickleFile, openTorchFile}} {
		idxPath := filepath.Join(dir, layout.index)
		raw, err := fsutil.ReadRegularFile(idxPath)
		if err == nil {
			if err := b.openSharded(idxPath, raw, layout.open); err != nil {
				return nil, err
			}
			found = true
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", idxPath, err)
		}
		f, err := layout.open(filepath.Join(dir, layout.single))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		b.files = append(b.files, f)
		for _, t := range f.Tensors {
			b.refs[t.Name] = tensorRef{f, t}
		}
		found = true
		break
	}
	if !found {
		return nil, badf(dir, "", "no %s, %s, %s or %s in the base model directory", baseSingleFile, baseIndexFile, basePickleFile, basePickleIndexFile)
	}
	if len(b.refs) == 0 {
		return nil, badf(dir, "", "the base model has no tensors")
	}
	return b, nil
}

func (b *baseModel) openSharded(idxPath string, raw []byte, open func(string) (*safetensors.File, error)) error {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return &InputError{File: idxPath, Msg: "not a valid shard index", Err: err}
	}
	if len(idx.WeightMap) == 0 {
		return badf(idxPath, "weight_map", "missing or empty")
	}
	shards := map[string]*safetensors.File{}
	names := make([]string, 0, len(idx.WeightMap))
	for k := range idx.WeightMap {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		shard := idx.WeightMap[name]
		if shard == "" || filepath.Base(shard) != shard || shard == "." || shard == ".." {
			return badf(idxPath, name, "shard file name %q is not a plain file name", shard)
		}
		f, ok := shards[shard]
		if !ok {
			var err error
			f, err = open(filepath.Join(b.dir, shard))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return badf(idxPath, name, "its shard %s is missing", shard)
				}
				return err
			}
			shards[shard] = f
			b.files = append(b.files, f)
		}
		ti, ok := f.Lookup(name)
		if !ok {
			return badf(f.Path, name, "listed in %s but not present in this shard", filepath.Base(idxPath))
		}
		b.refs[name] = tensorRef{f, ti}
	}
	return nil
}

// openSafetensors opens and validates a safetensors file; format problems become InputErrors naming the file.
func openSafetensors(path string) (*safetensors.File, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		var fe *safetensors.FormatError
		if errors.As(err, &fe) {
			cause := *fe
			cause.Path = "" // the InputError names the file
			return nil, &InputError{File: path, Tensor: fe.Tensor, Err: &cause}
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// openTorchFile opens a torch.save zip file (adapter_model.bin, pytorch_model.bin) with the restricted unpickler;
// format problems, and globals it refuses, become InputErrors naming the file.
func openTorchFile(path string) (*safetensors.File, error) {
	f, err := torchzip.Open(path)
	if err != nil {
		var fe *torchzip.FormatError
		if errors.As(err, &fe) {
			return nil, &InputError{File: path, Err: fe.Err}
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// tiedEmbedding returns the input embedding's key when the base ties lm_head to it (no lm_head.weight stored),
// else "".
func (b *baseModel) tiedEmbedding() string {
	if _, ok := b.refs["lm_head.weight"]; ok {
		return ""
	}
	if b.cfg.TieWordEmbeddings != nil && !*b.cfg.TieWordEmbeddings {
		return ""
	}
	for _, k := range []string{"model.embed_tokens.weight", "transformer.wte.weight", "model.decoder.embed_tokens.weight"} {
		if r, ok := b.refs[k]; ok && len(r.info.Shape) == 2 && isFloat(r.info.DType) {
			return k
		}
	}
	return ""
}

// modelDTypeFromConfig returns config.json's torch_dtype (or transformers v5's dtype) when it names a float type.
func (b *baseModel) modelDTypeFromConfig() tensor.DType {
	for _, s := range []string{b.cfg.TorchDType, b.cfg.DType} {
		if s == "" {
			continue
		}
		if dt, err := floatTorchDType(s); err == nil {
			return dt
		}
	}
	return tensor.Invalid
}

// quantWeight is a bitsandbytes 4-bit weight: its parsed quant state and every component tensor.
type quantWeight struct {
	name         string // "P.weight"
	state        *QuantState
	blobKey      string
	weight       tensorRef
	absmax       tensorRef
	quantMap     tensorRef
	nestedAbsmax tensorRef // double quant only
	nestedMap    tensorRef // double quant only
	code         *[16]float32
}

// components lists every base key the weight is made of.
func (q *quantWeight) components() []string {
	out := []string{q.name, q.absmax.info.Name, q.quantMap.info.Name, q.blobKey}
	if q.state.Nested {
		out = append(out, q.nestedAbsmax.info.Name, q.nestedMap.info.Name)
	}
	return out
}

// findQuantWeights finds every 4-bit weight of the base (a key "P.weight.quant_state.bitsandbytes__nf4|fp4"
// exists, model-formats.md §3.1), parses its quant state and checks its components' dtypes and sizes.
func (b *baseModel) findQuantWeights() (map[string]*quantWeight, error) {
	out := map[string]*quantWeight{}
	keys := make([]string, 0, len(b.refs))
	for k := range b.refs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, qt := quantTypeFromKey(k)
		if w == "" {
			continue
		}
		blob := b.refs[k]
		if qt != "nf4" && qt != "fp4" {
			return nil, badf(blob.path(), k, "unknown bitsandbytes quant type %q (expected nf4 or fp4)", qt)
		}
		if blob.info.DType != tensor.U8 || blob.info.Size() > 1<<20 {
			return nil, badf(blob.path(), k, "quant state must be a small U8 tensor, is %s %s", blob.info.DType, tensor.FormatShape(blob.info.Shape))
		}
		raw, err := blob.file.ReadTensor(blob.info)
		if err != nil {
			return nil, err
		}
		st, err := ParseQuantState(raw)
		if err != nil {
			return nil, &InputError{File: blob.path(), Tensor: k, Msg: "invalid bitsandbytes quant state", Err: err}
		}
		if st.QuantType != qt {
			return nil, badf(blob.path(), k, "quant state says quant_type %q but its key says %q", st.QuantType, qt)
		}
		q, err := b.quantComponents(w, blob, st)
		if err != nil {
			return nil, err
		}
		out[w] = q
	}
	return out, nil
}

func (b *baseModel) quantComponents(w string, blob tensorRef, st *QuantState) (*quantWeight, error) {
	q := &quantWeight{name: w, state: st, blobKey: blob.info.Name, code: CodeTable(st.QuantType)}
	need := func(key string) (tensorRef, error) {
		r, ok := b.refs[key]
		if !ok {
			return tensorRef{}, badf(blob.path(), key, "missing: component of the 4-bit weight %s (its quant state is %s)", w, blob.info.Name)
		}
		return r, nil
	}
	var err error
	if q.weight, err = need(w); err != nil {
		return nil, err
	}
	n := st.NumElements()
	if ws := q.weight.info.DType.Bits(); ws == 0 || ws%8 != 0 {
		return nil, badf(q.weight.path(), w, "packed 4-bit storage has dtype %s; expected U8 or another byte-sized dtype", q.weight.info.DType)
	}
	if got, want := q.weight.info.Size(), (n+1)/2; got < want {
		return nil, badf(q.weight.path(), w, "packed 4-bit data is %d bytes (%s %s); shape %s needs %d",
			got, q.weight.info.DType, tensor.FormatShape(q.weight.info.Shape), tensor.FormatShape(st.Shape), want)
	}
	nb := st.NumBlocks()
	if q.absmax, err = need(w + suffixAbsmax); err != nil {
		return nil, err
	}
	wantAbs := tensor.F32
	if st.Nested {
		wantAbs = tensor.U8
	}
	if q.absmax.info.DType != wantAbs || q.absmax.info.NumElements() != nb {
		return nil, badf(q.absmax.path(), q.absmax.info.Name, "absmax is %s %s; %d blocks of %d need %s [%d]",
			q.absmax.info.DType, tensor.FormatShape(q.absmax.info.Shape), nb, st.Blocksize, wantAbs, nb)
	}
	if q.quantMap, err = need(w + suffixQuantMap); err != nil {
		return nil, err
	}
	if q.quantMap.info.DType != tensor.F32 || q.quantMap.info.NumElements() != 16 {
		return nil, badf(q.quantMap.path(), q.quantMap.info.Name, "quant_map is %s %s, expected F32 [16]",
			q.quantMap.info.DType, tensor.FormatShape(q.quantMap.info.Shape))
	}
	if st.Nested {
		if q.nestedAbsmax, err = need(w + suffixNestedAbsmax); err != nil {
			return nil, err
		}
		nn := st.NumNestedBlocks()
		if q.nestedAbsmax.info.DType != tensor.F32 || q.nestedAbsmax.info.NumElements() != nn {
			return nil, badf(q.nestedAbsmax.path(), q.nestedAbsmax.info.Name, "nested_absmax is %s %s, expected F32 [%d]",
				q.nestedAbsmax.info.DType, tensor.FormatShape(q.nestedAbsmax.info.Shape), nn)
		}
		if q.nestedMap, err = need(w + suffixNestedQuantMp); err != nil {
			return nil, err
		}
		if q.nestedMap.info.DType != tensor.F32 || q.nestedMap.info.NumElements() != 256 {
			return nil, badf(q.nestedMap.path(), q.nestedMap.info.Name, "nested_quant_map is %s %s, expected F32 [256]",
				q.nestedMap.info.DType, tensor.FormatShape(q.nestedMap.info.Shape))
		}
	} else {
		for _, s := range []string{suffixNestedAbsmax, suffixNestedQuantMp} {
			if _, ok := b.refs[w+s]; ok {
				return nil, badf(b.refs[w+s].path(), w+s, "present but the quant state has no double quantization")
			}
		}
	}
	return q, nil
}

// readFloats reads a whole (small) F32 tensor.
func readF32(r tensorRef) ([]float32, error) {
	if r.info.DType != tensor.F32 {
		return nil, badf(r.path(), r.info.Name, "expected F32, is %s", r.info.DType)
	}
	raw, err := r.file.ReadTensor(r.info)
	if err != nil {
		return nil, err
	}
	out := make([]float32, r.info.NumElements())
	if err := tensor.DecodeFloats(tensor.F32, raw, out); err != nil {
		return nil, err
	}
	return out, nil
}
