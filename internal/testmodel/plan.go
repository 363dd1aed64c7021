package testmodel

import (
	"fmt"
	"slices"

	"github.com/hubsync/hubsync/internal/tensor"
)

// The suffixes of a 4-bit weight's quant-state tensors (model-formats.md §3.2), after "<module>.weight".
const (
	CompAbsmax         = ".absmax"
	CompQuantMap       = ".quant_map"
	CompNestedAbsmax   = ".nested_absmax"
	CompNestedQuantMap = ".nested_quant_map"
)

// Weight is one parameter of the base model as a merge sees it: a weight or bias, 16-bit or 4-bit.
type Weight struct {
	Name      string       // checkpoint key, e.g. model.layers.0.self_attn.q_proj.weight
	Module    string       // owning module path
	Shape     []int64      // logical shape: [out, in] for a linear weight, [in, out] when stored fan_in_fan_out
	DType     tensor.DType // stored dtype for 16-bit tensors; the quant_state dtype for 4-bit ones
	Quantized bool         // stored as bitsandbytes 4-bit (see Tensors for the component keys)
}

// Tensor is one key of the written checkpoint.
type Tensor struct {
	Name   string
	DType  tensor.DType
	Shape  []int64
	Weight string // the Weight this key belongs to (its own name for plain tensors)
	File   string // weight file (relative to the model directory)
}

// BaseInfo describes a generated (or planned) base model.
type BaseInfo struct {
	Dir     string       // model directory ("" for a plan that was not written)
	Spec    BaseSpec     // the spec with defaults filled in
	DType   tensor.DType // the base's dtype (config torch_dtype; the quant_state dtype of 4-bit weights)
	Modules []Module     // modules in model order
	Weights []Weight     // parameters in model order (4-bit components are not listed; see Tensors)
	Tensors []Tensor     // every safetensors key written, in model order
	Files   []string     // weight files in shard order: model.safetensors, or model-0000K-of-0000N.safetensors
	Indexed bool         // model.safetensors.index.json was written
	// TotalSize is the sum of all tensors' data bytes (the index's metadata.total_size).
	TotalSize int64
}

// Weight returns the parameter called name.
func (b *BaseInfo) Weight(name string) (Weight, bool) {
	for _, w := range b.Weights {
		if w.Name == name {
			return w, true
		}
	}
	return Weight{}, false
}

// Module returns the module at path.
func (b *BaseInfo) Module(path string) (Module, bool) {
	for _, m := range b.Modules {
		if m.Path == path {
			return m, true
		}
	}
	return Module{}, false
}

// Tensor returns the written key called name.
func (b *BaseInfo) Tensor(name string) (Tensor, bool) {
	for _, t := range b.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// QuantizedWeights lists the names of the 4-bit weights.
func (b *BaseInfo) QuantizedWeights() []string {
	var out []string
	for _, w := range b.Weights {
		if w.Quantized {
			out = append(out, w.Name)
		}
	}
	return out
}

// QuantTensors returns the safetensors entries a 4-bit weight of the given shape is stored as under this spec,
// in bitsandbytes' state-dict order: weight, absmax, quant_map, [nested_absmax, nested_quant_map], quant_state.
// The blob's length depends on the double-quant offset, so pass the blob's exact length as blobLen.
func (s BaseSpec) QuantTensors(weight string, shape []int64, blobLen int) ([]Tensor, error) {
	n, ok := tensor.NumElements(shape)
	if !ok || n == 0 {
		return nil, fmt.Errorf("testmodel: %s: invalid shape %v", weight, shape)
	}
	packed := (n + 1) / 2
	item := int64(s.QuantStorage.Size())
	if packed%item != 0 {
		return nil, fmt.Errorf("testmodel: %s: %d packed bytes are not a multiple of the %s quant storage item "+
			"size (bitsandbytes would truncate them)", weight, packed, s.QuantStorage)
	}
	nblocks := (n + int64(s.Blocksize) - 1) / int64(s.Blocksize)
	out := []Tensor{{Name: weight, DType: s.QuantStorage, Shape: []int64{packed / item, 1}}}
	if s.DoubleQuant {
		out = append(out,
			Tensor{Name: weight + CompAbsmax, DType: tensor.U8, Shape: []int64{nblocks}},
			Tensor{Name: weight + CompQuantMap, DType: tensor.F32, Shape: []int64{16}},
			Tensor{Name: weight + CompNestedAbsmax, DType: tensor.F32,
				Shape: []int64{(nblocks + nestedBlocksize - 1) / nestedBlocksize}},
			Tensor{Name: weight + CompNestedQuantMap, DType: tensor.F32, Shape: []int64{256}})
	} else {
		out = append(out,
			Tensor{Name: weight + CompAbsmax, DType: tensor.F32, Shape: []int64{nblocks}},
			Tensor{Name: weight + CompQuantMap, DType: tensor.F32, Shape: []int64{16}})
	}
	out = append(out, Tensor{Name: weight + quantStateKey(s.Quant), DType: tensor.U8, Shape: []int64{int64(blobLen)}})
	for i := range out {
		out[i].Weight = weight
	}
	return out, nil
}

// PlanBase derives everything about a base without writing it (nor generating its data, except for double-quant
// offsets, which fix the length of each quant-state blob: their computation makes one pass over each 4-bit
// weight's random data unless FastRandomCodes is set).
func PlanBase(spec BaseSpec) (*BaseInfo, error) {
	s, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	return planBase(s, newStateCache(s, 0).blobLen)
}

// planBase plans a normalized spec; blobLen gives the length of each 4-bit weight's quant-state blob.
func planBase(s BaseSpec, blobLen func(weight string, shape []int64) (int, error)) (*BaseInfo, error) {
	info := &BaseInfo{Spec: s, DType: s.DType, Modules: s.modules()}
	type group struct {
		tensors []Tensor
		size    int64
	}
	var groups []group
	for _, m := range info.Modules {
		var g group
		wname := m.WeightName()
		shape := []int64{m.Out, m.In}
		switch {
		case m.Kind == KindNorm:
			shape = []int64{m.Out}
		case m.Kind == KindEmbedding:
			shape = []int64{m.In, m.Out} // [num_embeddings, embedding_dim]
		case m.Kind == KindLinear && s.FanInFanOut && m.Path != "lm_head":
			shape = []int64{m.In, m.Out} // Conv1D layers; GPT-2's lm_head is a plain Linear
		}
		info.Weights = append(info.Weights, Weight{Name: wname, Module: m.Path, Shape: shape, DType: s.DType,
			Quantized: m.Quantized})
		var bias []Tensor
		if m.Bias {
			bname := m.Path + ".bias"
			info.Weights = append(info.Weights, Weight{Name: bname, Module: m.Path, Shape: []int64{m.Out},
				DType: s.DType})
			bias = []Tensor{{Name: bname, DType: s.DType, Shape: []int64{m.Out}, Weight: bname}}
		}
		if m.Quantized {
			n, err := blobLen(wname, shape)
			if err != nil {
				return nil, err
			}
			qts, err := s.QuantTensors(wname, shape, n)
			if err != nil {
				return nil, err
			}
			// State-dict order: weight, bias, then the quant-state components.
			g.tensors = append(append(append(g.tensors, qts[0]), bias...), qts[1:]...)
		} else {
			g.tensors = append(append(g.tensors, Tensor{Name: wname, DType: s.DType, Shape: shape, Weight: wname}),
				bias...)
		}
		for _, t := range g.tensors {
			n, _ := tensor.NumElements(t.Shape)
			g.size += tensor.ByteSize(t.DType, n)
		}
		info.TotalSize += g.size
		groups = append(groups, g)
	}
	// huggingface_hub's greedy split (model-formats.md §2.5), one module's tensors kept together.
	var shards [][]Tensor
	var cur []Tensor
	var curSize int64
	for _, g := range groups {
		switch {
		case s.ShardSize > 0 && g.size > s.ShardSize:
			shards = append(shards, g.tensors)
			continue
		case s.ShardSize > 0 && curSize+g.size > s.ShardSize && len(cur) > 0:
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, g.tensors...)
		curSize += g.size
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	info.Indexed = len(shards) > 1
	file := map[string]string{}
	for i, sh := range shards {
		name := "model.safetensors"
		if info.Indexed {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
		info.Files = append(info.Files, name)
		for _, t := range sh {
			file[t.Name] = name
		}
	}
	for _, g := range groups {
		for _, t := range g.tensors {
			t.File = file[t.Name]
			t.Shape = slices.Clone(t.Shape)
			info.Tensors = append(info.Tensors, t)
		}
	}
	return info, nil
}
