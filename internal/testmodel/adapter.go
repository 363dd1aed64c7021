package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// RankRule is one rank_pattern entry: modules matching Pattern get rank R.
type RankRule struct {
	Pattern string
	R       int
}

// AlphaRule is one alpha_pattern entry: modules matching Pattern get lora_alpha Alpha.
type AlphaRule struct {
	Pattern string
	Alpha   float64
}

// The values of AdapterSpec.Bias.
const (
	BiasNone     = "none"
	BiasAll      = "all"
	BiasLoRAOnly = "lora_only"
)

// AdapterSpec describes a PEFT LoRA adapter to generate for a base. Zero fields take PEFT's defaults.
type AdapterSpec struct {
	R         int     // default rank (PEFT default 8)
	Alpha     float64 // default lora_alpha (PEFT default 8)
	UseRSLoRA bool    // scaling alpha/sqrt(r)

	// RankPattern and AlphaPattern override r and alpha per module: the first pattern P, in the order written to
	// adapter_config.json, for which the module name matches (.*\.)?(P)$ from its start wins. PEFT saves its
	// config with sort_keys=True, so by default the patterns are written (and so matched) in sorted key order;
	// KeepPatternOrder writes them in the order given here instead. A/B shapes follow the resolved ranks.
	RankPattern      []RankRule
	AlphaPattern     []AlphaRule
	KeepPatternOrder bool

	// TargetModules is target_modules as a list: a module is targeted when its name equals an entry or ends with
	// "."+entry. Default q_proj, v_proj (PEFT's default for these architectures). AllLinear() gives the list PEFT
	// saves after expanding "all-linear".
	TargetModules []string
	// TargetRegex, if set, is target_modules as a string: a regex that must match the whole module name, or the
	// literal "all-linear" (every linear layer except lm_head). Exclusive with TargetModules.
	TargetRegex string

	// FanInFanOut sets fan_in_fan_out: the base must store the targeted linear weights [in, out]
	// (BaseSpec.FanInFanOut).
	FanInFanOut bool
	// LoRABias adds lora_B.bias to every targeted linear (lora_bias=true); those modules need a base bias.
	LoRABias bool
	// Bias is "none" (default), "all" (every base bias saved, trained) or "lora_only" (biases of targeted modules).
	Bias string
	// UseDoRA adds lora_magnitude_vector to every targeted module (linear and embedding).
	UseDoRA bool
	// EmbeddingLoRA adds embed_tokens to the list of targets (lora_embedding_A/B). As PEFT's default
	// save_embedding_layers="auto" does for a targeted embedding, the base embedding is saved too
	// (model.embed_tokens.base_layer.weight, in the base dtype, equal to the base's rows).
	EmbeddingLoRA bool
	// ModulesToSave are saved in full (e.g. lm_head, embed_tokens); matched like list targets.
	ModulesToSave []string
	// ResizeVocab adds that many rows to every saved embedding / lm_head tensor (and to num_embeddings of an
	// embedding LoRA), as after resize_token_embeddings.
	ResizeVocab int

	DType tensor.DType // adapter tensors' dtype: F32 (default), F16 or BF16
	Seed  int64
	// BaseModelName is base_model_name_or_path (default: the base directory, else "hubsync/testmodel-base").
	BaseModelName string
}

// AllLinear is target_modules as PEFT saves it after expanding "all-linear" for these architectures.
func AllLinear() []string {
	return []string{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}
}

// AdapterModule is one LoRA-targeted module of a generated adapter.
type AdapterModule struct {
	Path    string     // module path, e.g. model.layers.0.self_attn.q_proj
	Kind    ModuleKind // KindLinear or KindEmbedding
	In, Out int64      // linear: in/out features; embedding: num_embeddings (resized), embedding_dim
	R       int        // resolved rank (rank_pattern or r)
	Alpha   float64    // resolved alpha (alpha_pattern or lora_alpha)
	Scaling float64    // alpha/r, or alpha/sqrt(r) with rsLoRA
}

// AdapterInfo describes a generated adapter.
type AdapterInfo struct {
	Dir     string
	Spec    AdapterSpec     // with defaults filled in
	Config  map[string]any  // adapter_config.json as written
	Modules []AdapterModule // LoRA-targeted modules in model order
	Tensors []Tensor        // adapter_model.safetensors keys (Weight = the module path)
}

// normalize fills PEFT's defaults.
func (a AdapterSpec) normalize() (AdapterSpec, error) {
	if a.R == 0 {
		a.R = 8
	}
	if a.Alpha == 0 {
		a.Alpha = 8
	}
	if a.DType == tensor.Invalid {
		a.DType = tensor.F32
	}
	if a.Bias == "" {
		a.Bias = BiasNone
	}
	if a.TargetRegex == "" && len(a.TargetModules) == 0 {
		a.TargetModules = []string{"q_proj", "v_proj"}
	}
	a.TargetModules = slices.Clone(a.TargetModules)
	a.ModulesToSave = slices.Clone(a.ModulesToSave)
	a.RankPattern = slices.Clone(a.RankPattern)
	a.AlphaPattern = slices.Clone(a.AlphaPattern)
	if a.EmbeddingLoRA {
		if a.TargetRegex != "" {
			return a, fmt.Errorf("testmodel: EmbeddingLoRA with a TargetRegex: put embed_tokens in the regex instead")
		}
		if !slices.Contains(a.TargetModules, "embed_tokens") {
			a.TargetModules = append(a.TargetModules, "embed_tokens")
		}
	}
	if !a.KeepPatternOrder {
		slices.SortStableFunc(a.RankPattern, func(x, y RankRule) int { return strings.Compare(x.Pattern, y.Pattern) })
		slices.SortStableFunc(a.AlphaPattern, func(x, y AlphaRule) int { return strings.Compare(x.Pattern, y.Pattern) })
	}
	switch {
	case a.R < 0:
		return a, fmt.Errorf("testmodel: rank %d", a.R)
	case a.Bias != BiasNone && a.Bias != BiasAll && a.Bias != BiasLoRAOnly:
		return a, fmt.Errorf("testmodel: bias must be none, all or lora_only, not %q", a.Bias)
	case a.DType != tensor.F32 && a.DType != tensor.F16 && a.DType != tensor.BF16:
		return a, fmt.Errorf("testmodel: adapter dtype must be F32, F16 or BF16, not %s", a.DType)
	case a.TargetRegex != "" && len(a.TargetModules) > 0:
		return a, fmt.Errorf("testmodel: set TargetModules or TargetRegex, not both")
	case a.UseDoRA && a.LoRABias:
		return a, fmt.Errorf("testmodel: PEFT does not support lora_bias with DoRA")
	case a.ResizeVocab < 0:
		return a, fmt.Errorf("testmodel: negative ResizeVocab")
	}
	seen := map[string]bool{}
	for _, p := range a.RankPattern {
		if p.R <= 0 {
			return a, fmt.Errorf("testmodel: rank_pattern %q: rank %d", p.Pattern, p.R)
		}
		if seen[p.Pattern] {
			return a, fmt.Errorf("testmodel: rank_pattern %q twice", p.Pattern)
		}
		seen[p.Pattern] = true
	}
	clear(seen)
	for _, p := range a.AlphaPattern {
		if seen[p.Pattern] {
			return a, fmt.Errorf("testmodel: alpha_pattern %q twice", p.Pattern)
		}
		seen[p.Pattern] = true
	}
	return a, nil
}

// patternMatch reports whether a rank/alpha pattern key matches a module name as PEFT's get_pattern_key does:
// re.match(rf"(.*\.)?({key})$", name).
func patternMatch(key, name string) (bool, error) {
	re, err := regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
	if err != nil {
		return false, fmt.Errorf("pattern %q: %w", key, err)
	}
	return re.MatchString(name), nil
}

// resolve returns a module's rank and alpha.
func (a AdapterSpec) resolve(path string) (r int, alpha float64, err error) {
	r, alpha = a.R, a.Alpha
	for _, p := range a.RankPattern {
		ok, err := patternMatch(p.Pattern, path)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			r = p.R
			break
		}
	}
	for _, p := range a.AlphaPattern {
		ok, err := patternMatch(p.Pattern, path)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			alpha = p.Alpha
			break
		}
	}
	return r, alpha, nil
}

// listMatch is PEFT's list matching: the name equals an entry or ends with "."+entry.
func listMatch(list []string, path string) bool {
	for _, k := range list {
		if path == k || strings.HasSuffix(path, "."+k) {
			return true
		}
	}
	return false
}

// targets reports whether a base module is LoRA-targeted.
func (a AdapterSpec) targets(m Module) (bool, error) {
	if m.Kind == KindNorm {
		return false, nil
	}
	switch a.TargetRegex {
	case "":
		return listMatch(a.TargetModules, m.Path), nil
	case "all-linear":
		return m.Kind == KindLinear && m.Path != "lm_head", nil
	}
	re, err := regexp.Compile(`^(?:` + a.TargetRegex + `)$`)
	if err != nil {
		return false, fmt.Errorf("testmodel: target_modules regex: %w", err)
	}
	return re.MatchString(m.Path), nil
}

// adapterTensor is a planned adapter tensor with the function producing its bytes.
type adapterTensor struct {
	Tensor
	write func(ctx context.Context, w io.Writer) error
}

// adapterPlan is everything needed to write an adapter.
type adapterPlan struct {
	info    *AdapterInfo
	tensors []adapterTensor
}

// planAdapter resolves an adapter spec against a base.
func planAdapter(base *BaseInfo, spec AdapterSpec) (*adapterPlan, error) {
	a, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	bs := base.Spec
	if a.FanInFanOut != bs.FanInFanOut {
		return nil, fmt.Errorf("testmodel: adapter fan_in_fan_out=%v but the base stores linear weights %s",
			a.FanInFanOut, map[bool]string{true: "[in, out]", false: "[out, in]"}[bs.FanInFanOut])
	}
	if a.BaseModelName == "" {
		a.BaseModelName = base.Dir
		if a.BaseModelName == "" {
			a.BaseModelName = "hubsync/testmodel-base"
		}
	}
	info := &AdapterInfo{Spec: a}
	plan := &adapterPlan{info: info}
	dt := a.DType
	add := func(name string, dtype tensor.DType, shape []int64, module string,
		write func(context.Context, io.Writer) error) {
		plan.tensors = append(plan.tensors, adapterTensor{Tensor: Tensor{Name: "base_model.model." + name,
			DType: dtype, Shape: shape, Weight: module, File: "adapter_model.safetensors"}, write: write})
	}
	randomT := func(name string, kind valueKind, std, mean float64, dtype tensor.DType, n int64) func(context.Context, io.Writer) error {
		st := newStream(a.Seed, name, kind, dtype)
		if std != 0 {
			st.std = std
		}
		st.mean = mean
		return func(ctx context.Context, w io.Writer) error { return writeFloats(ctx, w, st, dtype, n) }
	}
	// Modules: the base's, plus lm_head when tied (PEFT can still wrap it, e.g. in modules_to_save).
	mods := slices.Clone(base.Modules)
	if bs.Tied {
		mods = append(mods, Module{Path: "lm_head", Kind: KindLinear, In: int64(bs.Hidden), Out: int64(bs.Vocab)})
	}
	resize := int64(a.ResizeVocab)
	resized := false
	targeted := 0
	for _, m := range mods {
		tgt, err := a.targets(m)
		if err != nil {
			return nil, err
		}
		if m.Path == "lm_head" && bs.Tied {
			tgt = false // no separate lm_head module to wrap with LoRA in a tied model
		}
		if tgt && a.FanInFanOut && m.Path == "lm_head" {
			return nil, fmt.Errorf("testmodel: fan_in_fan_out adapter targets lm_head, a plain [out, in] Linear")
		}
		save := listMatch(a.ModulesToSave, m.Path)
		if tgt && save {
			return nil, fmt.Errorf("testmodel: %s is both a LoRA target and in modules_to_save", m.Path)
		}
		if save && m.Quantized {
			return nil, fmt.Errorf("testmodel: modules_to_save %s: the module is 4-bit in the base", m.Path)
		}
		vocabRows := m.Path == "model.embed_tokens" || m.Path == "lm_head"
		switch {
		case save:
			rows, cols := m.Out, m.In
			shape := []int64{rows, cols}
			switch {
			case m.Kind == KindNorm:
				shape = []int64{m.Out}
			case m.Kind == KindEmbedding:
				shape = []int64{m.In + resize, m.Out}
				resized = resized || resize > 0
			case vocabRows:
				shape = []int64{m.Out + resize, m.In}
				resized = resized || resize > 0
			case bs.FanInFanOut:
				shape = []int64{m.In, m.Out}
			}
			kind := valWeight
			if m.Kind == KindNorm {
				kind = valNorm
			}
			n, _ := tensor.NumElements(shape)
			add(m.Path+".weight", dt, shape, m.Path, randomT(m.Path+".weight", kind, 0, 0, dt, n))
			if m.Bias {
				add(m.Path+".bias", dt, []int64{m.Out}, m.Path, randomT(m.Path+".bias", valBias, 0, 0, dt, m.Out))
			}
		case tgt:
			targeted++
			r, alpha, err := a.resolve(m.Path)
			if err != nil {
				return nil, fmt.Errorf("testmodel: %w", err)
			}
			scaling := alpha / float64(r)
			if a.UseRSLoRA {
				scaling = alpha / math.Sqrt(float64(r))
			}
			am := AdapterModule{Path: m.Path, Kind: m.Kind, In: m.In, Out: m.Out, R: r, Alpha: alpha, Scaling: scaling}
			r64 := int64(r)
			if m.Kind == KindEmbedding {
				am.In += resize
				resized = resized || resize > 0
				add(m.Path+".lora_embedding_A", dt, []int64{r64, am.In}, m.Path,
					randomT(m.Path+".lora_embedding_A", valBias, 0.05, 0, dt, r64*am.In))
				add(m.Path+".lora_embedding_B", dt, []int64{am.Out, r64}, m.Path,
					randomT(m.Path+".lora_embedding_B", valBias, 0.01, 0, dt, am.Out*r64))
				if a.UseDoRA {
					add(m.Path+".lora_magnitude_vector", dt, []int64{am.Out}, m.Path,
						randomT(m.Path+".lora_magnitude_vector", valMagnitude, 0, 0.03*math.Sqrt(float64(am.In)), dt, am.Out))
				}
				add(m.Path+".base_layer.weight", bs.DType, []int64{am.In, am.Out}, m.Path,
					savedEmbedding(bs, a.Seed, m, resize))
			} else {
				add(m.Path+".lora_A.weight", dt, []int64{r64, m.In}, m.Path,
					randomT(m.Path+".lora_A.weight", valBias, 0.05, 0, dt, r64*m.In))
				add(m.Path+".lora_B.weight", dt, []int64{m.Out, r64}, m.Path,
					randomT(m.Path+".lora_B.weight", valBias, 0.01, 0, dt, m.Out*r64))
				if a.LoRABias {
					if !m.Bias {
						return nil, fmt.Errorf("testmodel: lora_bias on %s, which has no base bias (PEFT cannot merge "+
							"it); use a base with Bias or other targets", m.Path)
					}
					add(m.Path+".lora_B.bias", dt, []int64{m.Out}, m.Path,
						randomT(m.Path+".lora_B.bias", valBias, 0.01, 0, dt, m.Out))
				}
				if a.UseDoRA {
					add(m.Path+".lora_magnitude_vector", dt, []int64{m.Out}, m.Path,
						randomT(m.Path+".lora_magnitude_vector", valMagnitude, 0, 0.03*math.Sqrt(float64(m.In)), dt, m.Out))
				}
			}
			if m.Bias && a.Bias != BiasNone {
				add(m.Path+".base_layer.bias", dt, []int64{m.Out}, m.Path,
					randomT(m.Path+".base_layer.bias", valBias, 0, 0, dt, m.Out))
			}
			info.Modules = append(info.Modules, am)
		case m.Bias && a.Bias == BiasAll:
			add(m.Path+".bias", dt, []int64{m.Out}, m.Path, randomT(m.Path+".bias", valBias, 0, 0, dt, m.Out))
		}
	}
	if targeted == 0 {
		return nil, fmt.Errorf("testmodel: target_modules %v%s matched no module of the base", a.TargetModules,
			a.TargetRegex)
	}
	if resize > 0 && !resized {
		return nil, fmt.Errorf("testmodel: ResizeVocab needs embed_tokens or lm_head in modules_to_save, or EmbeddingLoRA")
	}
	info.Config = adapterConfig(a)
	for _, t := range plan.tensors {
		info.Tensors = append(info.Tensors, t.Tensor)
	}
	return plan, nil
}

// savedEmbedding writes the base embedding as PEFT saves it next to an embedding LoRA: the base's rows exactly
// (regenerated from the base's stream), then resize new random rows.
func savedEmbedding(bs BaseSpec, seed int64, m Module, resize int64) func(context.Context, io.Writer) error {
	baseSt := bs.weightStream(m.WeightName(), valWeight)
	extra := newStream(seed, m.Path+".base_layer.weight.resized", valWeight, bs.DType)
	return func(ctx context.Context, w io.Writer) error {
		if err := writeFloats(ctx, w, baseSt, bs.DType, m.In*m.Out); err != nil {
			return err
		}
		return writeFloats(ctx, w, extra, bs.DType, resize*m.Out)
	}
}

// orderedObject is a JSON object that keeps its key order.
type orderedObject []struct {
	Key   string
	Value any
}

// MarshalJSON writes the keys in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(kv.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(kv.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// pyNumber renders a float as Python would store it in a PEFT config: an int when integral (PEFT's lora_alpha
// and pattern values are ints in practice), else a float.
func pyNumber(x float64) json.Number {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return json.Number(strconv.FormatInt(int64(x), 10))
	}
	return json.Number(PyFloat(x))
}

// adapterConfig is adapter_config.json as PEFT's LoraConfig saves it.
func adapterConfig(a AdapterSpec) map[string]any {
	rp, ap := orderedObject{}, orderedObject{}
	for _, p := range a.RankPattern {
		rp = append(rp, struct {
			Key   string
			Value any
		}{p.Pattern, p.R})
	}
	for _, p := range a.AlphaPattern {
		ap = append(ap, struct {
			Key   string
			Value any
		}{p.Pattern, pyNumber(p.Alpha)})
	}
	var targets any = a.TargetModules
	if a.TargetRegex != "" {
		targets = a.TargetRegex
	}
	var mts any
	if len(a.ModulesToSave) > 0 {
		mts = a.ModulesToSave
	}
	return map[string]any{
		"alora_invocation_tokens": nil,
		"alpha_pattern":           ap,
		"arrow_config":            nil,
		"auto_mapping":            nil,
		"base_model_name_or_path": a.BaseModelName,
		"bias":                    a.Bias,
		"corda_config":            nil,
		"eva_config":              nil,
		"exclude_modules":         nil,
		"fan_in_fan_out":          a.FanInFanOut,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"loftq_config":            map[string]any{},
		"lora_alpha":              pyNumber(a.Alpha),
		"lora_bias":               a.LoRABias,
		"lora_dropout":            pyNum(0),
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         mts,
		"peft_type":               "LORA",
		"peft_version":            "0.17.1",
		"qalora_group_size":       16,
		"r":                       a.R,
		"rank_pattern":            rp,
		"revision":                nil,
		"target_modules":          targets,
		"target_parameters":       nil,
		"task_type":               "CAUSAL_LM",
		"trainable_token_indices": nil,
		"use_dora":                a.UseDoRA,
		"use_qalora":              false,
		"use_rslora":              a.UseRSLoRA,
	}
}

// AdapterConfig returns the adapter_config.json contents GenerateAdapter would write for spec (as a map tests
// can modify and pass to WriteAdapterConfig).
func AdapterConfig(base *BaseInfo, spec AdapterSpec) (map[string]any, error) {
	p, err := planAdapter(base, spec)
	if err != nil {
		return nil, err
	}
	return p.info.Config, nil
}

// WriteAdapterConfig writes cfg (anything encoding/json can marshal: a map, a struct, json.RawMessage) as
// dir/adapter_config.json, with PEFT's formatting for maps (sorted keys, 2-space indent). Tests use it to write
// odd configs.
func WriteAdapterConfig(dir string, cfg any) error {
	data, err := marshalJSON(cfg)
	if err != nil {
		return fmt.Errorf("testmodel: adapter config: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, "adapter_config.json"), data)
}

// GenerateAdapter writes a PEFT LoRA adapter for base into dir (created if needed): adapter_config.json and
// adapter_model.safetensors. LoRA B is random and non-zero (a trained adapter, so merges change the weights).
func GenerateAdapter(ctx context.Context, dir string, base *BaseInfo, spec AdapterSpec) (*AdapterInfo, error) {
	plan, err := planAdapter(base, spec)
	if err != nil {
		return nil, err
	}
	plan.info.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	wpath := filepath.Join(dir, "adapter_model.safetensors")
	if err := plan.writeWeights(ctx, func(l *safetensors.Layout, fill safetensors.FillFunc) error {
		if _, err := safetensors.WriteFile(ctx, wpath, l, fill); err != nil {
			return err
		}
		return os.Chmod(wpath, 0o644)
	}); err != nil {
		return nil, err
	}
	if err := WriteAdapterConfig(dir, plan.info.Config); err != nil {
		os.Remove(wpath)
		return nil, err
	}
	return plan.info, nil
}

// GenerateAdapterForDir is GenerateAdapter for a base that GenerateBase wrote into baseDir.
func GenerateAdapterForDir(ctx context.Context, dir, baseDir string, spec AdapterSpec) (*AdapterInfo, error) {
	base, err := LoadBaseInfo(baseDir)
	if err != nil {
		return nil, err
	}
	return GenerateAdapter(ctx, dir, base, spec)
}

// writeWeights plans adapter_model.safetensors and hands the layout and fill function to write.
func (p *adapterPlan) writeWeights(ctx context.Context, write func(*safetensors.Layout, safetensors.FillFunc) error) error {
	entries := make([]safetensors.Entry, len(p.tensors))
	byName := map[string]adapterTensor{}
	for i, t := range p.tensors {
		entries[i] = safetensors.Entry{Name: t.Name, DType: t.DType, Shape: t.Shape}
		byName[t.Name] = t
	}
	l, err := safetensors.Plan(entries, map[string]string{"format": "pt"})
	if err != nil {
		return fmt.Errorf("testmodel: plan adapter_model.safetensors: %w", err)
	}
	return write(l, func(ctx context.Context, ti safetensors.TensorInfo, w io.Writer) error {
		return byName[ti.Name].write(ctx, w)
	})
}
