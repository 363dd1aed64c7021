package export

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// llama3Specs is the Llama-3-8B state dict (model-formats.md §7.2) in bf16: 291 tensors, 16.06 GB.
func llama3Specs() []TensorSpec {
	const hidden, inter, vocab, kv = 4096, 14336, 128256, 1024
	specs := []TensorSpec{{Name: "model.embed_tokens.weight", DType: tensor.BF16, Shape: []int64{vocab, hidden}}}
	for l := range 32 {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, m := range []struct {
			n    string
			o, i int64
		}{{"self_attn.q_proj", hidden, hidden}, {"self_attn.k_proj", kv, hidden}, {"self_attn.v_proj", kv, hidden},
			{"self_attn.o_proj", hidden, hidden}, {"mlp.gate_proj", inter, hidden}, {"mlp.up_proj", inter, hidden},
			{"mlp.down_proj", hidden, inter}} {
			specs = append(specs, TensorSpec{Name: p + m.n + ".weight", DType: tensor.BF16, Shape: []int64{m.o, m.i}})
		}
		specs = append(specs,
			TensorSpec{Name: p + "input_layernorm.weight", DType: tensor.BF16, Shape: []int64{hidden}},
			TensorSpec{Name: p + "post_attention_layernorm.weight", DType: tensor.BF16, Shape: []int64{hidden}})
	}
	return append(specs,
		TensorSpec{Name: "model.norm.weight", DType: tensor.BF16, Shape: []int64{hidden}},
		TensorSpec{Name: "lm_head.weight", DType: tensor.BF16, Shape: []int64{vocab, hidden}})
}

func TestLlama3Plan(t *testing.T) {
	p, err := PlanShards(llama3Specs(), DefaultMaxShardSize)
	if err != nil {
		t.Fatal(err)
	}
	if p.TotalSize != 16_060_522_496 || p.TotalParameters != 8_030_261_248 || len(p.Shards) != 4 {
		t.Errorf("plan: %d bytes, %d params, %d shards", p.TotalSize, p.TotalParameters, len(p.Shards))
	}
	for _, s := range p.Shards {
		if s.Layout.DataSize() > DefaultMaxShardSize {
			t.Errorf("%s holds %d bytes", s.FileName, s.Layout.DataSize())
		}
	}
}

func BenchmarkPlanShardsLlama3(b *testing.B) {
	specs := llama3Specs()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PlanShards(specs, DefaultMaxShardSize); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(specs)), "tensors")
}

// BenchmarkWriteShards measures the shard writer (header, streamed tensor bytes, SHA-256 while writing, fsync,
// renames) on 64 MiB of bf16 data in 4 shards; the fill only copies from a prepared buffer.
func BenchmarkWriteShards(b *testing.B) {
	var specs []TensorSpec
	for i := range 16 {
		specs = append(specs, TensorSpec{Name: fmt.Sprintf("w%02d", i), DType: tensor.BF16, Shape: []int64{1024, 2048}})
	}
	plan, err := PlanShards(specs, 16<<20)
	if err != nil {
		b.Fatal(err)
	}
	buf := tensorBytes("bench", 4<<20)
	fill := func(_ context.Context, t safetensors.TensorInfo, w io.Writer) error {
		_, err := w.Write(buf[:t.Size()])
		return err
	}
	b.SetBytes(plan.FileSize())
	root := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		out, err := CreateOutput(filepath.Join(root, fmt.Sprint(i)))
		if err != nil {
			b.Fatal(err)
		}
		if err := out.WriteShards(context.Background(), plan, fill); err != nil {
			b.Fatal(err)
		}
		out.Abort()
	}
	b.ReportMetric(float64(len(plan.Shards)), "shards")
}

func BenchmarkRewriteConfig(b *testing.B) {
	raw := []byte(bnbConfig)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := RewriteConfig(raw, tensor.BF16, 0); err != nil {
			b.Fatal(err)
		}
	}
}
