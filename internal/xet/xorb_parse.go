package xet

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The XorbObjectInfo (v1) footer that xet-core appends to a xorb (the JS client sends none):
//
//	"XETBLOB" 1 xorb_hash
//	"XBLBHSH" 0 n:u32 chunk_hash×n
//	"XBLBBND" 1 n:u32 chunk_end×n:u32 unpacked_end×n:u32
//	n:u32 hashes_offset_from_end:u32 boundaries_offset_from_end:u32 reserved[16]
//	info_length:u32 (the bytes above)
//
// chunk_end is the end offset of each chunk (header included) in the serialized chunks, unpacked_end the
// running total of unpacked bytes; the offsets from end count back from the end of the reserved bytes.
var (
	xorbIdent           = []byte("XETBLOB")
	xorbIdentHashes     = []byte("XBLBHSH")
	xorbIdentBoundaries = []byte("XBLBBND")
)

const (
	xorbFooterVersion    = 1
	xorbFooterReserved   = 16
	xorbBoundariesFixed  = 7 + 1 + 4 + 4 + 4 + 4 + xorbFooterReserved // before the per-chunk u32s
	xorbHashesFixed      = 7 + 1 + 4
	xorbFooterFixedTotal = 7 + 1 + 32 + xorbHashesFixed + xorbBoundariesFixed // 92: an empty footer
)

// xorbFooterSize returns the size of the footer of an n-chunk xorb, info length included.
func xorbFooterSize(n int) int { return xorbFooterFixedTotal + 40*n + 4 }

func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// appendXorbFooter appends the v1 footer for the given chunks to out.
func appendXorbFooter(out []byte, xorb Hash, hashes []Hash, ends, unpacked []uint32) []byte {
	n := uint32(len(hashes))
	start := len(out)
	out = append(out, xorbIdent...)
	out = append(out, xorbFooterVersion)
	out = append(out, xorb[:]...)
	out = append(out, xorbIdentHashes...)
	out = append(out, 0)
	out = appendU32(out, n)
	for i := range hashes {
		out = append(out, hashes[i][:]...)
	}
	out = append(out, xorbIdentBoundaries...)
	out = append(out, 1)
	out = appendU32(out, n)
	for _, e := range ends {
		out = appendU32(out, e)
	}
	for _, u := range unpacked {
		out = appendU32(out, u)
	}
	boundariesFromEnd := uint32(xorbBoundariesFixed) + 8*n
	hashesFromEnd := uint32(xorbHashesFixed) + 32*n + boundariesFromEnd
	out = appendU32(out, n)
	out = appendU32(out, hashesFromEnd)
	out = appendU32(out, boundariesFromEnd)
	out = append(out, make([]byte, xorbFooterReserved)...)
	return appendU32(out, uint32(len(out)-start))
}

// XorbChunk is one chunk of a parsed xorb.
type XorbChunk struct {
	Ref         ChunkRef    // hash recomputed from the decompressed bytes
	Offset      uint32      // byte offset of the chunk header in the parsed bytes
	Compression Compression // scheme the chunk was stored with
	StoredLen   uint32      // stored (compressed) length, header excluded
	Data        []byte      // decompressed bytes
}

// Xorb is a parsed xorb.
type Xorb struct {
	Hash      Hash // recomputed from the chunks
	Chunks    []XorbChunk
	DataLen   int  // bytes of serialized chunks (the offset of the footer, if any)
	HasFooter bool // the serialized form carried an XorbObjectInfo footer, validated against the chunks
}

// Refs returns the chunk references of x in order.
func (x *Xorb) Refs() []ChunkRef {
	refs := make([]ChunkRef, len(x.Chunks))
	for i := range x.Chunks {
		refs[i] = x.Chunks[i].Ref
	}
	return refs
}

// CASInfo returns the shard CAS-info entry that describes x, with BytesOnDisk the size of its chunk data
// (footer excluded).
func (x *Xorb) CASInfo() CASInfo {
	ci := CASInfo{Xorb: x.Hash, Chunks: make([]CASChunk, len(x.Chunks)), BytesOnDisk: uint32(x.DataLen)}
	for i, c := range x.Chunks {
		ci.Chunks[i] = CASChunk{Hash: c.Ref.Hash, ByteStart: ci.Bytes, Len: c.Ref.Len}
		ci.Bytes += c.Ref.Len
	}
	return ci
}

// ParseXorb parses a serialized xorb, with or without footer: it validates every chunk header, decompresses
// every chunk, recomputes the chunk hashes and the xorb hash, and checks a footer against them.
func ParseXorb(b []byte) (*Xorb, error) {
	if len(b) > MaxXorbBytes+xorbFooterSize(MaxXorbChunks) {
		return nil, fmt.Errorf("xet: xorb of %d bytes exceeds %d", len(b), MaxXorbBytes)
	}
	chunks, n, err := decodeChunks(b, true)
	if err != nil {
		return nil, err
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("xet: xorb has no chunks")
	}
	if n > MaxXorbBytes {
		return nil, fmt.Errorf("xet: xorb chunk data of %d bytes exceeds %d", n, MaxXorbBytes)
	}
	x := &Xorb{Chunks: chunks, DataLen: n}
	x.Hash = XorbHash(x.Refs())
	if n < len(b) {
		if err := checkXorbFooter(b[n:], x); err != nil {
			return nil, err
		}
		x.HasFooter = true
	}
	return x, nil
}

// DecodeChunks parses a run of serialized chunks with no footer (a chunk range of a xorb, as a reconstruction
// fetch returns it), decompressing each and recomputing its hash. Offsets are relative to b.
func DecodeChunks(b []byte) ([]XorbChunk, error) {
	chunks, _, err := decodeChunks(b, false)
	return chunks, err
}

// decodeChunks parses chunks from the start of b until its end or, with footerOK, a footer ident. It returns
// the chunks and the offset where they end.
func decodeChunks(b []byte, footerOK bool) ([]XorbChunk, int, error) {
	var chunks []XorbChunk
	off := 0
	for off < len(b) {
		if footerOK && bytes.HasPrefix(b[off:], xorbIdent) {
			break
		}
		i := len(chunks)
		if len(b)-off < chunkHeaderSize {
			return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: truncated header (%d bytes)", i, off, len(b)-off)
		}
		h := b[off : off+chunkHeaderSize]
		if h[0] != 0 {
			return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: unsupported chunk header version %d", i, off, h[0])
		}
		stored := int(h[1]) | int(h[2])<<8 | int(h[3])<<16
		scheme := Compression(h[4])
		raw := int(h[5]) | int(h[6])<<8 | int(h[7])<<16
		if raw == 0 || raw > MaxChunkSize {
			return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: uncompressed length %d, want 1 to %d", i, off, raw, MaxChunkSize)
		}
		if stored > len(b)-off-chunkHeaderSize {
			return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: %d stored bytes, only %d left", i, off, stored, len(b)-off-chunkHeaderSize)
		}
		src := b[off+chunkHeaderSize : off+chunkHeaderSize+stored]
		data := make([]byte, raw)
		switch scheme {
		case CompressionNone:
			if stored != raw {
				return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: uncompressed chunk with stored length %d != length %d", i, off, stored, raw)
			}
			copy(data, src)
		case CompressionLZ4:
			if err := lz4Decompress(data, src); err != nil {
				return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: %w", i, off, err)
			}
		case CompressionBG4:
			grouped := make([]byte, raw)
			if err := lz4Decompress(grouped, src); err != nil {
				return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: %w", i, off, err)
			}
			bg4Regroup(data, grouped)
		default:
			return nil, 0, fmt.Errorf("xet: xorb chunk %d at offset %d: unknown compression scheme %d", i, off, h[4])
		}
		chunks = append(chunks, XorbChunk{
			Ref:         ChunkRef{Hash: ChunkHash(data), Len: uint32(raw)},
			Offset:      uint32(off),
			Compression: scheme,
			StoredLen:   uint32(stored),
			Data:        data,
		})
		off += chunkHeaderSize + stored
	}
	return chunks, off, nil
}

// footerReader reads the fields of a xorb footer, remembering the first error.
type footerReader struct {
	b   []byte
	off int
	err error
}

func (r *footerReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("xet: xorb footer: truncated at %s", what)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *footerReader) u32(what string) uint32 {
	s := r.take(4, what)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(s)
}

func (r *footerReader) expect(want []byte, what string) {
	if s := r.take(len(want), what); s != nil && !bytes.Equal(s, want) {
		r.err = fmt.Errorf("xet: xorb footer: %s is %q, want %q", what, s, want)
	}
}

func (r *footerReader) failf(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("xet: xorb footer: "+format, args...)
	}
}

// checkXorbFooter validates a v1 footer (b runs to the end of the xorb) against the parsed chunks.
func checkXorbFooter(b []byte, x *Xorb) error {
	if len(b) < xorbFooterSize(0) {
		return fmt.Errorf("xet: xorb footer: %d bytes, too short", len(b))
	}
	info := int(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if info != len(b)-4 {
		return fmt.Errorf("xet: xorb footer: info length %d, but %d bytes follow the chunks", info, len(b)-4)
	}
	n := len(x.Chunks)
	r := &footerReader{b: b[:len(b)-4]}
	r.expect(xorbIdent, "ident")
	if v := r.take(1, "version"); v != nil && v[0] != xorbFooterVersion {
		r.failf("version %d is not supported (want %d)", v[0], xorbFooterVersion)
	}
	if h := r.take(32, "xorb hash"); h != nil && Hash(h) != x.Hash {
		r.failf("xorb hash %s, the chunks hash to %s", Hash(h), x.Hash)
	}
	r.expect(xorbIdentHashes, "hash section ident")
	if v := r.take(1, "hash section version"); v != nil && v[0] != 0 {
		r.failf("hash section version %d is not supported", v[0])
	}
	if c := r.u32("hash section count"); r.err == nil && int(c) != n {
		r.failf("hash section counts %d chunks, the xorb has %d", c, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		if h := r.take(32, "chunk hash"); h != nil && Hash(h) != x.Chunks[i].Ref.Hash {
			r.failf("chunk %d hash %s, the chunk hashes to %s", i, Hash(h), x.Chunks[i].Ref.Hash)
		}
	}
	r.expect(xorbIdentBoundaries, "boundary section ident")
	if v := r.take(1, "boundary section version"); v != nil && v[0] != 1 {
		r.failf("boundary section version %d is not supported", v[0])
	}
	if c := r.u32("boundary section count"); r.err == nil && int(c) != n {
		r.failf("boundary section counts %d chunks, the xorb has %d", c, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		want := x.Chunks[i].Offset + chunkHeaderSize + x.Chunks[i].StoredLen
		if e := r.u32("chunk boundary"); r.err == nil && e != want {
			r.failf("chunk %d ends at %d, the footer says %d", i, want, e)
		}
	}
	var unpacked uint32
	for i := 0; i < n && r.err == nil; i++ {
		unpacked += x.Chunks[i].Ref.Len
		if e := r.u32("unpacked boundary"); r.err == nil && e != unpacked {
			r.failf("chunk %d unpacked end %d, the footer says %d", i, unpacked, e)
		}
	}
	if c := r.u32("chunk count"); r.err == nil && int(c) != n {
		r.failf("counts %d chunks, the xorb has %d", c, n)
	}
	boundariesFromEnd := uint32(xorbBoundariesFixed + 8*n)
	hashesFromEnd := uint32(xorbHashesFixed+32*n) + boundariesFromEnd
	if v := r.u32("hashes offset"); r.err == nil && v != hashesFromEnd {
		r.failf("hash section offset from end %d, want %d", v, hashesFromEnd)
	}
	if v := r.u32("boundaries offset"); r.err == nil && v != boundariesFromEnd {
		r.failf("boundary section offset from end %d, want %d", v, boundariesFromEnd)
	}
	r.take(xorbFooterReserved, "reserved bytes")
	if r.err == nil && r.off != len(r.b) {
		r.failf("%d unexpected bytes", len(r.b)-r.off)
	}
	return r.err
}
