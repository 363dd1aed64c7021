package llamacpp

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestHarnessQuantizeDriver checks quantize.py: llama_model_quantize turns the suite's own F32 file into Q4_K_M
// with llama.cpp's mix (attn_v and ffn_down of the use_more_bits layers, and output.weight, in Q6_K; the rest of
// the matrices Q4_K; norms F32).
func TestHarnessQuantizeDriver(t *testing.T) {
	o := Find(t)
	dir := t.TempDir()
	md := filepath.Join(dir, "m")
	if _, err := testmodel.GenerateBase(context.Background(), md, testmodel.GGUFSmall(testmodel.ArchLlama)); err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "f32.gguf"), filepath.Join(dir, "q4km.gguf")
	writeF32GGUF(t, md, src)
	runQuantize(t, o, []quantizeJob{{src, dst, 15}})
	f, err := parseGGUF(dst)
	if err != nil {
		t.Fatal(err)
	}
	// With 2 layers use_more_bits(i, 2) holds for layer 1 only (i >= 7·2/8).
	want := map[string]uint32{"token_embd.weight": 12, "blk.0.attn_v.weight": 12, "blk.1.attn_v.weight": 14,
		"blk.0.ffn_down.weight": 12, "blk.1.ffn_down.weight": 14, "blk.0.attn_q.weight": 12,
		"blk.0.attn_norm.weight": 0, "output.weight": 14}
	seen := 0
	for _, ti := range f.Tensors {
		if w, ok := want[ti.Name]; ok {
			seen++
			if ti.Type != w {
				t.Errorf("%s: type %d, want %d", ti.Name, ti.Type, w)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d expected tensors", seen, len(want))
	}
}
