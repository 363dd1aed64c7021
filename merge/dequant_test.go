package merge

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge/kernels"
)

// The tables below are written independently of the package's (model-formats.md §4.1/§4.2): NF4 as the float32
// bit patterns bitsandbytes hard-codes, FP4 derived from the raw E2M1 values divided by 12 in float32.
var testNF4Bits = [16]uint32{
	0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
	0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
}

func testTable(qt string) [16]float32 {
	var out [16]float32
	if qt == "nf4" {
		for i, b := range testNF4Bits {
			out[i] = math.Float32frombits(b)
		}
		return out
	}
	raw := []float64{0, 0.0625, 8, 12, 4, 6, 2, 3, math.Copysign(0, -1), -0.0625, -8, -12, -4, -6, -2, -3}
	for i, r := range raw {
		out[i] = float32(r) / float32(12)
	}
	return out
}

func TestCodeTablesMatchBitsandbytes(t *testing.T) {
	fp4Want := [16]uint32{0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
		0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000}
	for _, qt := range []string{"nf4", "fp4"} {
		got := CodeTable(qt)
		want := testTable(qt)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s code %d: %#x, want %#x", qt, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
			}
			if qt == "fp4" && math.Float32bits(want[i]) != fp4Want[i] {
				t.Errorf("fp4 derivation code %d: %#x, doc says %#x", i, math.Float32bits(want[i]), fp4Want[i])
			}
		}
	}
	if CodeTable("int4") != nil {
		t.Error("CodeTable(int4) should be nil")
	}
}

// handQuant is a 4-bit weight built by hand: one code per element and the block scales.
type handQuant struct {
	quantType string
	blocksize int
	shape     []int64
	dtype     string // quant_state dtype
	storage   tensor.DType
	codes     []byte
	// Without double quant: absmax per block.
	absmax []float32
	// With double quant: 8-bit codes per block, nested absmax per 256 blocks, the nested map and the offset.
	dq     bool
	dqCode []byte
	nested []float32
	nmap   [256]float32
	offset float32
}

func (h handQuant) n() int64 { n, _ := tensor.NumElements(h.shape); return n }

// scale is block b's scale, computed by hand: fl32(fl32(map[code]·nested[b/256]) + offset) under double quant.
func (h handQuant) scale(b int) float32 {
	if !h.dq {
		return h.absmax[b]
	}
	p := float32(h.nmap[h.dqCode[b]] * h.nested[b/256])
	return float32(p + h.offset)
}

// expected is the dequantized weight in float32, rounded to the quant_state dtype, as bitsandbytes returns it.
func (h handQuant) expected() []float32 {
	table := testTable(h.quantType)
	out := make([]float32, h.n())
	for k := range out {
		v := float32(table[h.codes[k]] * h.scale(k/h.blocksize))
		switch h.dtype {
		case "bfloat16":
			v = tensor.BF16ToF32(tensor.F32ToBF16(v))
		case "float16":
			v = tensor.F16ToF32(tensor.F32ToF16(v))
		}
		out[k] = v
	}
	return out
}

// tensors serializes the weight as bitsandbytes does (model-formats.md §3.2–3.4) under prefix P.weight.
func (h handQuant) tensors(t testing.TB, w string) []safetensors.Data {
	t.Helper()
	n := h.n()
	packed := make([]byte, (n+1)/2)
	for k := int64(0); k < n; k++ {
		if k%2 == 0 {
			packed[k/2] |= h.codes[k] << 4
		} else {
			packed[k/2] |= h.codes[k]
		}
	}
	if n%2 == 1 {
		packed[n/2] |= 0x0B // padding nibble: must be ignored
	}
	storage := h.storage
	if storage == tensor.Invalid {
		storage = tensor.U8
	}
	is := int64(storage.Size())
	if int64(len(packed))%is != 0 {
		t.Fatalf("packed length %d is not a multiple of the %s item size", len(packed), storage)
	}
	table := testTable(h.quantType)
	blob := map[string]any{"quant_type": h.quantType, "blocksize": h.blocksize, "dtype": h.dtype, "shape": h.shape}
	out := []safetensors.Data{
		data(w, storage, []int64{int64(len(packed)) / is, 1}, packed),
		data(w+".quant_map", tensor.F32, []int64{16}, f32Bytes(table[:])),
	}
	nb := int64(len(h.absmax))
	if h.dq {
		nb = int64(len(h.dqCode))
		blob["nested_blocksize"] = 256
		blob["nested_dtype"] = "float32"
		blob["nested_offset"] = float64(h.offset)
		out = append(out,
			data(w+".absmax", tensor.U8, []int64{nb}, h.dqCode),
			data(w+".nested_absmax", tensor.F32, []int64{int64(len(h.nested))}, f32Bytes(h.nested)),
			data(w+".nested_quant_map", tensor.F32, []int64{256}, f32Bytes(h.nmap[:])))
	} else {
		out = append(out, data(w+".absmax", tensor.F32, []int64{nb}, f32Bytes(h.absmax)))
	}
	raw, err := json.Marshal(blob)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, data(w+".quant_state.bitsandbytes__"+h.quantType, tensor.U8, []int64{int64(len(raw))}, raw))
	return out
}

// newHandQuant fills codes so that every code appears at even and odd positions, and deterministic scales.
func newHandQuant(qt string, bs int, shape []int64, dq bool) handQuant {
	h := handQuant{quantType: qt, blocksize: bs, shape: shape, dtype: "float32", dq: dq}
	n := h.n()
	h.codes = make([]byte, n)
	for k := range h.codes {
		h.codes[k] = byte((k + k/16) % 16)
	}
	nb := int((n + int64(bs) - 1) / int64(bs))
	if !dq {
		h.absmax = make([]float32, nb)
		for b := range h.absmax {
			h.absmax[b] = 0.01 + 0.37*float32(b%11) + 0.001*float32(b)
		}
		return h
	}
	h.dqCode = make([]byte, nb)
	for b := range h.dqCode {
		h.dqCode[b] = byte((b*37 + 11) % 256)
	}
	h.nested = make([]float32, (nb+255)/256)
	for i := range h.nested {
		h.nested[i] = 0.05 + 0.013*float32(i)
	}
	// A hand-built signed map, not bitsandbytes' dynamic one: the merge must use the stored map.
	for i := range h.nmap {
		h.nmap[i] = float32(i-127) / 128 * (1 + float32(i%7)/64)
	}
	h.offset = 0.0213
	return h
}

// dequantViaMerge writes h as a base model, merges a dummy adapter (touching only a norm) and returns the
// output weight as written in outDType (Invalid: the default).
func dequantViaMerge(t *testing.T, h handQuant, outDType tensor.DType) outTensorData {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	w := "model.layers.0.mlp.down_proj.weight"
	tensors := append(h.tensors(t, w), data("model.norm.weight", tensor.BF16, []int64{4}, floatBytes(t, tensor.BF16, []float32{1, 2, 3, 4})))
	writeDir(t, base, "config.json", map[string]any{"model_type": "llama", "torch_dtype": "bfloat16"}, "model.safetensors", tensors)
	ad := filepath.Join(dir, "adapter")
	dummyAdapter(t, ad, "model.norm.weight", []int64{4}, []float32{0.5, 0.25, 0.125, 1})
	out := filepath.Join(dir, "out")
	runMergeT(t, Options{Base: base, Adapter: ad, Out: out, DType: outDType, Threads: 2})
	got := readOutput(t, out)
	o, ok := got[w]
	if !ok {
		t.Fatalf("output has no %s", w)
	}
	for name := range got {
		if name != w && name != "model.norm.weight" {
			t.Errorf("unexpected output tensor %s (bnb side keys must not reach the output)", name)
		}
	}
	return o
}

func checkDequant(t *testing.T, h handQuant, o outTensorData) {
	t.Helper()
	if !tensor.EqualShapes(o.Shape, h.shape) {
		t.Fatalf("shape %v, want %v", o.Shape, h.shape)
	}
	want := h.expected()
	got := o.floats(t)
	bad := 0
	for k := range want {
		if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
			if bad < 5 {
				t.Errorf("element %d (code %d, block %d): got %v (%#x), want %v (%#x)", k, h.codes[k], k/h.blocksize,
					got[k], math.Float32bits(got[k]), want[k], math.Float32bits(want[k]))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d elements differ", bad, len(want))
	}
}

func TestDequantHandValues(t *testing.T) {
	// Literal products checked by hand: code value × scale in float32.
	cases := []struct {
		qt    string
		code  byte
		scale float32
		want  float32
	}{
		{"nf4", 15, 2.5, 2.5},
		{"nf4", 0, 0.5, -0.5},
		{"nf4", 7, 3, 0},
		{"nf4", 13, 2, 1.1252340078353882},
		{"nf4", 8, 4, 0.31832119822502136},
		{"fp4", 3, 0.75, 0.75},
		{"fp4", 11, 0.75, -0.75},
		{"fp4", 5, 3, 1.5},
		{"fp4", 2, 1.5, 1}, // 0x3f2aaaab·1.5 = 16777216.5·2⁻²⁴ rounds to 1
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d", c.qt, c.code), func(t *testing.T) {
			h := handQuant{quantType: c.qt, blocksize: 32, shape: []int64{2, 3}, dtype: "float32",
				codes: []byte{c.code, 7, c.code, c.code, 0, c.code}, absmax: []float32{c.scale}}
			got := dequantViaMerge(t, h, tensor.F32).floats(t)
			for _, k := range []int{0, 2, 3, 5} {
				if got[k] != c.want {
					t.Errorf("element %d: got %v, want %v", k, got[k], c.want)
				}
			}
		})
	}
}

func TestDequantAllCodesBothNibbles(t *testing.T) {
	for _, qt := range []string{"nf4", "fp4"} {
		for _, dq := range []bool{false, true} {
			for _, shape := range [][]int64{{3, 50}, {5, 7}, {1, 1}, {33, 31}} { // partial blocks, odd counts
				name := fmt.Sprintf("%s/dq=%v/%v", qt, dq, shape)
				t.Run(name, func(t *testing.T) {
					h := newHandQuant(qt, 32, shape, dq)
					checkDequant(t, h, dequantViaMerge(t, h, tensor.F32))
				})
			}
		}
	}
}

func TestDequantEveryBlocksize(t *testing.T) {
	for bs := 32; bs <= 4096; bs *= 2 {
		for _, dq := range []bool{false, true} {
			qt := []string{"nf4", "fp4"}[bs/32%2]
			t.Run(fmt.Sprintf("%d/%s/dq=%v", bs, qt, dq), func(t *testing.T) {
				h := newHandQuant(qt, bs, []int64{3, 1501}, dq) // 4503 elements: partial last block, odd count
				checkDequant(t, h, dequantViaMerge(t, h, tensor.F32))
			})
		}
	}
}

func TestDequantNestedBlocksCrossed(t *testing.T) {
	// 300 blocks of 32 → two nested blocks of 256 (the second partial).
	h := newHandQuant("nf4", 32, []int64{96, 100}, true)
	if len(h.nested) != 2 {
		t.Fatalf("setup: %d nested blocks", len(h.nested))
	}
	checkDequant(t, h, dequantViaMerge(t, h, tensor.F32))
}

func TestDequantQuantStorageReinterpreted(t *testing.T) {
	for _, st := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		t.Run(st.String(), func(t *testing.T) {
			h := newHandQuant("nf4", 64, []int64{8, 19}, true) // 152 elements = 76 packed bytes
			h.storage = st
			checkDequant(t, h, dequantViaMerge(t, h, tensor.F32))
		})
	}
}

func TestDequantRoundsToQuantDType(t *testing.T) {
	for _, dt := range []string{"bfloat16", "float16"} {
		t.Run(dt, func(t *testing.T) {
			h := newHandQuant("nf4", 64, []int64{7, 45}, false)
			for b := range h.absmax {
				h.absmax[b] = 0.0123457 * float32(b+1) // values with many mantissa bits, so rounding matters
			}
			h.dtype = dt
			// Output in F32: the rounding to the quant_state dtype must still have happened.
			checkDequant(t, h, dequantViaMerge(t, h, tensor.F32))
			// Default output dtype: the quant_state dtype.
			o := dequantViaMerge(t, h, tensor.Invalid)
			want, _ := tensor.ParseTorchDType(dt)
			if o.DType != want {
				t.Fatalf("default output dtype %s, want %s", o.DType, want)
			}
			checkDequant(t, h, o)
		})
	}
}

func TestDequantLargeTiled(t *testing.T) {
	// More elements than one tile, with tile sizes that start tiles on odd elements and inside blocks.
	h := newHandQuant("fp4", 128, []int64{301, 517}, true)
	want := h.expected()
	for _, elems := range []int{0, 37, 1000} {
		t.Run(fmt.Sprint(elems), func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			w := "model.layers.0.mlp.up_proj.weight"
			tensors := append(h.tensors(t, w), data("model.norm.weight", tensor.F32, []int64{2}, f32Bytes([]float32{1, 2})))
			writeDir(t, base, "config.json", map[string]any{"torch_dtype": "float32"}, "model.safetensors", tensors)
			ad := filepath.Join(dir, "adapter")
			dummyAdapter(t, ad, "model.norm.weight", []int64{2}, []float32{3, 4})
			opts := Options{Base: base, Adapter: ad, Out: filepath.Join(dir, "out"), DType: tensor.F32, Threads: 3}
			if elems > 0 {
				opts.Backends, opts.Device = smallTileBackend(elems), "small"
			}
			runMergeT(t, opts)
			got := readOutput(t, opts.Out)[w].floats(t)
			for k := range want {
				if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
					t.Fatalf("element %d: got %v, want %v", k, got[k], want[k])
				}
			}
		})
	}
}

// smallTileBackend offers the CPU backend with a chosen tile size, as device "small".
func smallTileBackend(elems int) []BackendProvider {
	return []BackendProvider{{
		Name: "small",
		New: func(k *kernels.Impl) (Backend, error) {
			return tileSizeBackend{Backend: NewCPUBackend(k), elems: elems}, nil
		},
	}}
}

type tileSizeBackend struct {
	Backend
	elems int
}

func (b tileSizeBackend) TileElems() int { return b.elems }
