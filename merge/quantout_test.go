package merge

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// refNF4Thresholds are model-formats.md §4.6's NF4 decision thresholds, ascending, as the float32 constants the
// CUDA kernel compares against. The reference code of y is the number of thresholds y exceeds (an independent
// formulation of the kernel's decision tree).
var refNF4Thresholds = []float32{-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
	-0.33967943489551544, -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683, 0.5016634166240692,
	0.6427869200706482, 0.8614784181118011}

// refFP4: magnitude thresholds ascending and the code of each magnitude interval.
var (
	refFP4Thresholds = []float32{0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333}
	refFP4Codes      = []byte{0, 1, 6, 7, 4, 5, 2, 3}
)

func refCode(qt string, y float32) byte {
	if qt == "nf4" {
		var c byte
		for _, t := range refNF4Thresholds {
			if y > t {
				c++
			}
		}
		return c
	}
	var sign byte
	if y < 0 {
		sign = 8
	}
	m := float32(math.Abs(float64(y)))
	k := 0
	for _, t := range refFP4Thresholds {
		if m > t {
			k++
		}
	}
	return refFP4Codes[k] + sign
}

// refQuantize is bitsandbytes' quantize_4bit written from §4.6: absmax per block, y = x·fl32(1/absmax), codes
// packed high nibble first, an odd tail padded with a 0 element.
func refQuantize(qt string, bs int, x []float32) ([]byte, []float32) {
	nb := (len(x) + bs - 1) / bs
	absmax := make([]float32, nb)
	codes := make([]byte, len(x)+1)
	for b := 0; b < nb; b++ {
		lo, hi := b*bs, min((b+1)*bs, len(x))
		for _, v := range x[lo:hi] {
			absmax[b] = max(absmax[b], float32(math.Abs(float64(v))))
		}
		r := 1 / absmax[b]
		for i := lo; i < hi; i++ {
			codes[i] = refCode(qt, x[i]*r)
		}
		if hi == len(x) && len(x)%2 == 1 {
			codes[len(x)] = refCode(qt, 0*r)
		}
	}
	packed := make([]byte, (len(x)+1)/2)
	for i := range packed {
		packed[i] = codes[2*i]<<4 | codes[2*i+1]
	}
	return packed, absmax
}

// refDoubleQuant is compress_statistics from §4.6 step 4: offset = mean, then absmax−offset quantized in blocks of
// 256 to the nearest entry of the dynamic map (by float32 midpoints).
func refDoubleQuant(absmax []float32) (codes []byte, nested []float32, offset float32) {
	var sum float64
	for _, a := range absmax {
		sum += float64(a)
	}
	offset = float32(sum / float64(len(absmax)))
	dm := testmodel.DynamicMap()
	codes = make([]byte, len(absmax))
	for b := 0; b*256 < len(absmax); b++ {
		blk := absmax[b*256 : min((b+1)*256, len(absmax))]
		var m float32
		for _, a := range blk {
			m = max(m, float32(math.Abs(float64(a-offset))))
		}
		nested = append(nested, m)
		r := 1 / m
		for i, a := range blk {
			y := (a - offset) * r
			c := 0
			for k := 0; k < 255; k++ {
				if y > float32(float32(dm[k]+dm[k+1])*0.5) {
					c = k + 1
				}
			}
			codes[b*256+i] = byte(c)
		}
	}
	return codes, nested, offset
}

// treeNF4 is, verbatim from model-formats.md §4.6, bitsandbytes' dQuantizeNF4 decision tree. The CUDA kernel compares against float literals
// (0.0397...f), so the thresholds here are float32 constants; every comparison is a strict >.
func treeNF4(x float32) byte {
	if x > 0.03979014977812767 {
		if x > 0.3893125355243683 {
			if x > 0.6427869200706482 {
				if x > 0.8614784181118011 {
					return 15
				}
				return 14
			}
			if x > 0.5016634166240692 {
				return 13
			}
			return 12
		}
		if x > 0.2035212516784668 {
			if x > 0.2920137718319893 {
				return 11
			}
			return 10
		}
		if x > 0.1202552504837513 {
			return 9
		}
		return 8
	}
	if x > -0.33967943489551544 {
		if x > -0.13791173323988914 {
			if x > -0.045525018125772476 {
				return 7
			}
			return 6
		}
		if x > -0.23460740596055984 {
			return 5
		}
		return 4
	}
	if x > -0.6106329262256622 {
		if x > -0.4599952697753906 {
			return 3
		}
		return 2
	}
	if x > -0.8480964004993439 {
		return 1
	}
	return 0
}

// treeFP4 is bitsandbytes' dQuantizeFP4: sign bit 8 for x < 0, then a tree on |x| with float32 thresholds.
func treeFP4(x float32) byte {
	var sign byte
	if x < 0 {
		sign = 8
	}
	x = float32(math.Abs(float64(x)))
	if x > 0.29166667 {
		if x > 0.583333 {
			if x > 0.8333333 {
				return 3 + sign
			}
			return 2 + sign
		}
		if x > 0.4166667 {
			return 5 + sign
		}
		return 4 + sign
	}
	if x > 0.0859375 {
		if x > 0.20833333 {
			return 7 + sign
		}
		return 6 + sign
	}
	if x > 0.00260417 {
		return 1 + sign
	}
	return sign
}

// TestQuantizerCodeBoundaries: the quantizer's code search equals bitsandbytes' decision trees at and next to
// every threshold, at ±0, ±1, NaN and on random values.
func TestQuantizerCodeBoundaries(t *testing.T) {
	var ys []float32
	for _, th := range append(append([]float32{}, refNF4Thresholds...), refFP4Thresholds...) {
		for _, v := range []float32{th, -th} {
			ys = append(ys, v, math.Nextafter32(v, 2), math.Nextafter32(v, -2))
		}
	}
	ys = append(ys, 0, float32(math.Copysign(0, -1)), 1, -1, float32(math.NaN()))
	rng := rand.New(rand.NewSource(3))
	for range 100000 {
		ys = append(ys, float32(rng.Float64()*2-1))
	}
	for _, y := range ys {
		// A block [1, y] has absmax 1, so y is quantized unscaled (y·1 = y).
		nf, _ := testmodel.Quantize4Bit(testmodel.QuantNF4, 32, []float32{1, y})
		fp, _ := testmodel.Quantize4Bit(testmodel.QuantFP4, 32, []float32{1, y})
		if nf[0]&0x0F != treeNF4(y) || fp[0]&0x0F != treeFP4(y) {
			t.Fatalf("y = %v (%#x): nf4 %d (tree %d), fp4 %d (tree %d)", y, math.Float32bits(y), nf[0]&0x0F, treeNF4(y), fp[0]&0x0F, treeFP4(y))
		}
	}
}

// TestQuantizerBitExact checks the quantizer the 4-bit output uses against the reference on random data: every
// block size 32..4096, odd and partial-block counts, NF4 and FP4, double quant on and off.
func TestQuantizerBitExact(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, qt := range []string{"nf4", "fp4"} {
		for bs := 32; bs <= 4096; bs *= 2 {
			for _, n := range []int{1, 7, bs - 1, bs, 3*bs + 5, 70*bs + 1} {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(rng.NormFloat64()) * 0.02
				}
				if n > 10 {
					x[3] = 0 // exact zero
				}
				packed, absmax := testmodel.Quantize4Bit(testmodel.Quant(qt), bs, x)
				wp, wa := refQuantize(qt, bs, x)
				if string(packed) != string(wp) {
					t.Fatalf("%s bs %d n %d: packed codes differ from the reference", qt, bs, n)
				}
				for i := range wa {
					if math.Float32bits(absmax[i]) != math.Float32bits(wa[i]) {
						t.Fatalf("%s bs %d n %d: absmax[%d] = %g, want %g", qt, bs, n, i, absmax[i], wa[i])
					}
				}
				nq := testmodel.DoubleQuantize(absmax)
				codes, nested, off := refDoubleQuant(absmax)
				if len(absmax) > 1 && (string(nq.Codes) != string(codes) || math.Float32bits(nq.Offset) != math.Float32bits(off)) {
					t.Fatalf("%s bs %d n %d: double quant differs from the reference", qt, bs, n)
				}
				for i := range nested {
					if len(absmax) > 1 && nq.Absmax[i] != nested[i] {
						t.Fatalf("%s bs %d n %d: nested_absmax[%d] = %g, want %g", qt, bs, n, i, nq.Absmax[i], nested[i])
					}
				}
			}
		}
	}
}

// quantCase is one 4-bit output merge.
type quantCase struct {
	name string
	base testmodel.BaseSpec
	q    QuantOutput
}

func quantCases() []quantCase {
	return []quantCase{
		{"llama-nf4-dq-bs64", tinyNF4(testmodel.ArchLlama), QuantOutput{Type: "nf4", DoubleQuant: true}},
		{"llama16-fp4-bs128-bf16-storage", tiny16(testmodel.ArchLlama, tensor.BF16), QuantOutput{Type: "fp4", Blocksize: 128, Storage: tensor.BF16}},
		{"qwen2-nf4-dq-bs32", tinyNF4(testmodel.ArchQwen2), QuantOutput{Type: "nf4", Blocksize: 32, DoubleQuant: true}},
		{"awkward-fp4-dq-bs4096", testmodel.Awkward(testmodel.ArchLlama), QuantOutput{Type: "fp4", Blocksize: 4096, DoubleQuant: true}},
	}
}

// runQuantCase merges the case to 16 bit and to 4 bit.
func runQuantCase(t *testing.T, c quantCase) (dir string, res16, res4 *Result) {
	t.Helper()
	dir = t.TempDir()
	base, ad := mergeCase{base: c.base, adapter: testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}}.generate(t, dir)
	res16 = runMergeT(t, Options{Base: base, Adapter: ad, Out: filepath.Join(dir, "out16"), DType: tensor.BF16, Threads: 2})
	q := c.q
	res4 = runMergeT(t, Options{Base: base, Adapter: ad, Out: filepath.Join(dir, "out4"), DType: tensor.BF16, Threads: 3, Quant: &q})
	return dir, res16, res4
}

// TestQuantOutputRoundTrip: the 4-bit output, used as a base, dequantizes through the reader to the values the
// quantizer promises (within its error bound of the 16-bit merge, with exactly the reported error), and
// re-quantizing the dequantized weights gives the same codes.
func TestQuantOutputRoundTrip(t *testing.T) {
	for _, c := range quantCases() {
		t.Run(c.name, func(t *testing.T) {
			dir, _, res4 := runQuantCase(t, c)
			if res4.Quant == nil || res4.Quant.Report.Quantized == 0 {
				t.Fatalf("no quantization report: %+v", res4.Quant)
			}
			out16 := readOutput(t, filepath.Join(dir, "out16"))
			out4 := readOutput(t, filepath.Join(dir, "out4"))
			// Read the 4-bit output back through the merge's own reader: merge it with an adapter that only
			// replaces model.norm.weight.
			ad := filepath.Join(dir, "noop")
			hidden := out16["model.norm.weight"].Shape
			dummyAdapter(t, ad, "model.norm.weight", hidden, make([]float32, hidden[0]))
			runMergeT(t, Options{Base: filepath.Join(dir, "out4"), Adapter: ad, Out: filepath.Join(dir, "back"), DType: tensor.BF16})
			back := readOutput(t, filepath.Join(dir, "back"))
			errs := map[string]float64{}
			for _, te := range res4.Quant.Tensors {
				errs[te.Name] = te.Max
			}
			bs := c.q.Blocksize
			if bs == 0 {
				bs = 64
			}
			for name, want := range out16 {
				got, ok := back[name]
				if !ok {
					t.Fatalf("round trip lacks %s", name)
				}
				if name == "model.norm.weight" {
					continue
				}
				ref, deq := want.floats(t), got.floats(t)
				maxErr, isQ := errs[name]
				if !isQ {
					if string(want.Raw) != string(got.Raw) {
						t.Errorf("%s: kept tensor changed", name)
					}
					continue
				}
				var worst float64
				for b := 0; b*bs < len(ref); b++ {
					blk := ref[b*bs : min((b+1)*bs, len(ref))]
					var amax float64
					for _, v := range blk {
						amax = max(amax, math.Abs(float64(v)))
					}
					for i, v := range blk {
						d := math.Abs(float64(deq[b*bs+i]) - float64(v))
						worst = max(worst, d)
						// Half the widest codebook gap (FP4: 2/3 to 1) of the block scale, plus the bf16 rounding
						// and the double-quantized scale's error.
						if d > 0.2*amax+1e-6 {
							t.Fatalf("%s[%d]: error %g above the bound for block absmax %g", name, b*bs+i, d, amax)
						}
					}
				}
				if worst != maxErr {
					t.Errorf("%s: measured max error %g, reported %g", name, worst, maxErr)
				}
				// Idempotence: re-quantizing the dequantized values gives the stored codes (FP4's -0 and +0 are
				// the same value; the quantizer writes +0 for -0.0).
				packed, _ := testmodel.Quantize4Bit(testmodel.Quant(c.q.Type), bs, deq)
				stored := out4[name].Raw
				for i := range packed {
					a, b := packed[i], stored[i]
					if c.q.Type == "fp4" {
						a, b = fp4PlusZero(a), fp4PlusZero(b)
					}
					if a != b {
						t.Fatalf("%s: byte %d re-quantizes to %#x, stored %#x", name, i, packed[i], stored[i])
					}
				}
			}
		})
	}
}

// fp4PlusZero maps the FP4 code of -0 (8) to +0 in both nibbles.
func fp4PlusZero(b byte) byte {
	if b>>4 == 8 {
		b &= 0x0F
	}
	if b&0x0F == 8 {
		b &= 0xF0
	}
	return b
}

// TestQuantOutputLayout checks the tensor key set, dtypes, shapes and config.json against fixtures written from
// transformers' save_pretrained of a bnb-4bit Llama and Qwen2 (testdata/quant4), and that bf16 quant storage
// holds the same bytes as uint8.
func TestQuantOutputLayout(t *testing.T) {
	for _, c := range []struct {
		fixture string
		base    testmodel.BaseSpec
		q       QuantOutput
	}{
		{"llama-nf4-dq", tinyNF4(testmodel.ArchLlama), QuantOutput{Type: "nf4", DoubleQuant: true}},
		{"qwen2-nf4-dq", tinyNF4(testmodel.ArchQwen2), QuantOutput{Type: "nf4", DoubleQuant: true}},
		{"llama-fp4", tiny16(testmodel.ArchLlama, tensor.BF16), QuantOutput{Type: "fp4"}},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			dir, _, _ := runQuantCase(t, quantCase{name: c.fixture, base: c.base, q: c.q})
			out := readOutput(t, filepath.Join(dir, "out4"))
			var lines []string
			for name, o := range out {
				shape := tensor.FormatShape(o.Shape)
				if _, qt := quantTypeFromKey(name); qt != "" {
					shape = "[*]"
					st, err := ParseQuantState(o.Raw)
					if err != nil || st.QuantType != c.q.Type || st.Blocksize != 64 || st.DType != tensor.BF16 || st.Nested != c.q.DoubleQuant {
						t.Errorf("%s: quant state %s: %+v, %v", name, o.Raw, st, err)
					}
				}
				lines = append(lines, name+" "+o.DType.String()+" "+shape)
			}
			sort.Strings(lines)
			got := strings.Join(lines, "\n") + "\n"
			wantKeys, err := os.ReadFile(filepath.Join("testdata", "quant4", c.fixture+".keys"))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(wantKeys) {
				t.Errorf("tensor keys:\n%s\nwant:\n%s", got, wantKeys)
			}
			cfg, err := os.ReadFile(filepath.Join(dir, "out4", "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var parsed struct {
				QC json.RawMessage `json:"quantization_config"`
				TD string          `json:"torch_dtype"`
			}
			if err := json.Unmarshal(cfg, &parsed); err != nil {
				t.Fatal(err)
			}
			wantQC, err := os.ReadFile(filepath.Join("testdata", "quant4", c.fixture+".quantization_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(cfg), strings.TrimSpace(string(wantQC))) || parsed.TD != "bfloat16" {
				t.Errorf("config.json:\n%s\nwant quantization_config:\n%s", cfg, wantQC)
			}
			card, err := os.ReadFile(filepath.Join(dir, "out4", "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(card), "merged 4-bit") || !strings.Contains(string(card), "RMSE") {
				t.Errorf("card does not describe the 4-bit output:\n%s", card)
			}
			for _, e := range noEntries(t, dir) {
				if strings.HasPrefix(e, ".hubsync") {
					t.Errorf("left behind %s", e)
				}
			}
		})
	}
	t.Run("bf16-storage", func(t *testing.T) {
		c := quantCase{base: tinyNF4(testmodel.ArchLlama), q: QuantOutput{Type: "nf4", DoubleQuant: true, Storage: tensor.BF16}}
		dir, _, _ := runQuantCase(t, c)
		c.q.Storage = tensor.U8
		dirU8, _, _ := runQuantCase(t, c)
		bf, u8 := readOutput(t, filepath.Join(dir, "out4")), readOutput(t, filepath.Join(dirU8, "out4"))
		w := "model.layers.0.self_attn.q_proj.weight"
		if bf[w].DType != tensor.BF16 || !tensor.EqualShapes(bf[w].Shape, []int64{int64(len(u8[w].Raw) / 2), 1}) {
			t.Fatalf("bf16 storage: %s is %s %v", w, bf[w].DType, bf[w].Shape)
		}
		for name, o := range u8 {
			if string(bf[name].Raw) != string(o.Raw) {
				t.Errorf("%s: bf16 storage bytes differ from uint8", name)
			}
		}
	})
}

// TestQuantOutputBadInput: clear errors for bad 4-bit options and bases.
func TestQuantOutputBadInput(t *testing.T) {
	dir := t.TempDir()
	base, ad := mergeCase{base: testmodel.Awkward(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 3}}.generate(t, dir)
	for _, c := range []struct {
		name string
		q    QuantOutput
		want string
		bad  bool
	}{
		{"no-quantizable-weights", QuantOutput{Type: "nf4", SkipModules: []string{"model", "lm_head"}}, "no quantizable weights", true},
		{"bad-type", QuantOutput{Type: "int4"}, "not nf4 or fp4", false},
		{"bad-blocksize", QuantOutput{Type: "nf4", Blocksize: 48}, "blocksize 48", false},
		{"bad-storage", QuantOutput{Type: "nf4", Storage: tensor.F16}, "quant storage", false},
		{"bf16-storage-odd-count", QuantOutput{Type: "nf4", Storage: tensor.BF16}, "150 elements", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := c.q
			_, err := Run(context.Background(), Options{Base: base, Adapter: ad, Out: filepath.Join(dir, c.name), Quant: &q})
			if err == nil || !strings.Contains(err.Error(), c.want) || IsBadInput(err) != c.bad {
				t.Fatalf("err = %v, want %q (bad input %t)", err, c.want, c.bad)
			}
			if _, err := os.Stat(filepath.Join(dir, c.name)); !os.IsNotExist(err) {
				t.Errorf("output left behind")
			}
		})
	}
}

// TestQuantOutputDeterministic: tensors of several quantizer chunks give the same bytes for 1 and 3 workers, and
// the packed codes and statistics equal a one-shot quantization of the whole 16-bit merged tensor.
func TestQuantOutputDeterministic(t *testing.T) {
	spec := testmodel.BaseSpec{Arch: testmodel.ArchLlama, Hidden: 512, Intermediate: 1100, Layers: 1, Heads: 8, KVHeads: 2,
		HeadDim: 64, Vocab: 64, DType: tensor.BF16, Quant: testmodel.QuantNone, Seed: 5}
	dir := t.TempDir()
	base, ad := mergeCase{base: spec, adapter: testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 3}}.generate(t, dir)
	runMergeT(t, Options{Base: base, Adapter: ad, Out: filepath.Join(dir, "out16"), DType: tensor.BF16})
	var outs []map[string]outTensorData
	for _, threads := range []int{1, 3} {
		out := filepath.Join(dir, "out4-"+string(rune('0'+threads)))
		runMergeT(t, Options{Base: base, Adapter: ad, Out: out, Threads: threads, Quant: &QuantOutput{Type: "nf4", DoubleQuant: true}})
		outs = append(outs, readOutput(t, out))
	}
	for name, o := range outs[0] {
		if string(outs[1][name].Raw) != string(o.Raw) {
			t.Errorf("%s differs between 1 and 3 workers", name)
		}
	}
	ref := readOutput(t, filepath.Join(dir, "out16"))
	w := "model.layers.0.mlp.down_proj.weight" // 563200 elements: 3 chunks
	packed, absmax := testmodel.Quantize4Bit(testmodel.QuantNF4, 64, ref[w].floats(t))
	nq := testmodel.DoubleQuantize(absmax)
	if string(outs[0][w].Raw) != string(packed) || string(outs[0][w+".absmax"].Raw) != string(nq.Codes) ||
		string(outs[0][w+".nested_absmax"].Raw) != string(f32Raw(nq.Absmax)) {
		t.Errorf("%s: chunked quantization differs from a one-shot quantization", w)
	}
}
