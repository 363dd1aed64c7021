package testmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// RefTensor is a tensor of the reference merge: its shape and its values in row-major order.
type RefTensor struct {
	Shape  []int64
	Values []float64
}

// ReferenceMerge merges the PEFT LoRA adapter in adapterDir into the base model in baseDir in float64, as a test
// oracle independent of the production merge (clarity over speed: tiny models only). It returns every output
// tensor (the base's parameters, with 4-bit weights dequantized and their quant-state keys dropped) before the
// final rounding to the output dtype; callers round and compare with a tolerance.
//
// Semantics (model-formats.md): 4-bit weights are dequantized with the hard-coded NF4/FP4 tables and the stored
// nested_quant_map, each product and sum rounded to float32 where bitsandbytes rounds (computed in float64 from
// float32 values and rounded once, which equals float32 arithmetic), and the result rounded to the quant_state
// dtype as bitsandbytes returns it (§4.4). Then, in float64: saved modules_to_save tensors, saved base layers
// and trained biases replace the base's; per LoRA module scaling = alpha/r or alpha/sqrt(r) (rsLoRA) with
// rank_pattern/alpha_pattern resolved as PEFT does (§5.4); W += scaling·B·A (transposed for fan_in_fan_out),
// embeddings W += scaling·(B·A)ᵀ, lora_B.bias·scaling added to the base bias, DoRA rescales rows (Linear) or
// columns (Embedding) of W+ΔW to the magnitude vector (§5.5).
//
// Tied embeddings (the base has no lm_head.weight and its config.json does not set tie_word_embeddings to false)
// with a LoRA on model.embed_tokens are untied, as hubsync does by default: lm_head.weight is the embedding as it
// was before the update (after any saved base layer replaced it), model.embed_tokens.weight the merged one.
// ReferenceMergeKeepTied skips that (PEFT's merge_and_unload: one shared, updated weight).
func ReferenceMerge(baseDir, adapterDir string) (map[string]RefTensor, error) {
	return referenceMerge(baseDir, adapterDir, true)
}

// ReferenceMergeKeepTied is ReferenceMerge without untying: a LoRA on a tied embedding updates the one shared
// weight and no lm_head.weight is output (hubsync's --keep-tied).
func ReferenceMergeKeepTied(baseDir, adapterDir string) (map[string]RefTensor, error) {
	return referenceMerge(baseDir, adapterDir, false)
}

func referenceMerge(baseDir, adapterDir string, untie bool) (map[string]RefTensor, error) {
	out, err := loadReferenceBase(baseDir)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(adapterDir, "adapter_config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, err := parseAdapterConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	wpath := filepath.Join(adapterDir, "adapter_model.safetensors")
	adapter, err := readAllFloats(wpath)
	if err != nil {
		return nil, err
	}
	if untie {
		// A hand-written base without config.json counts as tied when it lacks lm_head.weight.
		var bc struct {
			Tie *bool `json:"tie_word_embeddings"`
		}
		if raw, err := os.ReadFile(filepath.Join(baseDir, "config.json")); err == nil {
			if err := json.Unmarshal(raw, &bc); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(baseDir, "config.json"), err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		untie = bc.Tie == nil || *bc.Tie
	}
	if err := applyAdapter(out, cfg, adapter, untie); err != nil {
		return nil, fmt.Errorf("%s: %w", wpath, err)
	}
	return out, nil
}

// refAdapterConfig is what the reference merge needs from adapter_config.json.
type refAdapterConfig struct {
	R            int
	Alpha        float64
	UseRSLoRA    bool
	UseDoRA      bool
	FanInFanOut  bool
	RankPattern  []patternEntry
	AlphaPattern []patternEntry
}

// patternEntry is one key of rank_pattern / alpha_pattern, in file order.
type patternEntry struct {
	Key   string
	Value float64
}

// parseAdapterConfig parses the merge-relevant fields of adapter_config.json, keeping the order of the pattern
// objects' keys. Missing fields take PEFT's defaults (r 8, lora_alpha 8).
func parseAdapterConfig(data []byte) (refAdapterConfig, error) {
	var raw struct {
		PeftType     *string         `json:"peft_type"`
		R            *float64        `json:"r"`
		Alpha        *float64        `json:"lora_alpha"`
		UseRSLoRA    *bool           `json:"use_rslora"`
		UseDoRA      *bool           `json:"use_dora"`
		FanInFanOut  *bool           `json:"fan_in_fan_out"`
		RankPattern  json.RawMessage `json:"rank_pattern"`
		AlphaPattern json.RawMessage `json:"alpha_pattern"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return refAdapterConfig{}, fmt.Errorf("invalid adapter config: %w", err)
	}
	cfg := refAdapterConfig{R: 8, Alpha: 8}
	if raw.PeftType == nil || *raw.PeftType != "LORA" {
		return cfg, fmt.Errorf("peft_type is not \"LORA\"")
	}
	if raw.R != nil {
		if *raw.R != math.Trunc(*raw.R) || *raw.R <= 0 || *raw.R > 1<<20 {
			return cfg, fmt.Errorf("invalid r %v", *raw.R)
		}
		cfg.R = int(*raw.R)
	}
	if raw.Alpha != nil {
		cfg.Alpha = *raw.Alpha
	}
	cfg.UseRSLoRA = raw.UseRSLoRA != nil && *raw.UseRSLoRA
	cfg.UseDoRA = raw.UseDoRA != nil && *raw.UseDoRA
	cfg.FanInFanOut = raw.FanInFanOut != nil && *raw.FanInFanOut
	var err error
	if cfg.RankPattern, err = parsePattern(raw.RankPattern); err != nil {
		return cfg, fmt.Errorf("rank_pattern: %w", err)
	}
	for _, p := range cfg.RankPattern {
		if p.Value != math.Trunc(p.Value) || p.Value <= 0 || p.Value > 1<<20 {
			return cfg, fmt.Errorf("rank_pattern %q: invalid rank %v", p.Key, p.Value)
		}
	}
	if cfg.AlphaPattern, err = parsePattern(raw.AlphaPattern); err != nil {
		return cfg, fmt.Errorf("alpha_pattern: %w", err)
	}
	for _, p := range append(slices.Clone(cfg.RankPattern), cfg.AlphaPattern...) {
		if _, err := regexp.Compile(`^(?:.*\.)?(?:` + p.Key + `)$`); err != nil {
			return cfg, fmt.Errorf("pattern %q is not a regular expression Go can run: %w", p.Key, err)
		}
	}
	return cfg, nil
}

// parsePattern reads a JSON object of numbers (or null / absent) keeping its key order.
func parsePattern(raw json.RawMessage) ([]patternEntry, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var out []patternEntry
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := kt.(string) // object keys are always strings
		vt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := vt.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%q: value is not a number", key)
		}
		v, err := num.Float64()
		if err != nil {
			return nil, fmt.Errorf("%q: %w", key, err)
		}
		for _, p := range out {
			if p.Key == key {
				return nil, fmt.Errorf("%q appears twice", key)
			}
		}
		out = append(out, patternEntry{key, v})
	}
	return out, nil
}

// lookup returns the value of the first pattern that matches module as PEFT's get_pattern_key does.
func lookup(patterns []patternEntry, module string, def float64) float64 {
	for _, p := range patterns {
		if regexp.MustCompile(`^(?:.*\.)?(?:` + p.Key + `)$`).MatchString(module) { // compiled in parse
			return p.Value
		}
	}
	return def
}

// loadReferenceBase reads every parameter of a model directory into float64, dequantizing 4-bit weights.
func loadReferenceBase(dir string) (map[string]RefTensor, error) {
	files := []string{"model.safetensors"}
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	if data, err := os.ReadFile(idxPath); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", idxPath, err)
		}
		files = nil
		for _, f := range idx.WeightMap {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
		slices.Sort(files)
	}
	type loc struct {
		f *safetensors.File
		t safetensors.TensorInfo
	}
	keys := map[string]loc{}
	for _, name := range files {
		f, err := safetensors.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		for _, t := range f.Tensors {
			if _, dup := keys[t.Name]; dup {
				return nil, fmt.Errorf("%s: tensor %q appears in two files", dir, t.Name)
			}
			keys[t.Name] = loc{f, t}
		}
	}
	read := func(name string) (safetensors.TensorInfo, []byte, error) {
		l, ok := keys[name]
		if !ok {
			return safetensors.TensorInfo{}, nil, fmt.Errorf("%s: missing tensor %q", dir, name)
		}
		b, err := l.f.ReadTensor(l.t)
		return l.t, b, err
	}
	// 4-bit weights and their component keys.
	component := map[string]bool{}
	out := map[string]RefTensor{}
	for name := range keys {
		var weight, qt string
		for _, q := range []string{"nf4", "fp4"} {
			if w, ok := strings.CutSuffix(name, ".quant_state.bitsandbytes__"+q); ok {
				weight, qt = w, q
			}
		}
		if weight == "" {
			continue
		}
		_, blob, err := read(name)
		if err != nil {
			return nil, err
		}
		qs, err := ParseQuantState(blob)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", dir, name, err)
		}
		if qs.QuantType != qt {
			return nil, fmt.Errorf("%s: %s says quant_type %q", dir, name, qs.QuantType)
		}
		component[name] = true
		for _, c := range []string{CompAbsmax, CompQuantMap, CompNestedAbsmax, CompNestedQuantMap} {
			component[weight+c] = true
		}
		rt, err := dequantReference(weight, qs, read)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		out[weight] = rt
	}
	for name, l := range keys {
		if component[name] || out[name].Values != nil {
			continue
		}
		b, err := l.f.ReadTensor(l.t)
		if err != nil {
			return nil, err
		}
		v, err := decodeF64(l.t.DType, b)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", dir, name, err)
		}
		out[name] = RefTensor{Shape: slices.Clone(l.t.Shape), Values: v}
	}
	return out, nil
}

// dequantReference dequantizes one 4-bit weight (§4.4).
func dequantReference(weight string, qs QuantState,
	read func(string) (safetensors.TensorInfo, []byte, error)) (RefTensor, error) {
	n, _ := tensor.NumElements(qs.Shape)
	_, packed, err := read(weight) // any quant_storage dtype: the raw bytes are the packed codes
	if err != nil {
		return RefTensor{}, err
	}
	if int64(len(packed)) < (n+1)/2 {
		return RefTensor{}, fmt.Errorf("%s: %d packed bytes for %d elements", weight, len(packed), n)
	}
	nblocks := (n + int64(qs.Blocksize) - 1) / int64(qs.Blocksize)
	at, ab, err := read(weight + CompAbsmax)
	if err != nil {
		return RefTensor{}, err
	}
	if at.NumElements() != nblocks {
		return RefTensor{}, fmt.Errorf("%s: %d absmax values for %d blocks", weight, at.NumElements(), nblocks)
	}
	scale := make([]float32, nblocks)
	if qs.Nested {
		if at.DType != tensor.U8 {
			return RefTensor{}, fmt.Errorf("%s: double-quant absmax is %s, not U8", weight, at.DType)
		}
		nt, nb, err := read(weight + CompNestedAbsmax)
		if err != nil {
			return RefTensor{}, err
		}
		mt, mb, err := read(weight + CompNestedQuantMap)
		if err != nil {
			return RefTensor{}, err
		}
		nested, err := decodeF64(nt.DType, nb)
		if err != nil {
			return RefTensor{}, fmt.Errorf("%s: nested_absmax: %w", weight, err)
		}
		qmap, err := decodeF64(mt.DType, mb)
		if err != nil || len(qmap) != 256 {
			return RefTensor{}, fmt.Errorf("%s: nested_quant_map must be 256 float32 values", weight)
		}
		nbs := int64(qs.NestedBlocksize)
		if int64(len(nested)) != (nblocks+nbs-1)/nbs {
			return RefTensor{}, fmt.Errorf("%s: %d nested_absmax values for %d blocks", weight, len(nested), nblocks)
		}
		for b := range scale {
			prod := float32(qmap[ab[b]] * nested[int64(b)/nbs])          // exact product of two float32, one rounding
			scale[b] = float32(float64(prod) + float64(qs.NestedOffset)) // one rounding of the exact-ish sum
		}
	} else {
		v, err := decodeF64(at.DType, ab)
		if err != nil {
			return RefTensor{}, fmt.Errorf("%s: absmax: %w", weight, err)
		}
		for b := range scale {
			scale[b] = float32(v[b])
		}
	}
	code := Codebook(Quant(qs.QuantType))
	vals := make([]float64, n)
	for k := range vals {
		q := packed[k/2] >> 4
		if k%2 == 1 {
			q = packed[k/2] & 0x0F
		}
		w32 := float32(float64(code[q]) * float64(scale[int64(k)/int64(qs.Blocksize)]))
		vals[k] = float64(tensor.RoundTo(qs.DType, w32))
	}
	return RefTensor{Shape: slices.Clone(qs.Shape), Values: vals}, nil
}

// decodeF64 widens F32/F16/BF16 bytes to float64.
func decodeF64(dt tensor.DType, b []byte) ([]float64, error) {
	if dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16 {
		return nil, fmt.Errorf("dtype %s is not a float type", dt)
	}
	f := make([]float32, len(b)/dt.Size())
	if err := tensor.DecodeFloats(dt, b, f); err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out, nil
}

// readAllFloats reads every tensor of a small safetensors file as float64.
func readAllFloats(path string) (map[string]RefTensor, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]RefTensor{}
	for _, t := range f.Tensors {
		b, err := f.ReadTensor(t)
		if err != nil {
			return nil, err
		}
		v, err := decodeF64(t.DType, b)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, t.Name, err)
		}
		out[t.Name] = RefTensor{Shape: slices.Clone(t.Shape), Values: v}
	}
	return out, nil
}

// loraParts are one module's adapter tensors.
type loraParts struct {
	A, B, BBias, EA, EB, M *RefTensor
}

// applyAdapter merges adapter tensors into out (the base's parameters) in place.
// untieTied asks for a tied base's lm_head to be split off before a LoRA on the embedding (see ReferenceMerge).
func applyAdapter(out map[string]RefTensor, cfg refAdapterConfig, adapter map[string]RefTensor, untieTied bool) error {
	const prefix = "base_model.model."
	suffixes := []string{".lora_A.weight", ".lora_B.weight", ".lora_B.bias", ".lora_embedding_A",
		".lora_embedding_B", ".lora_magnitude_vector"}
	modules := map[string]*loraParts{}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range adapter {
			if !yield(k) {
				return
			}
		}
	})
	// 1. Replacements: modules_to_save tensors, saved base layers, trained biases.
	for _, key := range names {
		t := adapter[key]
		path, ok := strings.CutPrefix(key, prefix)
		if !ok {
			return fmt.Errorf("tensor %q does not start with %q", key, prefix)
		}
		lora := false
		for _, s := range suffixes {
			if m, ok := strings.CutSuffix(path, s); ok {
				lora = true
				p := modules[m]
				if p == nil {
					p = &loraParts{}
					modules[m] = p
				}
				tt := t
				switch s {
				case ".lora_A.weight":
					p.A = &tt
				case ".lora_B.weight":
					p.B = &tt
				case ".lora_B.bias":
					p.BBias = &tt
				case ".lora_embedding_A":
					p.EA = &tt
				case ".lora_embedding_B":
					p.EB = &tt
				case ".lora_magnitude_vector":
					p.M = &tt
				}
			}
		}
		if lora {
			continue
		}
		target := strings.Replace(path, ".base_layer.", ".", 1)
		if !strings.HasSuffix(target, ".weight") && !strings.HasSuffix(target, ".bias") {
			return fmt.Errorf("tensor %q is neither a LoRA tensor nor a saved weight or bias", key)
		}
		if _, ok := out[target]; !ok && target != "lm_head.weight" {
			return fmt.Errorf("tensor %q replaces %q, which the base does not have", key, target)
		}
		out[target] = RefTensor{Shape: slices.Clone(t.Shape), Values: slices.Clone(t.Values)}
	}
	// 2. A LoRA on the tied input embedding: lm_head keeps the embedding as it was.
	const emb, head = "model.embed_tokens", "lm_head.weight"
	if _, has := out[head]; untieTied && !has && modules[emb] != nil {
		if e, ok := out[emb+".weight"]; ok {
			out[head] = RefTensor{Shape: slices.Clone(e.Shape), Values: slices.Clone(e.Values)}
		}
	}
	// 3. LoRA deltas, module by module.
	for _, m := range slices.Sorted(func(yield func(string) bool) {
		for k := range modules {
			if !yield(k) {
				return
			}
		}
	}) {
		if err := mergeModule(out, cfg, m, modules[m]); err != nil {
			return fmt.Errorf("module %s: %w", m, err)
		}
	}
	return nil
}

// mergeModule applies one module's LoRA (and DoRA) to out.
func mergeModule(out map[string]RefTensor, cfg refAdapterConfig, m string, p *loraParts) error {
	if (p.M != nil) != cfg.UseDoRA {
		return fmt.Errorf("lora_magnitude_vector present=%v but use_dora=%v", p.M != nil, cfg.UseDoRA)
	}
	w, ok := out[m+".weight"]
	if !ok {
		return fmt.Errorf("the base has no %s.weight", m)
	}
	embedding := p.EA != nil || p.EB != nil
	var a, b *RefTensor
	if embedding {
		if p.A != nil || p.B != nil || p.BBias != nil {
			return fmt.Errorf("both embedding and linear LoRA tensors")
		}
		a, b = p.EA, p.EB
	} else {
		a, b = p.A, p.B
	}
	if a == nil || b == nil || len(a.Shape) != 2 || len(b.Shape) != 2 || len(w.Shape) != 2 {
		return fmt.Errorf("needs a 2-D A and B and a 2-D base weight")
	}
	r := int(a.Shape[0])
	if b.Shape[1] != int64(r) {
		return fmt.Errorf("A has rank %d but B has %d columns", r, b.Shape[1])
	}
	rm := int(lookup(cfg.RankPattern, m, float64(cfg.R)))
	if rm != r {
		return fmt.Errorf("the config gives rank %d but lora_A has %d rows", rm, r)
	}
	alpha := lookup(cfg.AlphaPattern, m, cfg.Alpha)
	scaling := alpha / float64(r)
	if cfg.UseRSLoRA {
		scaling = alpha / math.Sqrt(float64(r))
	}
	// Work in the logical orientation: rows index the output of B (out for Linear, dim for Embedding) and
	// columns the input of A (in for Linear, vocab for Embedding). delta[i][j] = scaling·Σ_k B[i][k]·A[k][j].
	rows, cols := b.Shape[0], a.Shape[1]
	// at(i, j) is the index in w.Values of logical element (i, j).
	var at func(i, j int64) int64
	switch {
	case embedding: // W is [vocab, dim]: logical (d, v) is W[v][d]
		if w.Shape[0] != cols || w.Shape[1] != rows {
			return fmt.Errorf("embedding LoRA (B·A)ᵀ is [%d, %d], base weight %v", cols, rows, w.Shape)
		}
		at = func(i, j int64) int64 { return j*rows + i }
	case cfg.FanInFanOut: // W is [in, out]
		if w.Shape[0] != cols || w.Shape[1] != rows {
			return fmt.Errorf("fan_in_fan_out LoRA (B·A)ᵀ is [%d, %d], base weight %v", cols, rows, w.Shape)
		}
		at = func(i, j int64) int64 { return j*rows + i }
	default: // W is [out, in]
		if w.Shape[0] != rows || w.Shape[1] != cols {
			return fmt.Errorf("LoRA B·A is [%d, %d], base weight %v", rows, cols, w.Shape)
		}
		at = func(i, j int64) int64 { return i*cols + j }
	}
	v := slices.Clone(w.Values)
	for i := range rows {
		for j := range cols {
			var s float64
			for k := range int64(r) {
				s += b.Values[i*int64(r)+k] * a.Values[k*cols+j]
			}
			v[at(i, j)] += scaling * s
		}
	}
	if p.M != nil {
		// Linear: the norm of each output row (over in); Embedding: of each dim column (over vocab). In the
		// logical orientation both are norms over j for a fixed i.
		if int64(len(p.M.Values)) != rows {
			return fmt.Errorf("magnitude has %d values, want %d", len(p.M.Values), rows)
		}
		for i := range rows {
			var ss float64
			for j := range cols {
				ss += v[at(i, j)] * v[at(i, j)]
			}
			f := p.M.Values[i] / math.Sqrt(ss)
			for j := range cols {
				v[at(i, j)] *= f
			}
		}
	}
	out[m+".weight"] = RefTensor{Shape: w.Shape, Values: v}
	if p.BBias != nil {
		bias, ok := out[m+".bias"]
		if !ok {
			return fmt.Errorf("lora_B.bias but the base has no %s.bias", m)
		}
		if len(bias.Values) != len(p.BBias.Values) {
			return fmt.Errorf("lora_B.bias has %d values, base bias %d", len(p.BBias.Values), len(bias.Values))
		}
		nb := slices.Clone(bias.Values)
		for i := range nb {
			nb[i] += scaling * p.BBias.Values[i]
		}
		out[m+".bias"] = RefTensor{Shape: bias.Shape, Values: nb}
	}
	return nil
}
