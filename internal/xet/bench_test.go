package xet

import (
	"bytes"
	"context"
	"testing"
)

const benchSize = 16 << 20

// BenchmarkChunk measures the gearhash chunker alone (cut points, no hashing).
func BenchmarkChunk(b *testing.B) {
	data := randBytes(30, benchSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var c Chunker
		for pos := 0; pos < len(data); {
			n, _ := c.Next(data[pos:])
			pos += n
		}
	}
}

// BenchmarkChunkHash measures the keyed BLAKE3 chunk hash on 64 KiB chunks.
func BenchmarkChunkHash(b *testing.B) {
	data := randBytes(31, TargetChunkSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		ChunkHash(data)
	}
}

// BenchmarkChunks measures chunking plus chunk hashing of an in-memory file: the per-core upload ceiling
// before compression.
func BenchmarkChunks(b *testing.B) {
	data := randBytes(32, benchSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Chunks(data)
	}
}

// BenchmarkSplit is BenchmarkChunks through the streaming reader interface.
func BenchmarkSplit(b *testing.B) {
	data := randBytes(33, benchSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = Split(context.Background(), bytes.NewReader(data), func([]byte, ChunkRef) error { return nil })
	}
}

// BenchmarkXorbAddChunk measures the compression choice (LZ4 and BG4+LZ4 tried per chunk) on float data.
func BenchmarkXorbAddChunk(b *testing.B) {
	data := floatChunk(TargetChunkSize)
	ref := ChunkRef{Hash: ChunkHash(data), Len: uint32(len(data))}
	b.SetBytes(int64(len(data)))
	x := NewXorbBuilder()
	for b.Loop() {
		if _, err := x.AddHashedChunk(ref, data); err != nil {
			x = NewXorbBuilder()
		}
	}
}

// BenchmarkParseXorb measures parsing, decompression and re-hashing (what a CAS does on upload).
func BenchmarkParseXorb(b *testing.B) {
	x := NewXorbBuilder()
	for i := range 64 {
		d := floatChunk(TargetChunkSize)
		d[0] = byte(i)
		if _, err := x.AddChunk(d); err != nil {
			b.Fatal(err)
		}
	}
	ser := x.Serialize()
	b.SetBytes(int64(x.RawSize()))
	for b.Loop() {
		if _, err := ParseXorb(ser); err != nil {
			b.Fatal(err)
		}
	}
}
