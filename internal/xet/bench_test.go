package xet

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

const benchSize = 16 << 20

// cpuRate locks the benchmark to its OS thread and, when it ends, reports MB per second of that thread's CPU
// time ("cpu-MB/s"): a per-core figure that holds on a loaded machine, where wall-clock MB/s only measures
// the share of a core the benchmark got.
func cpuRate(b *testing.B, bytesPerOp int) {
	b.SetBytes(int64(bytesPerOp))
	runtime.LockOSThread()
	b.ResetTimer()
	start := threadCPU()
	b.Cleanup(func() {
		defer runtime.UnlockOSThread()
		if cpu := threadCPU() - start; cpu > 0 {
			b.ReportMetric(float64(bytesPerOp)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
		}
	})
}

// BenchmarkChunk measures the gearhash chunker alone (cut points, no hashing).
func BenchmarkChunk(b *testing.B) {
	data := randBytes(30, benchSize)
	cpuRate(b, len(data))
	for range b.N {
		var c Chunker
		for pos := 0; pos < len(data); {
			n, _ := c.Next(data[pos:])
			pos += n
		}
	}
}

// BenchmarkGearScan compares the gearhash loops on the same data in one run: ref is the previous loop
// (gearScanRef), go the portable gearScanGo, and gearScan what Chunker uses (the assembly loop on amd64). Each
// scans from cut to cut without the skip-ahead, so all bytes are hashed.
func BenchmarkGearScan(b *testing.B) {
	data := randBytes(30, benchSize)
	for _, s := range []struct {
		name string
		scan func(uint64, []byte) (int, uint64)
	}{{"ref", gearScanRef}, {"go", gearScanGo}, {"gearScan", gearScan}} {
		b.Run(s.name, func(b *testing.B) {
			cpuRate(b, len(data))
			for range b.N {
				var h uint64
				for pos := 0; pos < len(data); {
					p, next := s.scan(h, data[pos:])
					if p < 0 {
						break
					}
					pos, h = pos+p, next
				}
			}
		})
	}
}

// BenchmarkChunkHash measures the keyed BLAKE3 chunk hash on 64 KiB chunks.
func BenchmarkChunkHash(b *testing.B) {
	data := randBytes(31, TargetChunkSize)
	cpuRate(b, len(data))
	for range b.N {
		ChunkHash(data)
	}
}

// BenchmarkChunks measures chunking plus chunk hashing of an in-memory file: the per-core upload ceiling
// before compression.
func BenchmarkChunks(b *testing.B) {
	data := randBytes(32, benchSize)
	cpuRate(b, len(data))
	for range b.N {
		Chunks(data)
	}
}

// BenchmarkSplit is BenchmarkChunks through the streaming reader interface.
func BenchmarkSplit(b *testing.B) {
	data := randBytes(33, benchSize)
	cpuRate(b, len(data))
	for range b.N {
		_ = Split(context.Background(), bytes.NewReader(data), func([]byte, ChunkRef) error { return nil })
	}
}

// BenchmarkXorbAddChunk measures the compression choice (LZ4 and BG4+LZ4 tried per chunk) on float data.
func BenchmarkXorbAddChunk(b *testing.B) {
	data := floatChunk(TargetChunkSize)
	ref := ChunkRef{Hash: ChunkHash(data), Len: uint32(len(data))}
	cpuRate(b, len(data))
	x := NewXorbBuilder()
	for range b.N {
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
	cpuRate(b, x.RawSize())
	for range b.N {
		if _, err := ParseXorb(ser); err != nil {
			b.Fatal(err)
		}
	}
}
