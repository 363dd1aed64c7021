package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/ggml"
)

func sampleKVs() []KV {
	return []KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "u8", Value: uint8(7)}, {Key: "i8", Value: int8(-7)}, {Key: "u16", Value: uint16(700)},
		{Key: "i16", Value: int16(-700)}, {Key: "u32", Value: uint32(70000)}, {Key: "i32", Value: int32(-70000)},
		{Key: "f32", Value: float32(1e-5)}, {Key: "b", Value: true}, {Key: "u64", Value: uint64(1 << 40)},
		{Key: "i64", Value: int64(-1 << 40)}, {Key: "f64", Value: 0.1},
		{Key: "tokens", Value: []string{"a", "", "ü"}}, {Key: "types", Value: []int32{1, 3}},
		// An empty array (a byte-level BPE vocabulary without merges): llama.cpp requires the merges key.
		{Key: "merges", Value: []string{}},
		{Key: "scores", Value: []float32{-1000, 0.5}}, {Key: "bools", Value: []bool{true, false}},
		{Key: "u32s", Value: []uint32{1, 2}},
	}
}

func sampleTensors() []TensorInfo {
	ts := []TensorInfo{
		{Name: "a", Type: ggml.F32, Dims: []uint64{3}},
		{Name: "b", Type: ggml.Q8_0, Dims: []uint64{64, 2}},
		{Name: "c", Type: ggml.BF16, Dims: []uint64{5, 1, 1, 2}},
	}
	var off int64
	for i := range ts {
		rs, _ := ts[i].Type.RowSize(int(ts[i].Dims[0]))
		rows := int64(1)
		for _, d := range ts[i].Dims[1:] {
			rows *= int64(d)
		}
		ts[i].Bytes = rows * int64(rs)
		ts[i].Offset = off
		off += padTo(ts[i].Bytes, Alignment)
	}
	return ts
}

// sampleFile is a complete valid file: header, then data with padding after every tensor.
func sampleFile(t *testing.T) []byte {
	t.Helper()
	ts := sampleTensors()
	h, err := encodeHeader(sampleKVs(), ts)
	if err != nil {
		t.Fatal(err)
	}
	last := ts[len(ts)-1]
	data := make([]byte, last.Offset+padTo(last.Bytes, Alignment))
	for i := range data {
		data[i] = byte(i)
	}
	return append(h, data...)
}

func TestEncodeParseRoundTrip(t *testing.T) {
	b := sampleFile(t)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.DataOffset%Alignment != 0 || h.Version != Version {
		t.Fatalf("data offset %d, version %d", h.DataOffset, h.Version)
	}
	want := sampleKVs()
	if len(h.KVs) != len(want) {
		t.Fatalf("%d KVs, want %d", len(h.KVs), len(want))
	}
	for i, kv := range h.KVs {
		wt, we, _ := kvType(want[i].Value)
		if kv.Key != want[i].Key || kv.Type != wt || (wt == TypeArray && kv.ElemType != we) || !reflect.DeepEqual(kv.Value, want[i].Value) {
			t.Errorf("KV %d = %+v, want %+v", i, kv, want[i])
		}
	}
	if !reflect.DeepEqual(h.Tensors, sampleTensors()) {
		t.Errorf("tensors %+v, want %+v", h.Tensors, sampleTensors())
	}
	// Exact bytes of the start: magic, version, counts, first key.
	wantStart := []byte("GGUF\x03\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x12\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x00\x00\x00\x00\x00general.architecture\x08\x00\x00\x00")
	if !bytes.HasPrefix(b, wantStart) {
		t.Errorf("header starts % x", b[:len(wantStart)])
	}
}

func TestEncodeRefuses(t *testing.T) {
	long := strings.Repeat("x", 64)
	for _, tc := range []struct {
		name string
		kvs  []KV
		ts   []TensorInfo
	}{
		{"empty key", []KV{{Key: "", Value: "x"}}, nil},
		{"duplicate key", []KV{{Key: "a", Value: "x"}, {Key: "a", Value: "y"}}, nil},
		{"unsupported value", []KV{{Key: "a", Value: 3}}, nil},
		{"long name", nil, []TensorInfo{{Name: long, Type: ggml.F32, Dims: []uint64{1}}}},
		{"five dims", nil, []TensorInfo{{Name: "a", Type: ggml.F32, Dims: []uint64{1, 1, 1, 1, 1}}}},
	} {
		if _, err := encodeHeader(tc.kvs, tc.ts); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// patch returns a copy of b with the bytes at off replaced.
func patch(b []byte, off int, p []byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], p)
	return c
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// rawFile builds a header from raw KV bytes and no tensors.
func rawFile(nkv uint64, kvBytes []byte) []byte {
	b := []byte("GGUF")
	b = append(b, le32(3)...)
	b = append(b, le64(0)...)
	b = append(b, le64(nkv)...)
	return append(b, kvBytes...)
}

func rawStr(s string) []byte { return append(le64(uint64(len(s))), s...) }

// fileWith builds a file whose single tensor info is given raw.
func fileWith(kvs []KV, info []byte, data int) []byte {
	var e encoder
	e.b.WriteString("GGUF")
	e.u32(3)
	e.u64(1)
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.kv(kv)
	}
	e.b.Write(info)
	n := padTo(int64(e.b.Len()), Alignment)
	e.b.Write(make([]byte, n-int64(e.b.Len())+int64(data)))
	return e.b.Bytes()
}

func info(name string, dims []uint64, typ uint32, off uint64) []byte {
	b := rawStr(name)
	b = append(b, le32(uint32(len(dims)))...)
	for _, d := range dims {
		b = append(b, le64(d)...)
	}
	b = append(b, le32(typ)...)
	return append(b, le64(off)...)
}

func TestParseRejects(t *testing.T) {
	good := sampleFile(t)
	h, _ := Parse(good)
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"bad magic", patch(good, 0, []byte("GGUG")), "magic"},
		{"version 1", patch(good, 4, le32(1)), "version"},
		{"truncated", good[:len(good)-1], "describes"},
		{"trailing byte", append(append([]byte(nil), good...), 0), "describes"},
		{"header cut", good[:40], "truncated"},
		{"empty key", rawFile(1, append(rawStr(""), append(le32(uint32(TypeUint8)), 1)...)), "empty metadata key"},
		{"duplicate key", rawFile(2, bytes.Repeat(append(rawStr("k"), append(le32(uint32(TypeUint8)), 1)...), 2)), "duplicate key"},
		{"unknown value type", rawFile(1, append(rawStr("k"), le32(13)...)), "value type"},
		{"nested array", rawFile(1, append(rawStr("k"), append(le32(uint32(TypeArray)), append(le32(uint32(TypeArray)), le64(1)...)...)...)), "nested"},
		{"bool 2", rawFile(1, append(rawStr("k"), append(le32(uint32(TypeBool)), 2)...)), "BOOL"},
		{"huge string", rawFile(1, append(rawStr("k"), append(le32(uint32(TypeString)), le64(1<<40)...)...)), "string of"},
		{"huge array", rawFile(1, append(rawStr("k"), append(le32(uint32(TypeArray)), append(le32(uint32(TypeUint8)), le64(1<<31)...)...)...)), "array of"},
		{"lying array", rawFile(1, append(rawStr("k"), append(le32(uint32(TypeArray)), append(le32(uint32(TypeString)), le64(1<<29)...)...)...)), "truncated"},
		{"alignment not power of two", fileWith([]KV{{Key: "general.alignment", Value: uint32(48)}}, info("a", []uint64{8}, 0, 0), 48), "alignment"},
		{"alignment wrong type", fileWith([]KV{{Key: "general.alignment", Value: uint64(32)}}, info("a", []uint64{8}, 0, 0), 32), "alignment"},
		{"name of 64 bytes", fileWith(nil, info(strings.Repeat("n", 64), []uint64{8}, 0, 0), 32), "tensor name"},
		{"no dims", fileWith(nil, info("a", nil, 0, 0), 32), "dimensions"},
		{"five dims", fileWith(nil, info("a", []uint64{1, 1, 1, 1, 1}, 0, 0), 32), "dimensions"},
		{"negative dim", fileWith(nil, info("a", []uint64{1 << 63}, 0, 0), 32), "negative"},
		{"unknown tensor type", fileWith(nil, info("a", []uint64{8}, 4, 0), 32), "unknown type"},
		{"ne0 not a block multiple", fileWith(nil, info("a", []uint64{33}, uint32(ggml.Q8_0), 0), 64), "not a multiple"},
		{"offset gap", fileWith(nil, info("a", []uint64{8}, 0, 32), 64), "expected 0"},
		{"element overflow", fileWith(nil, info("a", []uint64{1 << 40, 1 << 40}, 0, 0), 32), "overflows"},
		{"nonzero padding", patch(good, int(h.DataOffset)-1, []byte{1}), "padding"},
	} {
		_, err := Parse(tc.b)
		if err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want ErrFormat mentioning %q", tc.name, err, tc.msg)
		}
	}
	// Duplicate tensor names.
	var e encoder
	e.b.WriteString("GGUF")
	e.u32(3)
	e.u64(2)
	e.u64(0)
	e.b.Write(info("a", []uint64{8}, 0, 0))
	e.b.Write(info("a", []uint64{8}, 0, 32))
	if _, err := ReadHeader(bytes.NewReader(e.b.Bytes())); err == nil || !strings.Contains(err.Error(), "duplicate tensor") {
		t.Errorf("duplicate tensor: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	var seed []byte
	{
		ts := sampleTensors()
		h, _ := encodeHeader(sampleKVs(), ts)
		last := ts[len(ts)-1]
		seed = append(h, make([]byte, last.Offset+padTo(last.Bytes, Alignment))...)
	}
	f.Add(seed)
	f.Add(seed[:60])
	f.Add(rawFile(1, append(rawStr("k"), append(le32(uint32(TypeArray)), append(le32(uint32(TypeString)), le64(3)...)...)...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error not ErrFormat: %v", err)
			}
			return
		}
		if h.FileSize() != int64(len(b)) {
			t.Fatalf("accepted a file of %d bytes describing %d", len(b), h.FileSize())
		}
		var off int64
		for _, ti := range h.Tensors {
			if ti.Offset != off || len(ti.Name) > MaxNameLen {
				t.Fatalf("accepted tensor %+v at %d", ti, off)
			}
			off += padTo(ti.Bytes, h.Alignment)
		}
	})
}
