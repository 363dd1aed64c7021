package merge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// Adapter file names (model-formats.md §5.1).
const (
	adapterConfigFile  = "adapter_config.json"
	adapterWeightsFile = "adapter_model.safetensors"
	adapterPickleFile  = "adapter_model.bin"
	adapterKeyPrefix   = "base_model.model."
)

// loraModule is one module the adapter changes with a low-rank update.
type loraModule struct {
	name      string // module path without base_model.model., e.g. model.layers.0.self_attn.q_proj
	embedding bool   // lora_embedding_A/B (nn.Embedding) rather than lora_A/B (nn.Linear)
	a, b      *tensorRef
	loraBias  *tensorRef // lora_B.bias
	magnitude *tensorRef // DoRA lora_magnitude_vector
}

// adapter is an opened PEFT adapter directory.
type adapter struct {
	dir        string
	configPath string
	cfg        *AdapterConfig
	file       *safetensors.File
	modules    map[string]*loraModule
	// replace maps a base tensor name to the adapter tensor that replaces it whole (modules_to_save, trained
	// biases, saved base layers of resized embeddings).
	replace map[string]tensorRef
	// wrapped are modules_to_save copies saved under their wrapper's name (<m>.modules_to_save[.<adapter>].<p>),
	// resolved against the base by resolveWrapped.
	wrapped []wrappedTensor
	// originals are the <m>.original_module.<p> tensors: the untrained copy PEFT keeps beside a
	// modules_to_save module. They never reach the output.
	originals []string
}

// wrappedTensor is a modules_to_save copy saved under its wrapper's name. candidates are the base tensors it may
// replace, most specific first: without and with the segment after "modules_to_save." (an adapter name, or the
// first segment of a submodule path when PEFT removed the adapter name).
type wrappedTensor struct {
	ref        tensorRef
	candidates []string
}

func (a *adapter) close() {
	if a.file != nil {
		a.file.Close()
	}
}

// openAdapter reads adapter_config.json and opens adapter_model.safetensors, grouping its tensors by module.
func openAdapter(dir string) (_ *adapter, err error) {
	if dir == "" {
		return nil, badf("", "", "no adapter directory given")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, badf(dir, "", "adapter directory does not exist or is not a directory")
	}
	a := &adapter{dir: dir, configPath: filepath.Join(dir, adapterConfigFile), modules: map[string]*loraModule{}, replace: map[string]tensorRef{}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	raw, err := fsutil.ReadRegularFile(a.configPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, badf(a.configPath, "", "missing: the adapter directory needs the adapter_config.json PEFT wrote")
		}
		return nil, fmt.Errorf("read %s: %w", a.configPath, err)
	}
	if a.cfg, err = ParseAdapterConfig(raw); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return nil, badf(a.configPath, fe.field, "%s", fe.msg)
		}
		return nil, &InputError{File: a.configPath, Msg: "invalid adapter config", Err: err}
	}
	wpath := filepath.Join(dir, adapterWeightsFile)
	a.file, err = openSafetensors(wpath)
	if errors.Is(err, os.ErrNotExist) {
		// Older PEFT (and safe_serialization=False) writes torch.save's format: read it without unpickling code.
		a.file, err = openTorchFile(filepath.Join(dir, adapterPickleFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil, badf(wpath, "", "missing: the adapter directory has neither adapter_model.safetensors nor adapter_model.bin")
		}
	}
	if err != nil {
		return nil, err
	}
	if err := a.classify(); err != nil {
		return nil, err
	}
	return a, nil
}

// loraSuffixes maps the suffix of an adapter key to the part of a LoRA module it holds.
var loraSuffixes = [...]struct {
	suffix string
	part   string
}{
	{".lora_A.weight", "A"},
	{".lora_B.weight", "B"},
	{".lora_B.bias", "bias"},
	{".lora_embedding_A", "eA"},
	{".lora_embedding_B", "eB"},
	{".lora_magnitude_vector.weight", "m"},
	{".lora_magnitude_vector", "m"},
}

// stripAdapterName removes a stray ".default" adapter-name segment after a LoRA part (PEFT removes it when
// saving; accept it defensively).
func stripAdapterName(key string) string {
	for _, p := range []string{"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"} {
		key = strings.Replace(key, "."+p+".default.", "."+p+".", 1)
		if strings.HasSuffix(key, "."+p+".default") {
			key = strings.TrimSuffix(key, ".default")
		}
	}
	return key
}

// classify sorts the adapter's tensors into LoRA modules and whole-tensor replacements.
func (a *adapter) classify() error {
	path := a.file.Path
	for _, t := range a.file.Tensors {
		ref := tensorRef{a.file, t}
		if !strings.HasPrefix(t.Name, adapterKeyPrefix) {
			return badf(path, t.Name, "adapter tensor names start with %q (PEFT's PeftModel prefix); this one does not", adapterKeyPrefix)
		}
		if !isFloat(t.DType) {
			return badf(path, t.Name, "unsupported dtype %s (adapters are F32, F16 or BF16)", t.DType)
		}
		key := stripAdapterName(strings.TrimPrefix(t.Name, adapterKeyPrefix))
		matched := false
		for _, s := range loraSuffixes {
			if !strings.HasSuffix(key, s.suffix) {
				continue
			}
			modName := strings.TrimSuffix(key, s.suffix)
			if modName == "" {
				break
			}
			m := a.modules[modName]
			if m == nil {
				m = &loraModule{name: modName}
				a.modules[modName] = m
			}
			var slot **tensorRef
			switch s.part {
			case "A", "eA":
				slot = &m.a
			case "B", "eB":
				slot = &m.b
			case "bias":
				slot = &m.loraBias
			case "m":
				slot = &m.magnitude
			}
			if *slot != nil {
				return badf(path, t.Name, "duplicate %s tensor for module %s (also %s)", s.part, modName, (*slot).info.Name)
			}
			r := ref
			*slot = &r
			if s.part == "eA" || s.part == "eB" {
				m.embedding = true
			}
			matched = true
			break
		}
		if matched {
			continue
		}
		if strings.Contains(key, ".lora_") || strings.HasPrefix(key, "lora_") {
			return badf(path, t.Name, "unsupported LoRA tensor (hubsync merges lora_A/lora_B, lora_embedding_A/B, lora_B.bias and lora_magnitude_vector)")
		}
		// A whole tensor: modules_to_save, a trained bias, or a saved base layer (resized embeddings).
		target := strings.Replace(key, ".base_layer.", ".", 1)
		if i := strings.Index(target, ".original_module."); i >= 0 {
			a.originals = append(a.originals, t.Name)
			continue
		}
		if mod, rest, ok := strings.Cut(target, ".modules_to_save."); ok {
			if mod == "" || rest == "" || strings.Contains(rest, ".modules_to_save.") {
				return badf(path, t.Name, "malformed modules_to_save tensor name")
			}
			w := wrappedTensor{ref: ref}
			if _, after, ok := strings.Cut(rest, "."); ok {
				// <m>.modules_to_save.<adapter>.<p> (no adapter name removed) — or <m>.modules_to_save.<sub>.<p>.
				w.candidates = append(w.candidates, mod+"."+after)
			}
			w.candidates = append(w.candidates, mod+"."+rest)
			a.wrapped = append(a.wrapped, w)
			continue
		}
		if prev, ok := a.replace[target]; ok {
			return badf(path, t.Name, "replaces base tensor %s, which %s already replaces", target, prev.info.Name)
		}
		a.replace[target] = ref
	}
	names := make([]string, 0, len(a.modules))
	for n := range a.modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := a.modules[n]
		kind := "lora_A/lora_B"
		if m.embedding {
			kind = "lora_embedding_A/lora_embedding_B"
		}
		switch {
		case m.a == nil || m.b == nil:
			return badf(path, n, "module has only part of its LoRA pair (%s)", kind)
		case m.embedding && (!strings.Contains(m.a.info.Name, "lora_embedding_A") || !strings.Contains(m.b.info.Name, "lora_embedding_B")):
			return badf(path, n, "module mixes lora_A/B and lora_embedding_A/B tensors")
		case m.embedding && m.loraBias != nil:
			return badf(path, n, "an embedding LoRA has no lora_B bias")
		}
		if a.cfg.UseDoRA && m.magnitude == nil {
			return badf(path, n, "use_dora is true in %s but the module has no lora_magnitude_vector", adapterConfigFile)
		}
		if !a.cfg.UseDoRA && m.magnitude != nil {
			return badf(path, n, "has a lora_magnitude_vector but use_dora is false in %s", adapterConfigFile)
		}
		if !m.embedding && a.cfg.LoraBias && m.loraBias == nil {
			return badf(path, n, "lora_bias is true in %s but the module has no lora_B.bias", adapterConfigFile)
		}
		if m.loraBias != nil && !a.cfg.LoraBias {
			return badf(path, n, "has a lora_B.bias but lora_bias is false in %s", adapterConfigFile)
		}
	}
	if len(a.modules) == 0 && len(a.replace) == 0 && len(a.wrapped) == 0 {
		return badf(path, "", "the adapter has no tensors")
	}
	return nil
}

// resolveWrapped adds every modules_to_save copy saved under its wrapper's name to a.replace, as the first of its
// candidates for which has is true. PEFT ≥ 0.7 with save_embedding_layers writes such a copy beside the plain
// <m>.<p> one (the same trained tensor twice); the two must then be equal.
func (a *adapter) resolveWrapped(has func(string) bool) error {
	for _, w := range a.wrapped {
		target := ""
		for _, c := range w.candidates {
			if has(c) {
				target = c
				break
			}
		}
		if target == "" {
			return badf(w.ref.path(), w.ref.info.Name, "modules_to_save tensor matches no base tensor (looked for %s)", strings.Join(w.candidates, " or "))
		}
		prev, ok := a.replace[target]
		if !ok {
			a.replace[target] = w.ref
			continue
		}
		same, err := sameTensor(prev, w.ref)
		if err != nil {
			return err
		}
		if !same {
			return badf(w.ref.path(), w.ref.info.Name, "differs from %s, which also holds the trained copy of %s", prev.info.Name, target)
		}
	}
	return nil
}

// sameTensor reports whether two tensors have the same dtype, shape and bytes, reading them in bounded chunks.
func sameTensor(x, y tensorRef) (bool, error) {
	if x.info.DType != y.info.DType || !tensor.EqualShapes(x.info.Shape, y.info.Shape) {
		return false, nil
	}
	const chunk = 1 << 20
	n := x.info.Size()
	bx, by := make([]byte, min(n, chunk)), make([]byte, min(n, chunk))
	for off := int64(0); off < n; off += chunk {
		k := min(chunk, n-off)
		if err := x.readAt(bx[:k], off); err != nil {
			return false, err
		}
		if err := y.readAt(by[:k], off); err != nil {
			return false, err
		}
		if !bytes.Equal(bx[:k], by[:k]) {
			return false, nil
		}
	}
	return true, nil
}

// sortedModules returns the LoRA modules in name order.
func (a *adapter) sortedModules() []*loraModule {
	out := make([]*loraModule, 0, len(a.modules))
	for _, m := range a.modules {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// readAdapterFloats reads a whole adapter tensor as float32 and checks every value is finite.
func readAdapterFloats(r tensorRef) ([]float32, error) {
	raw, err := r.file.ReadTensor(r.info)
	if err != nil {
		return nil, err
	}
	out := make([]float32, r.info.NumElements())
	if err := tensor.DecodeFloats(r.info.DType, raw, out); err != nil {
		return nil, &InputError{File: r.path(), Tensor: r.info.Name, Msg: "cannot read", Err: err}
	}
	if i := firstNonFinite(out); i >= 0 {
		return nil, badf(r.path(), r.info.Name, "adapter tensor holds a non-finite value (%v at %s)", out[i], indexString(r.info.Shape, int64(i)))
	}
	return out, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf, or -1.
func firstNonFinite(x []float32) int {
	for i, v := range x {
		if v-v != 0 {
			return i
		}
	}
	return -1
}

// indexString renders flat index i of shape as "[r, c]".
func indexString(shape []int64, i int64) string {
	if len(shape) == 0 {
		return "[]"
	}
	idx := make([]int64, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = i % shape[d]
			i /= shape[d]
		}
	}
	return tensor.FormatShape(idx)
}
