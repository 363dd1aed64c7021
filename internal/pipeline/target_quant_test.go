package pipeline

import (
	"testing"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/tensor"
)

// TestTargetFromWatchQuant: dtype nf4|fp4 with the quant keys becomes a 4-bit merge whose DType is the compute
// dtype; a float dtype has no 4-bit options.
func TestTargetFromWatchQuant(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name     string
		w        config.Watch
		wantType string
		wantDQ   bool
		wantDT   tensor.DType
		wantBS   int
		storage  tensor.DType
	}{
		{"bf16", config.Watch{DType: "bf16"}, "", false, tensor.BF16, 0, tensor.Invalid},
		{"nf4 defaults", config.Watch{DType: "nf4"}, "nf4", true, tensor.Invalid, 0, tensor.U8},
		{"fp4 configured", config.Watch{DType: "fp4", Quant: config.Quant4Bit{DoubleQuant: &no, Blocksize: 128,
			ComputeDType: "fp16", Storage: "bf16"}}, "fp4", false, tensor.F16, 128, tensor.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := TargetFromWatch(tc.w, "cpu")
			if err != nil {
				t.Fatal(err)
			}
			if tg.DType != tc.wantDT {
				t.Errorf("DType %s, want %s", tg.DType, tc.wantDT)
			}
			if tc.wantType == "" {
				if tg.Quant != nil {
					t.Errorf("Quant %+v for a float dtype", tg.Quant)
				}
				return
			}
			q := tg.Quant
			if q == nil || q.Type != tc.wantType || q.DoubleQuant != tc.wantDQ || q.Blocksize != tc.wantBS || q.Storage != tc.storage {
				t.Errorf("Quant %+v", q)
			}
		})
	}
}

// TestTargetFromWatchGGUF: the gguf keys reach the Target (types parsed, folder, pre-tokenizer override).
func TestTargetFromWatchGGUF(t *testing.T) {
	tg, err := TargetFromWatch(config.Watch{DType: "bf16", GGUF: []string{"Q4_K_M", "q8_0"}, GGUFPath: "gguf", GGUFPre: "qwen2"}, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.GGUF) != 2 || tg.GGUF[0].String() != "Q4_K_M" || tg.GGUF[1].String() != "Q8_0" || tg.GGUFPath != "gguf" || tg.GGUFPre != "qwen2" {
		t.Errorf("GGUF %v, path %q, pre %q", tg.GGUF, tg.GGUFPath, tg.GGUFPre)
	}
}
