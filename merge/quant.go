package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
)

// Key suffixes of a bitsandbytes 4-bit weight's components (model-formats.md §3.2). A weight "P.weight" is 4-bit
// exactly when "P.weight" + quantStatePrefix + "nf4" or "fp4" exists.
const (
	quantStatePrefix    = ".quant_state.bitsandbytes__"
	suffixAbsmax        = ".absmax"
	suffixQuantMap      = ".quant_map"
	suffixNestedAbsmax  = ".nested_absmax"
	suffixNestedQuantMp = ".nested_quant_map"
)

// nf4Code is bitsandbytes' NF4 codebook, indexed by the 4-bit code (model-formats.md §4.1). Every literal is
// exactly representable in float32.
var nf4Code = [16]float32{
	-1.0,
	-0.6961928009986877,
	-0.5250730514526367,
	-0.39491748809814453,
	-0.28444138169288635,
	-0.18477343022823334,
	-0.09105003625154495,
	0.0,
	0.07958029955625534,
	0.16093020141124725,
	0.24611230194568634,
	0.33791524171829224,
	0.44070982933044434,
	0.5626170039176941,
	0.7229568362236023,
	1.0,
}

// fp4Bits is bitsandbytes' FP4 codebook as float32 bit patterns, indexed by the 4-bit code in bit-pattern order
// (model-formats.md §4.2): the raw E2M1 values divided by 12 in float32. Bit 3 is the sign.
var fp4Bits = [16]uint32{
	0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
	0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
}

// CodeTable returns the built-in 4-bit codebook of quantType ("nf4" or "fp4"), the table bitsandbytes' dequant
// kernels use; nil for another type.
func CodeTable(quantType string) *[16]float32 {
	switch quantType {
	case "nf4":
		t := nf4Code
		return &t
	case "fp4":
		var t [16]float32
		for i, b := range fp4Bits {
			t[i] = math.Float32frombits(b)
		}
		return &t
	}
	return nil
}

// QuantState is the parsed "quant_state.bitsandbytes__<type>" blob of a 4-bit weight (model-formats.md §3.3).
type QuantState struct {
	// QuantType is "nf4" or "fp4".
	QuantType string
	// Blocksize is the number of consecutive (flattened) elements sharing one absmax.
	Blocksize int
	// DType is the dtype bitsandbytes dequantizes to (the weight's original dtype): BF16, F16 or F32.
	DType tensor.DType
	// Shape is the original weight's shape ([out_features, in_features] for a Linear).
	Shape []int64
	// Nested reports double quantization: absmax is stored as 8-bit codes of a second blockwise quantization.
	Nested bool
	// NestedBlocksize is the block size of the second quantization (256 in every bitsandbytes release).
	NestedBlocksize int
	// NestedOffset is added to every dequantized absmax (the mean subtracted before the second quantization).
	NestedOffset float32
}

// NumElements is the number of elements of the original weight.
func (q *QuantState) NumElements() int64 {
	n, _ := tensor.NumElements(q.Shape)
	return n
}

// NumBlocks is the number of absmax blocks: ceil(elements / blocksize).
func (q *QuantState) NumBlocks() int64 {
	return ceilDiv(q.NumElements(), int64(q.Blocksize))
}

// NumNestedBlocks is the number of nested_absmax entries: ceil(blocks / nested blocksize).
func (q *QuantState) NumNestedBlocks() int64 {
	if !q.Nested {
		return 0
	}
	return ceilDiv(q.NumBlocks(), int64(q.NestedBlocksize))
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// maxQuantElements bounds a 4-bit weight's element count (2^48), far above any real layer, so that byte and block
// arithmetic never overflows.
const maxQuantElements = 1 << 48

// ParseQuantState parses and validates the JSON blob bitsandbytes packs into the quant_state key: quant_type,
// blocksize, dtype and shape, plus nested_blocksize, nested_dtype and nested_offset under double quantization.
// Unknown keys are ignored (QuantState.from_dict ignores them too); missing or ill-typed known keys are errors.
func ParseQuantState(blob []byte) (*QuantState, error) {
	dec := json.NewDecoder(bytes.NewReader(blob))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("quant state is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("quant state has trailing data after the JSON object")
	}
	if raw == nil {
		return nil, fmt.Errorf("quant state is null")
	}
	q := &QuantState{}
	var err error
	if q.QuantType, err = jsonString(raw, "quant_type"); err != nil {
		return nil, err
	}
	if q.QuantType != "nf4" && q.QuantType != "fp4" {
		return nil, fmt.Errorf("quant_type %q is not nf4 or fp4", q.QuantType)
	}
	bs, err := jsonInt(raw, "blocksize")
	if err != nil {
		return nil, err
	}
	if bs < 32 || bs > 4096 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("blocksize %d is not a power of two between 32 and 4096", bs)
	}
	q.Blocksize = int(bs)
	ds, err := jsonString(raw, "dtype")
	if err != nil {
		return nil, err
	}
	if q.DType, err = floatTorchDType(ds); err != nil {
		return nil, fmt.Errorf("dtype: %w", err)
	}
	shapeRaw, ok := raw["shape"]
	if !ok || string(bytes.TrimSpace(shapeRaw)) == "null" {
		return nil, fmt.Errorf("shape is missing: the weight cannot be dequantized without it")
	}
	var shapeRawDims []json.RawMessage
	if err := json.Unmarshal(shapeRaw, &shapeRawDims); err != nil {
		return nil, fmt.Errorf("shape is not a list of integers: %w", err)
	}
	shape := make([]json.Number, len(shapeRawDims))
	for i, d := range shapeRawDims {
		n, ok := jsonNumber(d)
		if !ok {
			return nil, fmt.Errorf("shape[%d] = %s is not an integer", i, d)
		}
		shape[i] = n
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("shape is empty")
	}
	for i, d := range shape {
		v, err := strconv.ParseInt(d.String(), 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("shape[%d] = %s is not a non-negative integer", i, d)
		}
		q.Shape = append(q.Shape, v)
	}
	n, ok := tensor.NumElements(q.Shape)
	if !ok || n > maxQuantElements {
		return nil, fmt.Errorf("shape %v is too large", q.Shape)
	}
	_, hasNBS := raw["nested_blocksize"]
	_, hasNDT := raw["nested_dtype"]
	_, hasNOff := raw["nested_offset"]
	if hasNBS || hasNDT || hasNOff {
		if !(hasNBS && hasNDT && hasNOff) {
			return nil, fmt.Errorf("double quantization needs nested_blocksize, nested_dtype and nested_offset together")
		}
		q.Nested = true
		nbs, err := jsonInt(raw, "nested_blocksize")
		if err != nil {
			return nil, err
		}
		if nbs <= 0 || nbs > 1<<20 {
			return nil, fmt.Errorf("nested_blocksize %d is out of range", nbs)
		}
		q.NestedBlocksize = int(nbs)
		nd, err := jsonString(raw, "nested_dtype")
		if err != nil {
			return nil, err
		}
		if dt, err := floatTorchDType(nd); err != nil || dt != tensor.F32 {
			return nil, fmt.Errorf("nested_dtype %q is not float32", nd)
		}
		off, ok := jsonNumber(raw["nested_offset"])
		if !ok {
			return nil, fmt.Errorf("nested_offset is not a number")
		}
		f, err := strconv.ParseFloat(off.String(), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
			return nil, fmt.Errorf("nested_offset %s is not a finite float32", off)
		}
		// Python prints the float32 offset as the shortest double that round-trips; converting back is exact.
		q.NestedOffset = float32(f)
	}
	return q, nil
}

func jsonString(raw map[string]json.RawMessage, key string) (string, error) {
	v, ok := raw[key]
	if !ok {
		return "", fmt.Errorf("%s is missing", key)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", key)
	}
	return s, nil
}

func jsonInt(raw map[string]json.RawMessage, key string) (int64, error) {
	v, ok := raw[key]
	if !ok {
		return 0, fmt.Errorf("%s is missing", key)
	}
	n, ok := jsonNumber(v)
	if !ok {
		return 0, fmt.Errorf("%s is not an integer", key)
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s = %s is not an integer", key, n)
	}
	return i, nil
}

// floatTorchDType parses a torch dtype name that must be float32, float16 or bfloat16.
func floatTorchDType(s string) (tensor.DType, error) {
	dt, err := tensor.ParseTorchDType(s)
	if err != nil {
		return tensor.Invalid, err
	}
	if !isFloat(dt) {
		return tensor.Invalid, fmt.Errorf("%q is not float32, float16 or bfloat16", s)
	}
	return dt, nil
}

// isFloat reports whether d is one of the float types the merge reads and writes.
func isFloat(d tensor.DType) bool { return d == tensor.F32 || d == tensor.F16 || d == tensor.BF16 }

// quantTypeFromKey returns the quant type named by a quant_state key's suffix, or "".
func quantTypeFromKey(key string) (weight, quantType string) {
	i := strings.LastIndex(key, quantStatePrefix)
	if i < 0 {
		return "", ""
	}
	return key[:i], key[i+len(quantStatePrefix):]
}

// resolveScales computes the float32 scale of blocks [b0, b0+len(dst)) of a double-quantized weight:
// scale[b] = fl32(fl32(nestedMap[code[b]] · nestedAbsmax[b / nestedBlocksize]) + offset), with the two roundings
// bitsandbytes performs (dequantize_blockwise in float32, then absmax += offset). The explicit float32
// conversions forbid fusing the multiply and add (Go spec), so the result is bit-exact on every architecture.
func resolveScales(dst []float32, codes []byte, b0 int64, nestedMap *[256]float32, nestedAbsmax []float32, nestedBlocksize int, offset float32) {
	nbs := int64(nestedBlocksize)
	for i := range dst {
		b := b0 + int64(i)
		p := float32(nestedMap[codes[i]] * nestedAbsmax[b/nbs])
		dst[i] = float32(p + offset)
	}
}
