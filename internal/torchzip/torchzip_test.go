package torchzip_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/internal/torchzip"
)

func sampleTensors() []safetensors.Data {
	mk := func(name string, d tensor.DType, shape []int64) safetensors.Data {
		n, _ := tensor.NumElements(shape)
		b := make([]byte, n*int64(d.Size()))
		for i := range b {
			b[i] = byte(len(name) + i)
		}
		return safetensors.Data{Entry: safetensors.Entry{Name: name, DType: d, Shape: shape}, Bytes: b}
	}
	return []safetensors.Data{
		mk("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", tensor.F32, []int64{4, 6}),
		mk("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", tensor.BF16, []int64{6, 4}),
		mk("scalar", tensor.F16, nil),
		mk("rank4", tensor.I64, []int64{2, 1, 3, 2}),
		mk("big", tensor.U8, []int64{70000}),
		mk("empty", tensor.F32, []int64{0, 3}),
	}
}

// TestRoundTrip: the tensors testmodel.WriteTorchZip writes (torch.save's layout) read back with their names,
// order, dtypes, shapes and bytes, and each storage's data is 64-byte aligned.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pytorch_model.bin")
	want := sampleTensors()
	if err := testmodel.WriteTorchZip(path, want); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if off, _ := f.DataOffset(); strings.Contains(f.Name, "/data/") && off%64 != 0 {
			t.Errorf("%s: data at %d, not 64-byte aligned", f.Name, off)
		}
	}
	zr.Close()
	if names[0] != "pytorch_model/data.pkl" || names[1] != "pytorch_model/byteorder" || names[2] != "pytorch_model/data/0" {
		t.Errorf("entries %v", names)
	}
	f, err := torchzip.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != len(want) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(want))
	}
	for i, w := range want {
		g := f.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || !tensor.EqualShapes(g.Shape, w.Shape) {
			t.Errorf("tensor %d: %s %s %v, want %s %s %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
			continue
		}
		b, err := f.ReadTensor(g)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, w.Bytes) {
			t.Errorf("%s: bytes differ", w.Name)
		}
		if ti, ok := f.Lookup(w.Name); !ok || ti.Begin != g.Begin {
			t.Errorf("Lookup(%s) = %v, %v", w.Name, ti, ok)
		}
	}
}

// TestRefused: every pickle that is not a plain state dict of tensors fails; disallowed globals name themselves.
func TestRefused(t *testing.T) {
	cases := []struct {
		name, pkl, want string
		disallowed      bool
	}{
		{"os.system reduce", "\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.", "os.system", true},
		{"subprocess", "csubprocess\nPopen\n.", "subprocess.Popen", true},
		{"builtins getattr", "\x80\x04\x8c\x08builtins\x8c\x07getattr\x93.", "builtins.getattr", true},
		{"storage called", "\x80\x02ctorch\nFloatStorage\n)R.", "not callable", false},
		{"inst", "(ios\nsystem\nS'id'\n.", "unsupported pickle opcode", false},
		{"not a dict", "\x80\x02K\x01.", "not a state dict", false},
		{"non-tensor value", "\x80\x02}X\x01\x00\x00\x00aK\x01s.", "not a tensor", false},
		{"truncated", "\x80\x02}X\xff\x00\x00\x00a", "truncated", false},
		{"no stop", "\x80\x02}", "no STOP", false},
		{"build on global", "\x80\x02ccollections\nOrderedDict\n}b.", "BUILD", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			zw := zip.NewWriter(&b)
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store})
			w.Write([]byte(tc.pkl))
			zw.Close()
			_, err := torchzip.Tensors(bytes.NewReader(b.Bytes()), int64(b.Len()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
			var de *torchzip.DisallowedError
			if errors.As(err, &de) != tc.disallowed {
				t.Errorf("DisallowedError = %v, want %v (%v)", !tc.disallowed, tc.disallowed, err)
			}
		})
	}
}

// TestBadArchives: storages that are missing, compressed or too small, views outside their storage and
// non-contiguous tensors are refused.
func TestBadArchives(t *testing.T) {
	one := []safetensors.Data{{Entry: safetensors.Entry{Name: "w", DType: tensor.F32, Shape: []int64{2, 3}}, Bytes: make([]byte, 24)}}
	good, err := testmodel.TorchPickle(one)
	if err != nil {
		t.Fatal(err)
	}
	build := func(pkl []byte, storage []byte, method uint16) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: "m/data.pkl", Method: zip.Store})
		w.Write(pkl)
		if storage != nil {
			w, _ = zw.CreateHeader(&zip.FileHeader{Name: "m/data/0", Method: method})
			w.Write(storage)
		}
		zw.Close()
		return b.Bytes()
	}
	strided := bytes.Replace(good, []byte("K\x03K\x01\x86"), []byte("K\x01K\x02\x86"), 1) // stride (3, 1) → (1, 2)
	if bytes.Equal(strided, good) {
		t.Fatal("stride not found in the pickle")
	}
	cases := []struct {
		name string
		zip  []byte
		want string
	}{
		{"missing storage", build(good, nil, zip.Store), "has no entry m/data/0"},
		{"compressed storage", build(good, make([]byte, 24), zip.Deflate), "compressed"},
		{"short storage", build(good, make([]byte, 20), zip.Store), "entry has 20 bytes"},
		{"non-contiguous", build(strided, make([]byte, 24), zip.Store), "not contiguous"},
		{"not zip", []byte("\x80\x02}."), "not a valid zip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := torchzip.Tensors(bytes.NewReader(tc.zip), int64(len(tc.zip)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
	t.Run("legacy file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "adapter_model.bin")
		os.WriteFile(p, []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."), 0o644)
		_, err := torchzip.Open(p)
		var fe *torchzip.FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "before PyTorch 1.6") {
			t.Fatalf("got %v", err)
		}
	})
}

// FuzzUnpickle: no input panics, loops or allocates without bound; whatever is accepted is a value.
func FuzzUnpickle(f *testing.F) {
	good, err := testmodel.TorchPickle(sampleTensors())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."))
	f.Add([]byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01\x8c\x01b]\x94(K\x02e\x8a\x01\xffu."))
	f.Add([]byte("(lp0\nI1\na."))
	load := func(pid any) (any, error) {
		return &torchzip.Storage{Type: torchzip.Global{Module: "torch", Name: "FloatStorage"}, Numel: 1 << 40}, nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = torchzip.Unpickle(data, load)
	})
}

// FuzzTensors: arbitrary archives never panic, and every tensor returned lies inside the input.
func FuzzTensors(f *testing.F) {
	path := filepath.Join(f.TempDir(), "adapter_model.bin")
	if err := testmodel.WriteTorchZip(path, sampleTensors()[:3]); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := torchzip.Tensors(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range ts {
			n, ok := tensor.NumElements(ti.Shape)
			if !ok || ti.Begin < 0 || ti.End > int64(len(data)) || ti.End-ti.Begin != n*int64(ti.DType.Size()) {
				t.Fatalf("tensor %s [%d, %d) %v outside the %d-byte input or the wrong size", ti.Name, ti.Begin, ti.End, ti.Shape, len(data))
			}
		}
	})
}

// TestSharedStructureErrorsStayShort: a pickle that doubles a shared tuple 60 times (2⁶⁰ leaves if rendered) as a
// persistent id fails fast with a short message.
func TestSharedStructureErrorsStayShort(t *testing.T) {
	pkl := []byte("\x80\x02K\x01\x85")
	for range 60 {
		pkl = append(pkl, '2', 0x86) // DUP, TUPLE2
	}
	pkl = append(pkl, 'Q', '.')
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "m/data.pkl", Method: zip.Store})
	w.Write(pkl)
	zw.Close()
	_, err := torchzip.Tensors(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "a tuple of 2") {
		t.Fatalf("got %v", err)
	}
}

// TestEntryOutsideFile: a storage whose local header points its data past the end of the file (found by
// FuzzTensors: a large extra-field length) is refused.
func TestEntryOutsideFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapter_model.bin")
	if err := testmodel.WriteTorchZip(path, sampleTensors()[:1]); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("PK\x03\x04"))
	for i >= 0 && !bytes.HasPrefix(b[i+30:], []byte("adapter_model/data/0")) {
		j := bytes.Index(b[i+4:], []byte("PK\x03\x04"))
		if j < 0 {
			t.Fatal("no local header for data/0")
		}
		i += 4 + j
	}
	b[i+28], b[i+29] = 0x00, 0xf0 // extra field length 0xf000
	_, err = torchzip.Tensors(bytes.NewReader(b), int64(len(b)))
	if err == nil || !strings.Contains(err.Error(), "outside the") {
		t.Fatalf("got %v", err)
	}
}
