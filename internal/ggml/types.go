// Package ggml holds ggml's tensor types (the values GGUF files store) and Go ports of ggml's reference
// quantizers, byte-identical to llama.cpp v0.5.0's quantize_row_*_ref without an importance matrix.
package ggml

import "fmt"

// Type is a ggml_type: a tensor's element encoding in a GGUF file.
type Type uint32

// The ggml types hubsync reads or writes (values of ggml.h's enum ggml_type).
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q4_1 Type = 3
	Q5_0 Type = 6
	Q5_1 Type = 7
	Q8_0 Type = 8
	Q4_K Type = 12
	Q5_K Type = 13
	Q6_K Type = 14
	BF16 Type = 30
)

type typeInfo struct {
	name       string
	blockElems int
	blockBytes int
}

var types = map[Type]typeInfo{
	F32:  {"F32", 1, 4},
	F16:  {"F16", 1, 2},
	Q4_0: {"Q4_0", 32, 18},
	Q4_1: {"Q4_1", 32, 20},
	Q5_0: {"Q5_0", 32, 22},
	Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34},
	Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176},
	Q6_K: {"Q6_K", 256, 210},
	BF16: {"BF16", 1, 2},
}

// String is ggml's name of the type ("Q4_K"), or "ggml_type(N)" for one hubsync does not know.
func (t Type) String() string {
	if i, ok := types[t]; ok {
		return i.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// Known reports whether hubsync knows the type's block layout.
func (t Type) Known() bool { _, ok := types[t]; return ok }

// BlockElems is the number of elements one block holds (1 for the float types, 32 or 256 for quantized ones).
func (t Type) BlockElems() int { return types[t].blockElems }

// BlockBytes is the encoded size of one block.
func (t Type) BlockBytes() int { return types[t].blockBytes }

// Quantized reports whether the type is a block-quantized one (not F32, F16 or BF16).
func (t Type) Quantized() bool { return t.BlockElems() > 1 }

// RowSize is the encoded size of a row of ncols elements, as ggml_row_size computes it. It fails when the type
// is unknown or ncols is not a multiple of the block size.
func (t Type) RowSize(ncols int) (int, error) {
	i, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("ggml: unknown tensor type %d", uint32(t))
	}
	if ncols < 0 || ncols%i.blockElems != 0 {
		return 0, fmt.Errorf("ggml: a row of %d elements cannot be stored as %s (blocks of %d)", ncols, i.name, i.blockElems)
	}
	return ncols / i.blockElems * i.blockBytes, nil
}
