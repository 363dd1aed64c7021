package xet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// floatChunk returns bf16-like data that BG4 groups well: slowly varying float32s.
func floatChunk(n int) []byte {
	b := make([]byte, n)
	for i := 0; i+4 <= n; i += 4 {
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(1+float32(i%977)/4096))
	}
	return b
}

// testChunks is a mix that exercises every compression scheme.
func testChunks() [][]byte {
	return [][]byte{
		randBytes(10, 70000), // incompressible: None
		bytes.Repeat([]byte("the quick brown fox "), 3000), // text: LZ4
		floatChunk(65536 + 3),                              // floats, odd length: BG4
		make([]byte, MaxChunkSize),                         // zeros
		{7},                                                // one byte
	}
}

func buildXorb(t testing.TB, chunks [][]byte) *XorbBuilder {
	t.Helper()
	b := NewXorbBuilder()
	for i, c := range chunks {
		idx, err := b.AddChunk(c)
		if err != nil || idx != i {
			t.Fatalf("AddChunk %d: %d, %v", i, idx, err)
		}
	}
	return b
}

func TestXorbRoundTrip(t *testing.T) {
	chunks := testChunks()
	b := buildXorb(t, chunks)
	wantSchemes := []Compression{CompressionNone, CompressionLZ4, CompressionBG4}
	for _, footer := range []bool{false, true} {
		ser := b.Serialize()
		if footer {
			ser = b.SerializeWithFooter()
			if len(ser) != b.Size()+xorbFooterSize(len(chunks)) {
				t.Fatalf("footer of %d bytes, want %d", len(ser)-b.Size(), xorbFooterSize(len(chunks)))
			}
		}
		x, err := ParseXorb(ser)
		if err != nil {
			t.Fatalf("footer %v: %v", footer, err)
		}
		if x.HasFooter != footer || x.Hash != b.Hash() || x.DataLen != b.Size() {
			t.Fatalf("footer %v: parsed %v %s %d, built %s %d", footer, x.HasFooter, x.Hash, x.DataLen, b.Hash(), b.Size())
		}
		if len(x.Chunks) != len(chunks) {
			t.Fatalf("%d chunks, want %d", len(x.Chunks), len(chunks))
		}
		for i, c := range x.Chunks {
			if !bytes.Equal(c.Data, chunks[i]) || c.Ref.Hash != ChunkHash(chunks[i]) {
				t.Errorf("chunk %d differs", i)
			}
			if i < len(wantSchemes) && c.Compression != wantSchemes[i] {
				t.Errorf("chunk %d stored as %v, want %v", i, c.Compression, wantSchemes[i])
			}
		}
		ci, want := x.CASInfo(), b.CASInfo()
		if ci.Xorb != want.Xorb || ci.Bytes != want.Bytes || ci.BytesOnDisk != want.BytesOnDisk || !slicesEqual(ci.Chunks, want.Chunks) {
			t.Errorf("CASInfo %+v, builder says %+v", ci, want)
		}
	}
	if b.RawSize() != int(b.CASInfo().Bytes) || b.Len() != len(chunks) {
		t.Error("RawSize or Len")
	}
	// The zero chunk compresses to a few hundred bytes.
	if b.Size() > 70000+3000*20+70000+1000+100 {
		t.Errorf("xorb of %d bytes: compression not applied", b.Size())
	}
}

func TestDecodeChunksRange(t *testing.T) {
	b := buildXorb(t, testChunks())
	ser := b.Serialize()
	x, err := ParseXorb(ser)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks [1, 3) as a reconstruction fetch returns them.
	part := ser[x.Chunks[1].Offset:x.Chunks[3].Offset]
	got, err := DecodeChunks(part)
	if err != nil || len(got) != 2 || got[0].Ref != x.Chunks[1].Ref || got[1].Ref != x.Chunks[2].Ref {
		t.Fatalf("DecodeChunks: %d chunks, %v", len(got), err)
	}
	if _, err := DecodeChunks(b.SerializeWithFooter()); err == nil {
		t.Error("DecodeChunks accepted a footer")
	}
}

func TestXorbFull(t *testing.T) {
	t.Run("chunk count", func(t *testing.T) {
		b := NewXorbBuilder()
		for i := range MaxXorbChunks {
			if _, err := b.AddChunk([]byte{byte(i), byte(i >> 8)}); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
		if _, err := b.AddChunk([]byte{1}); !errors.Is(err, ErrXorbFull) {
			t.Fatalf("chunk %d: %v, want ErrXorbFull", MaxXorbChunks, err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		if testing.Short() {
			t.Skip("64 MiB")
		}
		b := NewXorbBuilder()
		chunk := randBytes(11, MaxChunkSize)
		n := 0
		for {
			chunk[0], chunk[1] = byte(n), byte(n>>8) // distinct chunks
			if _, err := b.AddChunk(chunk); errors.Is(err, ErrXorbFull) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if len(b.SerializeWithFooter()) > MaxXorbBytes || b.Size()+chunkHeaderSize+MaxChunkSize+xorbFooterSize(n+1) <= MaxXorbBytes {
			t.Fatalf("full at %d chunks, %d bytes", n, b.Size())
		}
	})
	t.Run("bad chunk", func(t *testing.T) {
		b := NewXorbBuilder()
		for _, c := range [][]byte{nil, make([]byte, MaxChunkSize+1)} {
			if _, err := b.AddChunk(c); err == nil {
				t.Errorf("AddChunk of %d bytes succeeded", len(c))
			}
		}
		if _, err := b.AddHashedChunk(ChunkRef{Len: 3}, []byte{1, 2}); err == nil {
			t.Error("AddHashedChunk with a wrong length succeeded")
		}
	})
}

// TestLZ4Frames checks that our frames are standard (pierrec's frame reader reads them) and that we read the
// frames other writers produce: pierrec's (checksums, content size, 64 KiB linked or independent blocks) and
// lz4js's layout (FLG 0x40, 4 MiB blocks).
func TestLZ4Frames(t *testing.T) {
	data := append(bytes.Repeat([]byte("abcdefgh12345678"), 9000), floatChunk(10000)...)
	var c lz4.Compressor
	ours, ok := lz4Compress(&c, nil, data)
	if !ok {
		t.Fatal("not compressed")
	}
	got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(ours)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pierrec reading our frame: %v", err)
	}
	options := map[string][]lz4.Option{
		"checksums":     {lz4.ChecksumOption(true), lz4.BlockChecksumOption(true), lz4.SizeOption(uint64(len(data)))},
		"64 KiB blocks": {lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)},
		"4 MiB blocks":  {lz4.BlockSizeOption(lz4.Block4Mb), lz4.ChecksumOption(false)},
	}
	for name, opts := range options {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if err := w.Apply(append(opts, lz4.ConcurrencyOption(1))...); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(data))
		if err := lz4Decompress(out, buf.Bytes()); err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// lz4js: FLG 0x40 (linked blocks), BD 0x70; our block inside.
	js := bytes.Clone(ours)
	js[4], js[5] = 0x40, 0x70
	out := make([]byte, len(data))
	if err := lz4Decompress(out, js); err != nil || !bytes.Equal(out, data) {
		t.Errorf("lz4js layout: %v", err)
	}
	// A stored (uncompressed) block.
	stored := binary.LittleEndian.AppendUint32(bytes.Clone(ours[:7]), uint32(len(data))|lz4Uncomp)
	stored = binary.LittleEndian.AppendUint32(append(stored, data...), 0)
	if err := lz4Decompress(out, stored); err != nil || !bytes.Equal(out, data) {
		t.Errorf("stored block: %v", err)
	}
	bad := map[string][]byte{
		"magic":     append([]byte{0, 0, 0, 0}, ours[4:]...),
		"dict":      append(append(bytes.Clone(ours[:4]), 0x61), ours[5:]...),
		"truncated": ours[:len(ours)-5],
		"trailing":  append(bytes.Clone(ours), 0),
		"short":     ours[:5],
	}
	for name, b := range bad {
		if err := lz4Decompress(make([]byte, len(data)), b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := lz4Decompress(make([]byte, len(data)+1), ours); err == nil {
		t.Error("short output accepted")
	}
}

func TestBG4(t *testing.T) {
	for n := range 11 {
		data := randBytes(uint64(n), n)
		grouped := bg4Split(nil, data)
		back := make([]byte, n)
		bg4Regroup(back, grouped)
		if !bytes.Equal(back, data) {
			t.Errorf("length %d: regroup does not undo split", n)
		}
	}
	got := bg4Split(nil, []byte{'a', 'b', 'c', 'd', 'A', 'B', 'C', 'D', '1', '2'})
	if string(got) != "aA1bB2cCdD" {
		t.Errorf("bg4Split = %q, want %q", got, "aA1bB2cCdD")
	}
}

// corrupt returns a copy of b with f applied.
func corrupt(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }

func TestParseXorbErrors(t *testing.T) {
	b := buildXorb(t, testChunks())
	plain, full := b.Serialize(), b.SerializeWithFooter()
	x, _ := ParseXorb(plain)
	lz := x.Chunks[1].Offset // an LZ4 chunk
	footer := len(plain)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no chunks"},
		{"truncated header", plain[:5], "truncated header"},
		{"header version", corrupt(plain, func(b []byte) []byte { b[0] = 1; return b }), "chunk header version"},
		{"scheme", corrupt(plain, func(b []byte) []byte { b[4] = 3; return b }), "unknown compression scheme 3"},
		{"zero length", corrupt(plain, func(b []byte) []byte { b[5], b[6], b[7] = 0, 0, 0; return b }), "uncompressed length 0"},
		{"too long", corrupt(plain, func(b []byte) []byte { b[7] = 3; return b }), "uncompressed length"},
		{"stored != raw", corrupt(plain, func(b []byte) []byte { b[5]--; return b }), "stored length"},
		{"truncated data", plain[:len(plain)-1], "stored bytes, only"},
		{"bad lz4", corrupt(plain, func(b []byte) []byte { b[lz+8] ^= 0xFF; return b }), "LZ4"},
		{"lz4 length", corrupt(plain, func(b []byte) []byte { b[lz+5]++; return b }), "LZ4"},
		{"footer hash", corrupt(full, func(b []byte) []byte { b[footer+8] ^= 1; return b }), "xorb hash"},
		{"footer version", corrupt(full, func(b []byte) []byte { b[footer+7] = 0; return b }), "version 0"},
		{"footer chunk hash", corrupt(full, func(b []byte) []byte { b[footer+40+12] ^= 1; return b }), "chunk 0 hash"},
		{"footer info length", corrupt(full, func(b []byte) []byte { b[len(b)-4]++; return b }), "info length"},
		{"footer truncated", append(bytes.Clone(plain), xorbIdent...), "too short"},
		{"footer boundary", corrupt(full, func(b []byte) []byte {
			p := footer + 40 + 12 + 32*len(x.Chunks) + 12
			b[p]++
			return b
		}), "chunk 0 ends at"},
		{"footer offsets", corrupt(full, func(b []byte) []byte { b[len(b)-4-16-4]++; return b }), "offset from end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseXorb(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzParseXorb(f *testing.F) {
	b := buildXorb(f, [][]byte{randBytes(1, 300), bytes.Repeat([]byte("ab"), 400), floatChunk(403)})
	f.Add(b.Serialize())
	f.Add(b.SerializeWithFooter())
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		x, err := ParseXorb(in)
		if err != nil {
			return
		}
		// What parses rebuilds to the same hash, and the footer we write parses back.
		nb := NewXorbBuilder()
		for _, c := range x.Chunks {
			if ChunkHash(c.Data) != c.Ref.Hash || int(c.Ref.Len) != len(c.Data) {
				t.Fatal("chunk ref does not describe its data")
			}
			if _, err := nb.AddChunk(c.Data); err != nil {
				t.Fatal(err)
			}
		}
		if nb.Hash() != x.Hash {
			t.Fatal("rebuilt xorb hash differs")
		}
		y, err := ParseXorb(nb.SerializeWithFooter())
		if err != nil || y.Hash != x.Hash {
			t.Fatalf("rebuilt xorb: %v", err)
		}
	})
}
