package xet

import "errors"

// Shard is a Xet shard: file reconstructions and the CAS info of the xorbs they use.
type Shard struct {
	Files []FileInfo
	CAS   []CASInfo
	// Footer fields (only serialized with the footer).
	HMACKey      Hash   // non-zero in global-dedup answers: chunk hashes in CAS are HMAC(HMACKey, hash)
	CreatedAt    uint64 // Unix seconds
	KeyExpiresAt uint64 // Unix seconds
	HasFooter    bool   // set by ParseShard
}

// FileInfo is the reconstruction of one file: the terms in order, with verification hashes and the sha256.
type FileInfo struct {
	Hash  Hash
	Terms []Term
	// SHA256 is the metadata extension; HasSHA256 says whether it is present.
	SHA256    [32]byte
	HasSHA256 bool
}

// Term is a range of chunks of one xorb within a file reconstruction.
type Term struct {
	Xorb         Hash
	Bytes        uint32 // unpacked bytes of the chunk range
	ChunkStart   uint32 // first chunk index
	ChunkEnd     uint32 // one past the last chunk index
	Verification Hash   // VerificationHash of the range's chunk hashes
}

// CASInfo describes one xorb: its chunks with their byte offsets.
type CASInfo struct {
	Xorb        Hash
	Chunks      []CASChunk
	Bytes       uint32 // total unpacked bytes
	BytesOnDisk uint32 // serialized xorb size
}

// CASChunk is one chunk of a CASInfo.
type CASChunk struct {
	Hash      Hash
	ByteStart uint32 // offset of the chunk's unpacked bytes within the xorb's unpacked bytes
	Len       uint32 // unpacked length
}

// Marshal serializes s. withFooter appends the 200-byte footer (the spec says an upload must not carry it;
// the JS client sends it anyway and the CAS accepts both).
func (s *Shard) Marshal(withFooter bool) []byte {
	// TODO(h6)
	return nil
}

// ParseShard parses and validates a serialized shard, with or without footer.
func ParseShard(b []byte) (*Shard, error) {
	// TODO(h6)
	return nil, errors.New("xet: ParseShard: not implemented")
}
