package merge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// f32Bytes encodes float32 values little-endian.
func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// floatBytes encodes values in dtype d (F32, F16, BF16).
func floatBytes(t testing.TB, d tensor.DType, v []float32) []byte {
	t.Helper()
	b := make([]byte, len(v)*d.Size())
	if _, err := tensor.EncodeFloats(d, v, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func data(name string, d tensor.DType, shape []int64, b []byte) safetensors.Data {
	return safetensors.Data{Entry: safetensors.Entry{Name: name, DType: d, Shape: shape}, Bytes: b}
}

// writeDir writes config (JSON-encoded unless it is a string) and a single safetensors file into dir.
func writeDir(t testing.TB, dir, cfgName string, cfg any, weights string, tensors []safetensors.Data) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	switch c := cfg.(type) {
	case string:
		raw = []byte(c)
	default:
		var err error
		if raw, err = json.Marshal(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, cfgName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := safetensors.WriteTensors(filepath.Join(dir, weights), tensors, nil); err != nil {
		t.Fatal(err)
	}
}

// outTensorData is one tensor read back from an output directory.
type outTensorData struct {
	DType tensor.DType
	Shape []int64
	Raw   []byte
}

func (o outTensorData) floats(t testing.TB) []float32 {
	t.Helper()
	v := make([]float32, len(o.Raw)/o.DType.Size())
	if err := tensor.DecodeFloats(o.DType, o.Raw, v); err != nil {
		t.Fatal(err)
	}
	return v
}

// readOutput reads every tensor of a model directory (single file or sharded).
func readOutput(t testing.TB, dir string) map[string]outTensorData {
	t.Helper()
	out := map[string]outTensorData{}
	files := []string{filepath.Join(dir, "model.safetensors")}
	if raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		files = nil
		for _, f := range idx.WeightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, filepath.Join(dir, f))
			}
		}
	}
	for _, p := range files {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range f.Tensors {
			b, err := f.ReadTensor(ti)
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := out[ti.Name]; dup {
				t.Fatalf("tensor %s in two shards", ti.Name)
			}
			out[ti.Name] = outTensorData{DType: ti.DType, Shape: ti.Shape, Raw: b}
		}
		f.Close()
	}
	return out
}

// runMerge runs a merge with the given options filled in, failing the test on error.
func runMergeT(t testing.TB, opts Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	return res
}

// dummyAdapter writes an adapter that only replaces the base tensor name with values (F32).
func dummyAdapter(t testing.TB, dir, name string, shape []int64, values []float32) {
	t.Helper()
	writeDir(t, dir, "adapter_config.json", `{"peft_type": "LORA", "r": 1, "lora_alpha": 1}`, "adapter_model.safetensors",
		[]safetensors.Data{data("base_model.model."+name, tensor.F32, shape, f32Bytes(values))})
}

// noEntries reports whether dir has no entries (or does not exist).
func noEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// tensorInfo is the safetensors entry a writer would pass to fill for t.
func tensorInfo(t *outTensor) safetensors.TensorInfo {
	return safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Begin: 0, End: t.Bytes}
}

func removeAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}
