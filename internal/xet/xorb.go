package xet

import (
	"errors"
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

// ErrXorbFull is returned by XorbBuilder.AddChunk when the chunk would push the xorb past MaxXorbBytes or
// MaxXorbChunks; the caller serializes the xorb and starts a new one.
var ErrXorbFull = errors.New("xet: xorb full")

// XorbBuilder collects chunks into one xorb, compressing each with the smallest of none, LZ4 and BG4+LZ4.
type XorbBuilder struct {
	buf    []byte
	chunks []CASChunk
}

// NewXorbBuilder returns an empty xorb.
func NewXorbBuilder() *XorbBuilder { return &XorbBuilder{} }

// AddChunk appends a chunk (at most MaxChunkSize bytes) and returns its index in the xorb, or ErrXorbFull.
func (b *XorbBuilder) AddChunk(data []byte) (int, error) {
	// TODO(h6): compression.
	return len(b.chunks), errors.New("xet: AddChunk: not implemented")
}

// Len returns the number of chunks in the xorb.
func (b *XorbBuilder) Len() int { return len(b.chunks) }

// Size returns the serialized size of the xorb so far (without footer).
func (b *XorbBuilder) Size() int { return len(b.buf) }

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
func (b *XorbBuilder) Serialize() []byte { return append([]byte(nil), b.buf...) }

// SerializeWithFooter returns the serialized xorb followed by its XorbObjectInfo footer.
func (b *XorbBuilder) SerializeWithFooter() []byte {
	// TODO(h6)
	return b.Serialize()
}

// CASInfo returns the shard CAS-info entry that describes this xorb.
func (b *XorbBuilder) CASInfo() CASInfo {
	return CASInfo{Xorb: b.Hash(), Chunks: append([]CASChunk(nil), b.chunks...), Bytes: b.rawBytes(), BytesOnDisk: uint32(len(b.buf))}
}

func (b *XorbBuilder) rawBytes() uint32 {
	var n uint32
	for _, c := range b.chunks {
		n += c.Len
	}
	return n
}

// XorbChunk is one chunk of a parsed xorb.
type XorbChunk struct {
	Ref         ChunkRef    // hash recomputed from the decompressed bytes
	Offset      uint32      // byte offset of the chunk header in the serialized xorb
	Compression Compression // scheme the chunk was stored with
	StoredLen   uint32      // compressed length (excluding the header)
	Data        []byte      // decompressed bytes
}

// Xorb is a parsed xorb.
type Xorb struct {
	Hash      Hash // recomputed from the chunks
	Chunks    []XorbChunk
	HasFooter bool // the serialized form carried an XorbObjectInfo footer (validated against the chunks)
}

// Refs returns the chunk references of x in order.
func (x *Xorb) Refs() []ChunkRef {
	refs := make([]ChunkRef, len(x.Chunks))
	for i := range x.Chunks {
		refs[i] = x.Chunks[i].Ref
	}
	return refs
}

// ParseXorb parses a serialized xorb, with or without footer: it validates every chunk header, decompresses
// every chunk and recomputes chunk hashes and the xorb hash.
func ParseXorb(b []byte) (*Xorb, error) {
	// TODO(h6)
	return nil, errors.New("xet: ParseXorb: not implemented")
}

// DecodeChunks parses a run of serialized chunks (a byte range of a xorb, as a reconstruction fetch returns)
// with no footer, decompressing each.
func DecodeChunks(b []byte) ([]XorbChunk, error) {
	// TODO(h6)
	return nil, errors.New("xet: DecodeChunks: not implemented")
}
