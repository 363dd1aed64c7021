package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// GGUF file constants (ggml's gguf.cpp).
const (
	// Magic is the first four bytes of every GGUF file.
	Magic = "GGUF"
	// Version is the GGUF version hubsync writes and the one its reader accepts.
	Version = 3
	// Alignment is GGUF_DEFAULT_ALIGNMENT: the data section and every tensor start at a multiple of it.
	Alignment = 32
	// MaxNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME 64 includes the NUL).
	MaxNameLen = 63
	// MaxDims is GGML_MAX_DIMS.
	MaxDims = 4
	// maxLength caps strings and arrays, as GGUF_MAX_STRING_LENGTH / GGUF_MAX_ARRAY_ELEMENTS do.
	maxLength = 1 << 30
)

// ValueType is a GGUF metadata value type (gguf_type).
type ValueType uint32

// The GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING",
	"ARRAY", "UINT64", "INT64", "FLOAT64"}

// String is gguf-py's name of the type ("UINT32").
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("gguf_type(%d)", uint32(t))
}

// elemSize is the encoded size of a fixed-size value type (0 for STRING, ARRAY and unknown types).
func (t ValueType) elemSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata key-value pair. Value holds the Go type of Type: uint8, int8, uint16, int16, uint32, int32,
// float32, bool, string, uint64, int64 or float64; for an ARRAY, Value is a slice of the element type
// ([]string, []int32, []float32, …) and ElemType names it.
type KV struct {
	Key      string
	Type     ValueType
	ElemType ValueType
	Value    any
}

// kvType returns the GGUF type of a Go value hubsync writes (and, for slices, the element type).
func kvType(v any) (t, elem ValueType, err error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, nil
	case int8:
		return TypeInt8, 0, nil
	case uint16:
		return TypeUint16, 0, nil
	case int16:
		return TypeInt16, 0, nil
	case uint32:
		return TypeUint32, 0, nil
	case int32:
		return TypeInt32, 0, nil
	case float32:
		return TypeFloat32, 0, nil
	case bool:
		return TypeBool, 0, nil
	case string:
		return TypeString, 0, nil
	case uint64:
		return TypeUint64, 0, nil
	case int64:
		return TypeInt64, 0, nil
	case float64:
		return TypeFloat64, 0, nil
	case []uint8:
		return TypeArray, TypeUint8, nil
	case []int8:
		return TypeArray, TypeInt8, nil
	case []uint16:
		return TypeArray, TypeUint16, nil
	case []int16:
		return TypeArray, TypeInt16, nil
	case []uint32:
		return TypeArray, TypeUint32, nil
	case []int32:
		return TypeArray, TypeInt32, nil
	case []float32:
		return TypeArray, TypeFloat32, nil
	case []bool:
		return TypeArray, TypeBool, nil
	case []string:
		return TypeArray, TypeString, nil
	case []uint64:
		return TypeArray, TypeUint64, nil
	case []int64:
		return TypeArray, TypeInt64, nil
	case []float64:
		return TypeArray, TypeFloat64, nil
	}
	return 0, 0, fmt.Errorf("gguf: no GGUF type for a %T value", v)
}

// arrayLen is the element count of an array value (a slice kvType accepts).
func arrayLen(v any) int {
	switch a := v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	}
	return 0
}

// encoder appends GGUF's little-endian encodings to a buffer.
type encoder struct{ b bytes.Buffer }

func (e *encoder) u32(v uint32) { e.b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64) { e.b.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b.WriteString(s) }

// scalar encodes one non-array value.
func (e *encoder) scalar(v any) {
	var buf [8]byte
	switch x := v.(type) {
	case uint8:
		e.b.WriteByte(x)
	case int8:
		e.b.WriteByte(byte(x))
	case uint16:
		e.b.Write(binary.LittleEndian.AppendUint16(buf[:0], x))
	case int16:
		e.b.Write(binary.LittleEndian.AppendUint16(buf[:0], uint16(x)))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.b.WriteByte(1)
		} else {
			e.b.WriteByte(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	}
}

// kv encodes a key, its type and its value.
func (e *encoder) kv(kv KV) error {
	if kv.Key == "" {
		return fmt.Errorf("gguf: empty metadata key")
	}
	t, elem, err := kvType(kv.Value)
	if err != nil {
		return fmt.Errorf("gguf: key %s: %w", kv.Key, err)
	}
	e.str(kv.Key)
	e.u32(uint32(t))
	if t != TypeArray {
		e.scalar(kv.Value)
		return nil
	}
	n := arrayLen(kv.Value)
	e.u32(uint32(elem))
	e.u64(uint64(n))
	switch a := kv.Value.(type) {
	case []string:
		for _, s := range a {
			e.str(s)
		}
	case []int32:
		for _, x := range a {
			e.u32(uint32(x))
		}
	case []float32:
		for _, x := range a {
			e.u32(math.Float32bits(x))
		}
	case []uint32:
		for _, x := range a {
			e.u32(x)
		}
	default:
		forEach(a, e.scalar)
	}
	return nil
}

// forEach calls f on every element of an array value.
func forEach(v any, f func(any)) {
	switch a := v.(type) {
	case []uint8:
		for _, x := range a {
			f(x)
		}
	case []int8:
		for _, x := range a {
			f(x)
		}
	case []uint16:
		for _, x := range a {
			f(x)
		}
	case []int16:
		for _, x := range a {
			f(x)
		}
	case []uint32:
		for _, x := range a {
			f(x)
		}
	case []int32:
		for _, x := range a {
			f(x)
		}
	case []float32:
		for _, x := range a {
			f(x)
		}
	case []bool:
		for _, x := range a {
			f(x)
		}
	case []string:
		for _, x := range a {
			f(x)
		}
	case []uint64:
		for _, x := range a {
			f(x)
		}
	case []int64:
		for _, x := range a {
			f(x)
		}
	case []float64:
		for _, x := range a {
			f(x)
		}
	}
}

// padTo rounds n up to a multiple of align.
func padTo(n, align int64) int64 { return (n + align - 1) / align * align }

// encodeHeader encodes a GGUF v3 header: magic, version, counts, the KVs in order, the tensor infos in order,
// and zero padding up to the alignment (the start of the data section). Tensor offsets must already be laid out.
func encodeHeader(kvs []KV, tensors []TensorInfo) ([]byte, error) {
	var e encoder
	e.b.WriteString(Magic)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if seen[kv.Key] {
			return nil, fmt.Errorf("gguf: metadata key %s written twice", kv.Key)
		}
		seen[kv.Key] = true
		if err := e.kv(kv); err != nil {
			return nil, err
		}
	}
	for _, t := range tensors {
		if len(t.Name) > MaxNameLen {
			return nil, fmt.Errorf("gguf: tensor name %q is longer than %d bytes", t.Name, MaxNameLen)
		}
		if len(t.Dims) == 0 || len(t.Dims) > MaxDims {
			return nil, fmt.Errorf("gguf: tensor %s has %d dimensions", t.Name, len(t.Dims))
		}
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(t.Offset))
	}
	if len(tensors) > 0 {
		e.b.Write(make([]byte, padTo(int64(e.b.Len()), Alignment)-int64(e.b.Len())))
	}
	return e.b.Bytes(), nil
}
