package testmodel

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

func FuzzParseQuantState(f *testing.F) {
	for _, s := range []string{
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096]}`,
		`{"quant_type": "fp4", "blocksize": 4096, "dtype": "float16", "shape": [1, 3], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.0213}`,
		`{"quant_type":"nf4","blocksize":64,"dtype":"torch.float32","shape":[2,2],"nested_offset":1e-05,"nested_blocksize":256,"nested_dtype":"float32"}`,
		`{"quant_type": "nf4", "blocksize": 63, "dtype": "bfloat16", "shape": [2]}`,
		`{"quant_type": "nf4"} {}`, `[]`, ``, `{"shape": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		qs, err := ParseQuantState(blob)
		if err != nil {
			return
		}
		if qs.Blocksize <= 0 || len(qs.Shape) == 0 || (qs.QuantType != "nf4" && qs.QuantType != "fp4") {
			t.Fatalf("accepted %+v", qs)
		}
		again, err := ParseQuantState(qs.Encode())
		if err != nil {
			t.Fatalf("re-parse of %s: %v", qs.Encode(), err)
		}
		if again.QuantType != qs.QuantType || again.Blocksize != qs.Blocksize || again.DType != qs.DType ||
			!tensorShapesEqual(again.Shape, qs.Shape) || again.Nested != qs.Nested ||
			math.Float32bits(again.NestedOffset) != math.Float32bits(qs.NestedOffset) {
			t.Fatalf("round trip %+v -> %s -> %+v", qs, qs.Encode(), again)
		}
	})
}

func tensorShapesEqual(a, b []int64) bool { return tensor.EqualShapes(a, b) }

func FuzzParseAdapterConfig(f *testing.F) {
	for _, s := range []string{
		`{"peft_type": "LORA", "r": 16, "lora_alpha": 32, "rank_pattern": {"q_proj": 8, "model.layers.0.self_attn.q_proj": 4}, "alpha_pattern": {"v_proj": 2.5}}`,
		`{"peft_type": "LORA", "use_rslora": true, "use_dora": true, "fan_in_fan_out": true, "rank_pattern": null}`,
		`{"peft_type": "LORA", "rank_pattern": {"(": 1}}`,
		`{"peft_type": "LORA", "rank_pattern": {"a": 1, "a": 2}}`,
		`{"peft_type": "LORA", "r": 0.5}`, `{"peft_type": "LOHA"}`, `{}`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseAdapterConfig(data)
		if err != nil {
			return
		}
		if cfg.R <= 0 {
			t.Fatalf("accepted r %d", cfg.R)
		}
		for _, m := range []string{"model.layers.0.self_attn.q_proj", "lm_head", ""} {
			lookup(cfg.RankPattern, m, float64(cfg.R))
			lookup(cfg.AlphaPattern, m, cfg.Alpha)
		}
	})
}

func FuzzPyFloat(f *testing.F) {
	for _, x := range []float64{0, math.Copysign(0, -1), 1, 0.5, 1e-5, 1e-4, 123456789012345678, 1e16, 9999999999999998,
		0.021340912, float64(float32(0.0213)), math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.NaN()} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		s := PyFloat(x)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		back, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(back) != math.Float64bits(x) {
			t.Fatalf("PyFloat(%v) = %q, parses back to %v (%v)", x, s, back, err)
		}
		if i := strings.IndexByte(s, 'e'); i >= 0 {
			e, _ := strconv.Atoi(s[i+1:])
			if e >= -4 && e < 16 {
				t.Fatalf("PyFloat(%v) = %q: Python uses fixed notation for exponent %d", x, s, e)
			}
		} else if !strings.Contains(s, ".") {
			t.Fatalf("PyFloat(%v) = %q has no decimal point", x, s)
		}
	})
}

func FuzzUnmarshalSidecar(f *testing.F) {
	good, err := marshalSidecar(Tiny(ArchQwen2))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"arch": "llama", "dtype": "BF16", "quant_storage": "U8", "extra": 1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := unmarshalSidecar(data)
		if err != nil {
			return
		}
		if _, err := s.normalize(); err != nil {
			return
		}
		if _, err := marshalSidecar(s); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPyFloat(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1, "1.0"}, {10000, "10000.0"}, {1e-5, "1e-05"}, {1e-4, "0.0001"},
		{1e16, "1e+16"}, {1234567890123456, "1234567890123456.0"}, {0.1, "0.1"}, {-2.5e-7, "-2.5e-07"},
		{float64(float32(0.0213)), "0.021299999207258224"}, {6, "6.0"}, {1.5e300, "1.5e+300"},
	} {
		if got := PyFloat(tc.x); got != tc.want {
			t.Errorf("PyFloat(%v) = %q, want %q", tc.x, got, tc.want)
		}
	}
}
