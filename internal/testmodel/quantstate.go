package testmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
)

// QuantState is the non-tensor part of a bitsandbytes 4-bit quant state: the packed JSON blob stored as
// <weight>.quant_state.bitsandbytes__<type> (model-formats.md §3.3).
type QuantState struct {
	QuantType string       // "nf4" or "fp4"
	Blocksize int          // 4-bit block size
	DType     tensor.DType // dtype the dequantized weight is produced in
	Shape     []int64      // the original weight shape, [out, in]
	Nested    bool         // double quant: the nested_* fields below are present
	// NestedBlocksize is the block size of the double quantization (256 in every bitsandbytes version).
	NestedBlocksize int
	NestedDType     string  // "float32"
	NestedOffset    float32 // mean of the original absmax
}

// Encode renders the blob exactly as bitsandbytes' pack_dict_to_tensor(json.dumps(...)) does: Python's default
// separators ", " and ": ", keys in the order quant_type, blocksize, dtype, shape, then the nested_* keys, and
// nested_offset printed as Python prints the float32 offset widened to a double.
func (q QuantState) Encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"quant_type": %s, "blocksize": %d, "dtype": %s, "shape": [`, pyString(q.QuantType),
		q.Blocksize, pyString(q.DType.TorchName()))
	for i, d := range q.Shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	if q.Nested {
		fmt.Fprintf(&b, `, "nested_blocksize": %d, "nested_dtype": %s, "nested_offset": %s`, q.NestedBlocksize,
			pyString(q.NestedDType), PyFloat(float64(q.NestedOffset)))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// pyString renders an ASCII string as Python's json.dumps would.
func pyString(s string) string {
	out, _ := json.Marshal(s) // a string always encodes
	return string(out)
}

// PyFloat formats a float64 as Python's repr (and json.dumps) does: the shortest digits that round-trip, fixed
// notation with at least one fractional digit for exponents in [-4, 16), else d.ddde±XX; NaN, Infinity,
// -Infinity as json.dumps writes them.
func PyFloat(x float64) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "Infinity"
	case math.IsInf(x, -1):
		return "-Infinity"
	case x == 0:
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	s := strconv.FormatFloat(x, 'e', -1, 64) // -d.dddde±XX
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	epos := strings.IndexByte(s, 'e')
	mant, exp := s[:epos], s[epos+1:]
	e, _ := strconv.Atoi(exp) // FormatFloat always writes a valid exponent
	digits := strings.Replace(mant, ".", "", 1)
	if e < -4 || e >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if e < 0 {
			es, e = "-", -e
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, e)
	}
	if e < 0 {
		return sign + "0." + strings.Repeat("0", -e-1) + digits
	}
	if len(digits) <= e+1 {
		return sign + digits + strings.Repeat("0", e+1-len(digits)) + ".0"
	}
	return sign + digits[:e+1] + "." + digits[e+1:]
}

// ParseQuantState parses a quant-state blob. It accepts any key order and whitespace, requires quant_type,
// blocksize, dtype and shape, and treats the nested_* keys as all-or-nothing.
func ParseQuantState(blob []byte) (QuantState, error) {
	// Python's dict lookups are case-sensitive, unlike encoding/json's field matching: decode into a map and
	// look the exact keys up.
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(blob))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return QuantState{}, fmt.Errorf("quant state is not a JSON object: %v", err)
	}
	if dec.More() {
		return QuantState{}, fmt.Errorf("quant state has data after its JSON object")
	}
	var raw struct {
		QuantType       *string
		Blocksize       *json.Number
		DType           *string
		Shape           []json.Number
		NestedBlocksize *json.Number
		NestedDType     *string
		NestedOffset    *json.Number
	}
	for key, dst := range map[string]any{"quant_type": &raw.QuantType, "blocksize": &raw.Blocksize,
		"dtype": &raw.DType, "shape": &raw.Shape, "nested_blocksize": &raw.NestedBlocksize,
		"nested_dtype": &raw.NestedDType, "nested_offset": &raw.NestedOffset} {
		v, ok := obj[key]
		if !ok {
			continue
		}
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			return QuantState{}, fmt.Errorf("quant state: %s: %v", key, err)
		}
	}
	var q QuantState
	if raw.QuantType == nil || (*raw.QuantType != "nf4" && *raw.QuantType != "fp4") {
		return q, fmt.Errorf("quant state: quant_type must be \"nf4\" or \"fp4\"")
	}
	q.QuantType = *raw.QuantType
	if raw.Blocksize == nil {
		return q, fmt.Errorf("quant state: no blocksize")
	}
	bs, err := raw.Blocksize.Int64()
	if err != nil || bs < 2 || bs > 1<<20 || bs&(bs-1) != 0 {
		return q, fmt.Errorf("quant state: invalid blocksize %s", raw.Blocksize)
	}
	q.Blocksize = int(bs)
	if raw.DType == nil {
		return q, fmt.Errorf("quant state: no dtype")
	}
	if q.DType, err = tensor.ParseTorchDType(*raw.DType); err != nil || !(q.DType == tensor.BF16 ||
		q.DType == tensor.F16 || q.DType == tensor.F32) {
		return q, fmt.Errorf("quant state: dtype %q is not bfloat16, float16 or float32", *raw.DType)
	}
	if len(raw.Shape) == 0 {
		return q, fmt.Errorf("quant state: no shape")
	}
	for _, d := range raw.Shape {
		v, err := d.Int64()
		if err != nil || v < 0 {
			return q, fmt.Errorf("quant state: invalid shape entry %s", d)
		}
		q.Shape = append(q.Shape, v)
	}
	if _, ok := tensor.NumElements(q.Shape); !ok {
		return q, fmt.Errorf("quant state: shape %v overflows", q.Shape)
	}
	n := 0
	for _, p := range []bool{raw.NestedBlocksize != nil, raw.NestedDType != nil, raw.NestedOffset != nil} {
		if p {
			n++
		}
	}
	switch n {
	case 0:
		return q, nil
	case 3:
	default:
		return q, fmt.Errorf("quant state: nested_blocksize, nested_dtype and nested_offset must come together")
	}
	q.Nested = true
	nb, err := raw.NestedBlocksize.Int64()
	if err != nil || nb <= 0 || nb > 1<<20 {
		return q, fmt.Errorf("quant state: invalid nested_blocksize %s", raw.NestedBlocksize)
	}
	q.NestedBlocksize = int(nb)
	q.NestedDType = *raw.NestedDType
	if q.NestedDType != "float32" {
		return q, fmt.Errorf("quant state: nested_dtype %q is not float32", q.NestedDType)
	}
	off, err := strconv.ParseFloat(raw.NestedOffset.String(), 64)
	if err != nil || math.IsNaN(off) || math.IsInf(float64(float32(off)), 0) {
		return q, fmt.Errorf("quant state: invalid nested_offset %s", raw.NestedOffset)
	}
	q.NestedOffset = float32(off)
	return q, nil
}

// quantStateKey is the key suffix of the blob for a quant type.
func quantStateKey(q Quant) string { return ".quant_state.bitsandbytes__" + string(q) }
