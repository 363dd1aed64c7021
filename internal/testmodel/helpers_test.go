package testmodel

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// fileTensor is a tensor in an open weight file.
type fileTensor struct {
	f  *safetensors.File
	ti safetensors.TensorInfo
}

// read returns the tensor's bytes.
func (ft fileTensor) read(t *testing.T) []byte {
	t.Helper()
	b, err := ft.f.ReadTensor(ft.ti)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openAll opens every weight file of a generated base and returns tensor name → location.
func openAll(t *testing.T, info *BaseInfo) map[string]fileTensor {
	t.Helper()
	out := map[string]fileTensor{}
	for _, name := range info.Files {
		f, err := safetensors.Open(filepath.Join(info.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if f.Metadata["format"] != "pt" {
			t.Errorf("%s: metadata %v", name, f.Metadata)
		}
		for _, ti := range f.Tensors {
			if _, dup := out[ti.Name]; dup {
				t.Fatalf("%s twice", ti.Name)
			}
			out[ti.Name] = fileTensor{f, ti}
		}
	}
	return out
}

// f32s decodes little-endian float32 bytes.
func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// floats decodes F32/F16/BF16 bytes.
func floats(t *testing.T, dt tensor.DType, b []byte) []float32 {
	t.Helper()
	out := make([]float32, len(b)/dt.Size())
	if err := tensor.DecodeFloats(dt, b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// streamValues regenerates n values of a stream (the generator's source data).
func streamValues(st stream, n int64) []float32 {
	out := make([]float32, n)
	for tile := int64(0); tile*tileElems < n; tile++ {
		st.fill(tile, out[tile*tileElems:min(n, (tile+1)*tileElems)])
	}
	return out
}

// listFiles lists a directory's file names.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
