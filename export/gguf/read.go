package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/hubsync/hubsync/internal/ggml"
)

// ErrFormat marks a malformed GGUF file; the reader's errors wrap it.
var ErrFormat = errors.New("gguf: malformed file")

// Header is a parsed GGUF header: metadata, tensor infos and where the data section lies.
type Header struct {
	Version uint32
	KVs     []KV
	Tensors []TensorInfo
	// Alignment is general.alignment, or 32.
	Alignment int64
	// DataOffset is the absolute offset of the data section; DataSize its length including the padding after
	// the last tensor.
	DataOffset, DataSize int64
}

// Get returns the KV with the given key.
func (h *Header) Get(key string) (KV, bool) {
	for _, kv := range h.KVs {
		if kv.Key == key {
			return kv, true
		}
	}
	return KV{}, false
}

// Tensor returns the tensor info with the given name.
func (h *Header) Tensor(name string) (TensorInfo, bool) {
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// FileSize is the length a complete file with this header has.
func (h *Header) FileSize() int64 { return h.DataOffset + h.DataSize }

// Parse parses a whole GGUF file held in memory, as strictly as ggml's reader and more: the file must end
// exactly after the padding of its last tensor.
func Parse(data []byte) (*Header, error) {
	h, err := ReadHeader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if h.FileSize() != int64(len(data)) {
		return nil, fmt.Errorf("%w: the header describes %d bytes, the file has %d", ErrFormat, h.FileSize(), len(data))
	}
	return h, nil
}

// ReadHeader reads a GGUF header (up to the start of the data section) from r and validates it as ggml's
// gguf.cpp does: version 2 or 3, unique non-empty keys, known value types, no nested arrays, strings and arrays
// below 2^30, BOOLs 0 or 1, a UINT32 power-of-two general.alignment, unique tensor names shorter than 64 bytes,
// 1–4 dimensions, known tensor types whose blocks divide ne[0], and offsets packed in info order with each
// tensor padded to the alignment. Allocation is bounded by the bytes actually read.
func ReadHeader(r io.Reader) (*Header, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 64<<10)}
	h, err := d.header()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated at byte %d", ErrFormat, d.n)
		}
		return nil, err
	}
	return h, nil
}

type decoder struct {
	r *bufio.Reader
	n int64
}

func formatf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

func (d *decoder) read(p []byte) error {
	n, err := io.ReadFull(d.r, p)
	d.n += int64(n)
	return err
}

func (d *decoder) u8() (uint8, error) {
	b, err := d.r.ReadByte()
	if err == nil {
		d.n++
	}
	return b, err
}

func (d *decoder) u16() (uint16, error) {
	var b [2]byte
	err := d.read(b[:])
	return binary.LittleEndian.Uint16(b[:]), err
}

func (d *decoder) u32() (uint32, error) {
	var b [4]byte
	err := d.read(b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

func (d *decoder) u64() (uint64, error) {
	var b [8]byte
	err := d.read(b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n >= maxLength {
		return "", formatf("string of %d bytes at byte %d", n, d.n)
	}
	var b bytes.Buffer // grows with what is read, so a lying length cannot make us allocate
	m, err := io.CopyN(&b, d.r, int64(n))
	d.n += m
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

func (d *decoder) boolean() (bool, error) {
	b, err := d.u8()
	if err != nil {
		return false, err
	}
	if b > 1 {
		return false, formatf("BOOL value %d at byte %d", b, d.n-1)
	}
	return b == 1, nil
}

// scalar reads one value of a non-array type.
func (d *decoder) scalar(t ValueType) (any, error) {
	switch t {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		v, err := d.u8()
		return int8(v), err
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		v, err := d.u16()
		return int16(v), err
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		v, err := d.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		return d.boolean()
	case TypeString:
		return d.str()
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		v, err := d.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := d.u64()
		return math.Float64frombits(v), err
	}
	return nil, formatf("value type %d at byte %d", uint32(t), d.n)
}

// array reads n elements of type t into a typed slice.
func (d *decoder) array(t ValueType, n uint64) (any, error) {
	capHint := int(min(n, 4096))
	switch t {
	case TypeString:
		out := make([]string, 0, capHint)
		for range n {
			s, err := d.str()
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case TypeInt32:
		out := make([]int32, 0, capHint)
		for range n {
			v, err := d.u32()
			if err != nil {
				return nil, err
			}
			out = append(out, int32(v))
		}
		return out, nil
	case TypeFloat32:
		out := make([]float32, 0, capHint)
		for range n {
			v, err := d.u32()
			if err != nil {
				return nil, err
			}
			out = append(out, math.Float32frombits(v))
		}
		return out, nil
	}
	vals := make([]any, 0, capHint)
	for range n {
		v, err := d.scalar(t)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	return typedSlice(t, vals), nil
}

// typedSlice converts decoded scalars of type t to the slice type KV documents.
func typedSlice(t ValueType, vals []any) any {
	conv := func(f func(v any)) {
		for _, v := range vals {
			f(v)
		}
	}
	switch t {
	case TypeUint8:
		out := make([]uint8, 0, len(vals))
		conv(func(v any) { out = append(out, v.(uint8)) })
		return out
	case TypeInt8:
		out := make([]int8, 0, len(vals))
		conv(func(v any) { out = append(out, v.(int8)) })
		return out
	case TypeUint16:
		out := make([]uint16, 0, len(vals))
		conv(func(v any) { out = append(out, v.(uint16)) })
		return out
	case TypeInt16:
		out := make([]int16, 0, len(vals))
		conv(func(v any) { out = append(out, v.(int16)) })
		return out
	case TypeUint32:
		out := make([]uint32, 0, len(vals))
		conv(func(v any) { out = append(out, v.(uint32)) })
		return out
	case TypeBool:
		out := make([]bool, 0, len(vals))
		conv(func(v any) { out = append(out, v.(bool)) })
		return out
	case TypeUint64:
		out := make([]uint64, 0, len(vals))
		conv(func(v any) { out = append(out, v.(uint64)) })
		return out
	case TypeInt64:
		out := make([]int64, 0, len(vals))
		conv(func(v any) { out = append(out, v.(int64)) })
		return out
	case TypeFloat64:
		out := make([]float64, 0, len(vals))
		conv(func(v any) { out = append(out, v.(float64)) })
		return out
	}
	return nil
}

func (d *decoder) kv() (KV, error) {
	key, err := d.str()
	if err != nil {
		return KV{}, err
	}
	if key == "" {
		return KV{}, formatf("empty metadata key at byte %d", d.n)
	}
	t, err := d.u32()
	if err != nil {
		return KV{}, err
	}
	kv := KV{Key: key, Type: ValueType(t)}
	if kv.Type != TypeArray {
		if kv.Value, err = d.scalar(kv.Type); err != nil {
			return KV{}, wrapKey(key, err)
		}
		return kv, nil
	}
	et, err := d.u32()
	if err != nil {
		return KV{}, err
	}
	kv.ElemType = ValueType(et)
	if kv.ElemType == TypeArray || kv.ElemType > TypeFloat64 {
		return KV{}, formatf("key %s: array of %s (nested arrays and unknown types are refused)", key, kv.ElemType)
	}
	n, err := d.u64()
	if err != nil {
		return KV{}, err
	}
	if n >= maxLength {
		return KV{}, formatf("key %s: array of %d elements", key, n)
	}
	if kv.Value, err = d.array(kv.ElemType, n); err != nil {
		return KV{}, wrapKey(key, err)
	}
	return kv, nil
}

func wrapKey(key string, err error) error {
	if errors.Is(err, ErrFormat) {
		return fmt.Errorf("key %s: %w", key, err)
	}
	return err
}

func (d *decoder) header() (*Header, error) {
	var magic [4]byte
	if err := d.read(magic[:]); err != nil {
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, formatf("magic %q, not %q", magic[:], Magic)
	}
	version, err := d.u32()
	if err != nil {
		return nil, err
	}
	if version != 2 && version != 3 {
		return nil, formatf("version %d (2 or 3 expected)", version)
	}
	nt, err := d.u64()
	if err != nil {
		return nil, err
	}
	nkv, err := d.u64()
	if err != nil {
		return nil, err
	}
	if nt > math.MaxInt64/8 || nkv > math.MaxInt64/8 {
		return nil, formatf("counts %d tensors, %d keys", nt, nkv)
	}
	h := &Header{Version: version, Alignment: Alignment}
	keys := make(map[string]bool)
	for range nkv {
		kv, err := d.kv()
		if err != nil {
			return nil, err
		}
		if keys[kv.Key] {
			return nil, formatf("duplicate key %s", kv.Key)
		}
		keys[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || bits.OnesCount32(a) != 1 {
				return nil, formatf("general.alignment must be a power-of-two UINT32, is %s %v", kv.Type, kv.Value)
			}
			h.Alignment = int64(a)
		}
		h.KVs = append(h.KVs, kv)
	}
	names := make(map[string]bool)
	for range nt {
		t, err := d.tensorInfo()
		if err != nil {
			return nil, err
		}
		if names[t.Name] {
			return nil, formatf("duplicate tensor %s", t.Name)
		}
		names[t.Name] = true
		h.Tensors = append(h.Tensors, t)
	}
	var off int64
	for _, t := range h.Tensors {
		if t.Offset != off {
			return nil, formatf("tensor %s has offset %d, expected %d", t.Name, t.Offset, off)
		}
		if t.Bytes > math.MaxInt64-off-h.Alignment {
			return nil, formatf("tensor %s: data section overflows", t.Name)
		}
		off += padTo(t.Bytes, h.Alignment)
	}
	h.DataSize = off
	h.DataOffset = d.n
	if nt > 0 {
		h.DataOffset = padTo(d.n, h.Alignment)
		pad := make([]byte, h.DataOffset-d.n)
		if err := d.read(pad); err != nil {
			return nil, err
		}
		for _, b := range pad {
			if b != 0 {
				return nil, formatf("non-zero padding before the data section")
			}
		}
	}
	return h, nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	name, err := d.str()
	if err != nil {
		return TensorInfo{}, err
	}
	if name == "" || len(name) > MaxNameLen {
		return TensorInfo{}, formatf("tensor name %q: 1 to %d bytes allowed", name, MaxNameLen)
	}
	nd, err := d.u32()
	if err != nil {
		return TensorInfo{}, err
	}
	if nd == 0 || nd > MaxDims {
		return TensorInfo{}, formatf("tensor %s has %d dimensions", name, nd)
	}
	t := TensorInfo{Name: name, Dims: make([]uint64, nd)}
	numel := uint64(1)
	for i := range t.Dims {
		if t.Dims[i], err = d.u64(); err != nil {
			return TensorInfo{}, err
		}
		if t.Dims[i] > math.MaxInt64 {
			return TensorInfo{}, formatf("tensor %s: dimension %d is negative", name, i)
		}
		hi, lo := bits.Mul64(numel, t.Dims[i])
		if hi != 0 || lo > math.MaxInt64/8 {
			return TensorInfo{}, formatf("tensor %s: element count overflows", name)
		}
		numel = lo
	}
	ty, err := d.u32()
	if err != nil {
		return TensorInfo{}, err
	}
	t.Type = ggml.Type(ty)
	if !t.Type.Known() {
		return TensorInfo{}, formatf("tensor %s has unknown type %d", name, ty)
	}
	rs, err := t.Type.RowSize(int(t.Dims[0]))
	if err != nil || t.Dims[0] > math.MaxInt32 {
		return TensorInfo{}, formatf("tensor %s: ne[0] = %d is not a multiple of %s's block of %d", name, t.Dims[0], t.Type, t.Type.BlockElems())
	}
	rows := uint64(1)
	if t.Dims[0] != 0 {
		rows = numel / t.Dims[0]
	} else {
		rows = 0
	}
	hi, lo := bits.Mul64(rows, uint64(rs))
	if hi != 0 || lo > math.MaxInt64/2 {
		return TensorInfo{}, formatf("tensor %s: byte size overflows", name)
	}
	t.Bytes = int64(lo)
	off, err := d.u64()
	if err != nil {
		return TensorInfo{}, err
	}
	if off > math.MaxInt64 {
		return TensorInfo{}, formatf("tensor %s: offset %d", name, off)
	}
	t.Offset = int64(off)
	return t, nil
}
