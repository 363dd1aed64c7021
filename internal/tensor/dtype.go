// Package tensor holds the small vocabulary that the merge engine and the exporters share: element types,
// shapes and the float32 ↔ bf16/fp16 conversions with torch's rounding.
package tensor

import (
	"fmt"
	"math"
	"strings"
)

// DType is a safetensors element type.
type DType uint8

// The safetensors dtypes, in the reference enum's declared order ("increasing alignment").
// The order matters: safetensors writers sort tensors by dtype descending in this order.
const (
	Invalid DType = iota
	BOOL
	F4
	F6E2M3
	F6E3M2
	U8
	I8
	F8E5M2
	F8E4M3
	F8E8M0
	F8E4M3FNUZ
	F8E5M2FNUZ
	I16
	U16
	F16
	BF16
	I32
	U32
	F32
	C64
	F64
	I64
	U64
)

var dtypeNames = [...]string{
	Invalid:    "INVALID",
	BOOL:       "BOOL",
	F4:         "F4",
	F6E2M3:     "F6_E2M3",
	F6E3M2:     "F6_E3M2",
	U8:         "U8",
	I8:         "I8",
	F8E5M2:     "F8_E5M2",
	F8E4M3:     "F8_E4M3",
	F8E8M0:     "F8_E8M0",
	F8E4M3FNUZ: "F8_E4M3FNUZ",
	F8E5M2FNUZ: "F8_E5M2FNUZ",
	I16:        "I16",
	U16:        "U16",
	F16:        "F16",
	BF16:       "BF16",
	I32:        "I32",
	U32:        "U32",
	F32:        "F32",
	C64:        "C64",
	F64:        "F64",
	I64:        "I64",
	U64:        "U64",
}

var dtypeBits = [...]int{
	BOOL: 8, F4: 4, F6E2M3: 6, F6E3M2: 6, U8: 8, I8: 8, F8E5M2: 8, F8E4M3: 8, F8E8M0: 8, F8E4M3FNUZ: 8,
	F8E5M2FNUZ: 8, I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64,
	U64: 64,
}

// String returns the safetensors token ("BF16", "F32", ...).
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Bits is the element size in bits (BOOL occupies 8). It is 0 for Invalid.
func (d DType) Bits() int {
	if int(d) < len(dtypeBits) {
		return dtypeBits[d]
	}
	return 0
}

// Size is the element size in bytes for byte-sized types; sub-byte types return 0.
func (d DType) Size() int { return d.Bits() / 8 }

// IsFloat16 reports whether d is one of the 16-bit float formats (F16, BF16).
func (d DType) IsFloat16() bool { return d == F16 || d == BF16 }

// ParseDType parses a safetensors dtype token. It is case-sensitive, as the reference reader is.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown safetensors dtype %q", s)
}

// TorchName is the dtype's torch name without the "torch." prefix ("bfloat16", "float16", "float32"), as
// config.json's torch_dtype and bitsandbytes' quant_state use it. Types with no common torch name return "".
func (d DType) TorchName() string {
	switch d {
	case F32:
		return "float32"
	case F16:
		return "float16"
	case BF16:
		return "bfloat16"
	case F64:
		return "float64"
	case U8:
		return "uint8"
	case I8:
		return "int8"
	case I16:
		return "int16"
	case I32:
		return "int32"
	case I64:
		return "int64"
	case BOOL:
		return "bool"
	}
	return ""
}

// ParseTorchDType parses a torch dtype name as found in config.json or a bitsandbytes quant_state
// ("bfloat16", "torch.float16", "float32", "half", "bf16", "fp16", "fp32", ...).
func ParseTorchDType(s string) (DType, error) {
	switch strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "torch.")) {
	case "float32", "float", "fp32", "f32":
		return F32, nil
	case "float16", "half", "fp16", "f16":
		return F16, nil
	case "bfloat16", "bf16":
		return BF16, nil
	case "float64", "double", "f64":
		return F64, nil
	case "uint8", "u8":
		return U8, nil
	case "int8", "i8":
		return I8, nil
	case "int16":
		return I16, nil
	case "int32":
		return I32, nil
	case "int64":
		return I64, nil
	case "bool":
		return BOOL, nil
	}
	return Invalid, fmt.Errorf("unknown torch dtype %q", s)
}

// NumElements multiplies out a shape. ok is false on overflow or a negative dimension.
func NumElements(shape []int64) (n int64, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > (1<<62)/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// ByteSize is the storage size of numel elements of d, rounded up to whole bytes.
func ByteSize(d DType, numel int64) int64 {
	return (numel*int64(d.Bits()) + 7) / 8
}

// FormatShape renders a shape the way torch prints it: [4096, 4096].
func FormatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", d)
	}
	b.WriteByte(']')
	return b.String()
}

// EqualShapes reports whether two shapes are identical.
func EqualShapes(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ULP is the spacing of dtype d's representable values at |x| (the subnormal spacing near zero). d is F16, BF16
// or F32 (anything else is treated as F32).
func ULP(d DType, x float64) float64 {
	mant, minExp := 23, -126
	switch d {
	case BF16:
		mant, minExp = 7, -126
	case F16:
		mant, minExp = 10, -14
	}
	_, e := math.Frexp(math.Abs(x)) // |x| = f·2^e, f in [0.5, 1)
	e--
	if x == 0 || e < minExp {
		e = minExp
	}
	return math.Ldexp(1, e-mant)
}
