package testmodel

import (
	"io"

	"context"
	"github.com/hubsync/hubsync/internal/safetensors"
	"os"
	"path/filepath"
	"testing"
)

// benchGenerate generates spec b.N times, reporting the weight bytes written per second.
func benchGenerate(b *testing.B, spec BaseSpec) {
	info, err := PlanBase(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.TotalSize)
	root := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		dir := filepath.Join(root, "m")
		if _, err := GenerateBase(context.Background(), dir, spec); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		if i+1 < b.N {
			b.StartTimer()
		}
	}
}

// BenchmarkGenerateTinyLlamaFast writes the TinyLlama-1.1B-shaped NF4 double-quant base (≈760 MB) in fast-codes
// mode.
func BenchmarkGenerateTinyLlamaFast(b *testing.B) {
	s := TinyLlama()
	s.FastRandomCodes = true
	benchGenerate(b, s)
}

// BenchmarkGenerateQuantized writes a mid-size NF4 double-quant base by quantizing random normal data (the
// normal mode): 4 layers, hidden 1024, intermediate 2816, vocab 8000.
func BenchmarkGenerateQuantized(b *testing.B) {
	benchGenerate(b, BaseSpec{Arch: ArchLlama, Hidden: 1024, Intermediate: 2816, Layers: 4, Heads: 16, KVHeads: 4,
		Vocab: 8000, Quant: QuantNF4, DoubleQuant: true, Seed: 1})
}

// BenchmarkQuantize4Bit quantizes 1 Mi float32 values to NF4 with block size 64.
func BenchmarkQuantize4Bit(b *testing.B) {
	x := streamValues(newStream(1, "bench", valWeight, 0), 1<<20)
	b.SetBytes(int64(len(x)) * 4)
	for b.Loop() {
		Quantize4Bit(QuantNF4, 64, x)
	}
}

// BenchmarkGenerateTinyLlamaFastDiscard is BenchmarkGenerateTinyLlamaFast without the disk: the generator's own
// throughput (random codes, statistics, 16-bit values, safetensors framing and SHA-256) into io.Discard.
func BenchmarkGenerateTinyLlamaFastDiscard(b *testing.B) {
	s := TinyLlama()
	s.FastRandomCodes = true
	ns, err := s.normalize()
	if err != nil {
		b.Fatal(err)
	}
	states := newStateCache(ns, stateBudget)
	info, err := planBase(ns, states.blobLen)
	if err != nil {
		b.Fatal(err)
	}
	var entries []safetensors.Entry
	for _, t := range info.Tensors {
		entries = append(entries, safetensors.Entry{Name: t.Name, DType: t.DType, Shape: t.Shape})
	}
	l, err := safetensors.Plan(entries, map[string]string{"format": "pt"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.TotalSize)
	bw := newBaseWriter(info, states)
	for b.Loop() {
		if _, err := safetensors.Write(context.Background(), io.Discard, l, bw.fill); err != nil {
			b.Fatal(err)
		}
	}
}
