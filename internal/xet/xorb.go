package xet

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/pierrec/lz4/v4"
)

// Xorb limits.
const (
	// MaxXorbBytes is the largest serialized xorb the CAS accepts.
	MaxXorbBytes = 64 << 20
	// MaxXorbChunks is the chunk cap of the reference clients.
	MaxXorbChunks = 8192
	// chunkHeaderSize is the size of a chunk header in a serialized xorb.
	chunkHeaderSize = 8
)

// Compression is a chunk compression scheme in a serialized xorb.
type Compression uint8

// Chunk compression schemes.
const (
	CompressionNone Compression = 0
	CompressionLZ4  Compression = 1
	CompressionBG4  Compression = 2 // byte grouping by 4, then LZ4
)

// String names the scheme as the spec does.
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "None"
	case CompressionLZ4:
		return "LZ4"
	case CompressionBG4:
		return "ByteGrouping4LZ4"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// ErrXorbFull is returned by XorbBuilder.AddChunk when the chunk would push the xorb past MaxXorbBytes (footer
// included) or MaxXorbChunks; the caller uploads the xorb and starts a new one.
var ErrXorbFull = errors.New("xet: xorb full")

// XorbBuilder collects chunks into one xorb. Like the JS client it stores each chunk as the smaller of LZ4 and
// BG4+LZ4, or raw when neither is smaller than the chunk. A XorbBuilder is not safe for concurrent use.
type XorbBuilder struct {
	buf    []byte
	chunks []CASChunk
	ends   []uint32 // end offset of each chunk (header included) in buf
	raw    uint32   // unpacked bytes so far
	lz     lz4.Compressor
	tmp    []byte // BG4 scratch
	a, b   []byte // compression scratch
}

// NewXorbBuilder returns an empty xorb.
func NewXorbBuilder() *XorbBuilder { return &XorbBuilder{} }

// AddChunk appends a chunk (1 to MaxChunkSize bytes) and returns its index in the xorb, or ErrXorbFull.
func (b *XorbBuilder) AddChunk(data []byte) (int, error) {
	return b.AddHashedChunk(ChunkRef{Hash: ChunkHash(data), Len: uint32(len(data))}, data)
}

// AddHashedChunk is AddChunk for a chunk whose hash the caller already has (from Chunks or Split).
func (b *XorbBuilder) AddHashedChunk(ref ChunkRef, data []byte) (int, error) {
	if len(data) == 0 || len(data) > MaxChunkSize || int(ref.Len) != len(data) {
		return 0, fmt.Errorf("xet: xorb chunk of %d bytes (ref says %d): want 1 to %d", len(data), ref.Len, MaxChunkSize)
	}
	if len(b.chunks) >= MaxXorbChunks {
		return 0, ErrXorbFull
	}
	scheme, stored := b.compress(data)
	if len(b.buf)+chunkHeaderSize+len(stored)+xorbFooterSize(len(b.chunks)+1) > MaxXorbBytes {
		return 0, ErrXorbFull
	}
	var h [chunkHeaderSize]byte
	putChunkHeader(h[:], scheme, len(stored), len(data))
	b.buf = append(b.buf, h[:]...)
	b.buf = append(b.buf, stored...)
	b.chunks = append(b.chunks, CASChunk{Hash: ref.Hash, ByteStart: b.raw, Len: ref.Len})
	b.ends = append(b.ends, uint32(len(b.buf)))
	b.raw += ref.Len
	return len(b.chunks) - 1, nil
}

// compress returns the smallest stored form of data; the slice is valid until the next call.
func (b *XorbBuilder) compress(data []byte) (Compression, []byte) {
	var okA, okB bool
	b.a, okA = lz4Compress(&b.lz, b.a[:0], data)
	b.tmp = bg4Split(b.tmp[:0], data)
	b.b, okB = lz4Compress(&b.lz, b.b[:0], b.tmp)
	best, scheme := data, CompressionNone
	switch {
	case okB && (!okA || len(b.b) < len(b.a)):
		best, scheme = b.b, CompressionBG4
	case okA:
		best, scheme = b.a, CompressionLZ4
	}
	if len(best) >= len(data) {
		return CompressionNone, data
	}
	return scheme, best
}

// putChunkHeader writes a chunk header: version 0, stored length (u24), scheme, raw length (u24).
func putChunkHeader(h []byte, scheme Compression, stored, raw int) {
	h[0] = 0
	h[1], h[2], h[3] = byte(stored), byte(stored>>8), byte(stored>>16)
	h[4] = byte(scheme)
	h[5], h[6], h[7] = byte(raw), byte(raw>>8), byte(raw>>16)
}

// bg4Split appends data regrouped by byte position modulo 4 to dst: all bytes 0, then 1, 2, 3; with a length
// not a multiple of 4 the first len%4 groups are one byte longer.
func bg4Split(dst, data []byte) []byte {
	n := len(data)
	start := len(dst)
	dst = grow(dst, n)
	out := dst[start:]
	pos := 0
	for g := range 4 {
		for i := g; i < n; i += 4 {
			out[pos] = data[i]
			pos++
		}
	}
	return dst
}

// bg4Regroup undoes bg4Split: it writes the original order of grouped into dst (same length).
func bg4Regroup(dst, grouped []byte) {
	n := len(grouped)
	pos := 0
	for g := range 4 {
		for i := g; i < n; i += 4 {
			dst[i] = grouped[pos]
			pos++
		}
	}
}

// Len returns the number of chunks in the xorb.
func (b *XorbBuilder) Len() int { return len(b.chunks) }

// Size returns the serialized size of the xorb so far, without footer.
func (b *XorbBuilder) Size() int { return len(b.buf) }

// RawSize returns the unpacked bytes of the chunks so far.
func (b *XorbBuilder) RawSize() int { return int(b.raw) }

// Chunks returns the references of the chunks in xorb order.
func (b *XorbBuilder) Chunks() []ChunkRef {
	refs := make([]ChunkRef, len(b.chunks))
	for i, c := range b.chunks {
		refs[i] = ChunkRef{Hash: c.Hash, Len: c.Len}
	}
	return refs
}

// Hash returns the xorb hash over the chunks added so far.
func (b *XorbBuilder) Hash() Hash { return XorbHash(b.Chunks()) }

// Serialize returns the serialized xorb without the XorbObjectInfo footer, as the JS client uploads it.
func (b *XorbBuilder) Serialize() []byte { return bytes.Clone(b.buf) }

// SerializeWithFooter returns the serialized xorb followed by its XorbObjectInfo (v1) footer and the footer
// length, as xet-core writes it.
func (b *XorbBuilder) SerializeWithFooter() []byte {
	out := make([]byte, len(b.buf), len(b.buf)+xorbFooterSize(len(b.chunks)))
	copy(out, b.buf)
	hashes := make([]Hash, len(b.chunks))
	unpacked := make([]uint32, len(b.chunks))
	for i, c := range b.chunks {
		hashes[i] = c.Hash
		unpacked[i] = c.ByteStart + c.Len
	}
	return appendXorbFooter(out, b.Hash(), hashes, b.ends, unpacked)
}

// CASInfo returns the shard CAS-info entry that describes this xorb as Serialize returns it.
func (b *XorbBuilder) CASInfo() CASInfo {
	return CASInfo{Xorb: b.Hash(), Chunks: slices.Clone(b.chunks), Bytes: b.raw, BytesOnDisk: uint32(len(b.buf))}
}
