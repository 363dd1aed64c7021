package safetensors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// rawFile builds a file from a literal JSON header and a data buffer of n bytes.
func rawFile(header string, n int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(make([]byte, n))
	return b.Bytes()
}

func TestPlanMatchesReferenceWriter(t *testing.T) {
	// Empty dict: "{}" plus 6 spaces (reference test).
	l, err := Plan(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(l.Header[8:]); got != "{}      " {
		t.Errorf("empty header = %q", got)
	}
	// Metadata-only example from the reference tests: padded to 40 bytes.
	l, err = Plan(nil, map[string]string{"framework": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(l.Header[8:]); got != `{"__metadata__":{"framework":"pt"}}     ` || len(got) != 40 {
		t.Errorf("metadata header = %q (%d bytes)", got, len(got))
	}
	// Order: dtype descending, then name.
	l, err = Plan([]Entry{
		{Name: "b", DType: tensor.BF16, Shape: []int64{3}},
		{Name: "a", DType: tensor.BF16, Shape: []int64{1}},
		{Name: "z", DType: tensor.U8, Shape: []int64{5}},
		{Name: "y", DType: tensor.F32, Shape: []int64{2}},
		{Name: "i", DType: tensor.I64, Shape: []int64{}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ti := range l.Tensors {
		order = append(order, ti.Name)
		if ti.Begin%int64(max(1, ti.DType.Size())) != 0 {
			t.Errorf("%s misaligned at %d", ti.Name, ti.Begin)
		}
	}
	if got := strings.Join(order, ","); got != "i,y,a,b,z" {
		t.Errorf("order = %s, want i,y,a,b,z", got)
	}
	wantHdr := `{"__metadata__":{"format":"pt"},"i":{"dtype":"I64","shape":[],"data_offsets":[0,8]},` +
		`"y":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},` +
		`"b":{"dtype":"BF16","shape":[3],"data_offsets":[18,24]},"z":{"dtype":"U8","shape":[5],"data_offsets":[24,29]}}`
	if got := strings.TrimRight(string(l.Header[8:]), " "); got != wantHdr {
		t.Errorf("header\n got %s\nwant %s", got, wantHdr)
	}
	if (len(l.Header)-8)%8 != 0 {
		t.Errorf("header not padded to 8: %d", len(l.Header)-8)
	}
	if _, err := Plan([]Entry{{Name: "a", DType: tensor.F32}, {Name: "a", DType: tensor.F32}}, nil); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	var in []Data
	for i, spec := range []struct {
		dt    tensor.DType
		shape []int64
	}{
		{tensor.F32, []int64{3, 5}}, {tensor.BF16, []int64{7}}, {tensor.F16, []int64{2, 2, 3}},
		{tensor.U8, []int64{13, 1}}, {tensor.I64, nil}, {tensor.F32, []int64{0, 4}},
	} {
		n, _ := tensor.NumElements(spec.shape)
		buf := make([]byte, tensor.ByteSize(spec.dt, n))
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		in = append(in, Data{Entry{Name: "t" + string(rune('a'+i)) + "<&>", DType: spec.dt, Shape: spec.shape}, buf})
	}
	path := filepath.Join(dir, "m.safetensors")
	d, err := WriteTensors(path, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if d.Size != int64(len(raw)) || d.SHA256 != sha256.Sum256(raw) || !bytes.Equal(d.Sample, raw[:SampleSize]) {
		t.Fatalf("digest mismatch: size %d/%d", d.Size, len(raw))
	}
	if bytes.Contains(raw, []byte(`\u003c`)) {
		t.Error("writer escaped HTML characters")
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata)
	}
	for _, want := range in {
		ti, ok := f.Lookup(want.Name)
		if !ok {
			t.Fatalf("%s missing", want.Name)
		}
		if ti.DType != want.DType || !tensor.EqualShapes(ti.Shape, want.Shape) && len(want.Shape) > 0 {
			t.Errorf("%s: %s %v", want.Name, ti.DType, ti.Shape)
		}
		got, err := f.ReadTensor(ti)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes) {
			t.Errorf("%s: data differs", want.Name)
		}
	}
}

func TestMalformedHeaders(t *testing.T) {
	tooLarge := make([]byte, 8)
	binary.LittleEndian.PutUint64(tooLarge, MaxHeaderSize+1)
	tooLong := make([]byte, 16)
	binary.LittleEndian.PutUint64(tooLong, 100)
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	tests := []struct {
		name string
		file []byte
		kind string
	}{
		{"shorter than 8 bytes", []byte{1, 2, 3}, KindHeaderTooSmall},
		{"header too large", tooLarge, KindHeaderTooLarge},
		{"header longer than file", tooLong, KindInvalidHeaderLength},
		{"not utf-8", rawFile("{\"\xff\":1}", 0), KindInvalidHeader},
		{"not json", rawFile("{nope", 0), KindInvalidHeaderDeserial},
		{"not an object", rawFile("[]", 0), KindInvalidHeaderDeserial},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, 8), KindInvalidHeaderDeserial},
		{"lower-case dtype", rawFile(`{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}`, 8), KindInvalidHeaderDeserial},
		{"negative shape", rawFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), KindInvalidHeaderDeserial},
		{"float offset", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}`, 8), KindInvalidHeaderDeserial},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}`, 8), KindInvalidHeaderDeserial},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, 8), KindInvalidHeaderDeserial},
		{"non-string metadata", rawFile(`{"__metadata__":{"format":1}}`, 0), KindInvalidHeaderDeserial},
		{"duplicate key", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), KindInvalidHeaderDeserial},
		{"trailing garbage", rawFile(ok+"x", 8), KindInvalidHeaderDeserial},
		{"first begin not zero", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), KindInvalidOffset},
		{"gap", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, 3), KindInvalidOffset},
		{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3), KindInvalidOffset},
		{"end before begin", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"c":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}`, 1), KindInvalidOffset},
		{"overflow", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, 8), KindValidationOverflow},
		{"misaligned sub-byte", rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`, 1), KindMisalignedSlice},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), KindTensorInvalidInfo},
		{"truncated data", rawFile(ok, 7), KindMetadataIncompleteBuffr},
		{"trailing bytes", rawFile(ok, 9), KindMetadataIncompleteBuffr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Open = %v, want a *FormatError", err)
			}
			if fe.Kind != tt.kind {
				t.Errorf("kind = %s, want %s (%v)", fe.Kind, tt.kind, err)
			}
			if !strings.Contains(err.Error(), path) || !errors.Is(err, ErrFormat) {
				t.Errorf("error %q does not name the file or match ErrFormat", err)
			}
		})
	}
}

func TestAcceptedVariants(t *testing.T) {
	for name, hdr := range map[string]string{
		"leading whitespace":  ` {"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`,
		"trailing whitespace": "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\r\n\t ",
		"unknown field":       `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`,
		"null metadata":       `{"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`,
		"keys out of order":   `{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`,
	} {
		f := rawFile(hdr, 0)
		n := 1
		if strings.Contains(hdr, `"b"`) {
			n = 2
		}
		f = append(f, make([]byte, n)...)
		if _, err := ReadHeader(bytes.NewReader(f), int64(len(f))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWriteChecksFillSize(t *testing.T) {
	l, err := Plan([]Entry{{Name: "a", DType: tensor.F32, Shape: []int64{4}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	_, err = WriteFile(context.Background(), path, l, func(_ context.Context, _ TensorInfo, w io.Writer) error {
		_, err := w.Write(make([]byte, 15))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "planned 16") {
		t.Fatalf("short fill: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("failed write left %d files", len(entries))
	}
}

func TestDigestWriterLarge(t *testing.T) {
	// Cross several 4 MiB chunks with odd-sized writes.
	rng := rand.New(rand.NewPCG(1, 1))
	data := make([]byte, 3*digestChunk+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var out bytes.Buffer
	dw := NewDigestWriter(&out)
	for p := data; len(p) > 0; {
		k := min(len(p), 1+rng.IntN(1<<20))
		dw.Write(p[:k])
		p = p[k:]
	}
	d, err := dw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) || d.SHA256 != sha256.Sum256(data) || d.Size != int64(len(data)) {
		t.Fatal("digest writer corrupted data or digest")
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), int64(8))
	f.Add([]byte(`{"__metadata__":{"format":"pt"}}`), int64(0))
	f.Add([]byte(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[1,3]}}`), int64(3))
	f.Add([]byte(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`), int64(1))
	f.Fuzz(func(t *testing.T, hdr []byte, dataLen int64) {
		if dataLen < 0 || dataLen > 1<<40 {
			return
		}
		h, err := ParseHeader(hdr, 8+int64(len(hdr))+dataLen)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("non-format error %v", err)
			}
			return
		}
		// A header that validates describes exactly the buffer, with contiguous tensors.
		var end int64
		for _, ti := range h.Tensors {
			if ti.Begin != end || ti.End < ti.Begin {
				t.Fatalf("accepted non-contiguous tensors: %+v", h.Tensors)
			}
			end = ti.End
			if got, ok := h.Lookup(ti.Name); !ok || got.Begin != ti.Begin {
				t.Fatalf("lookup of %q failed", ti.Name)
			}
		}
		if end != dataLen {
			t.Fatalf("accepted header describing %d bytes for a %d-byte buffer", end, dataLen)
		}
	})
}
