package xet

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// Shard layout constants (shard.md, spec 1.1; lookup tables from xet-core).
const (
	// MaxShardBytes is the largest shard the CAS accepts.
	MaxShardBytes = 64 << 20
	// ShardFooterSize is the size of the optional shard footer.
	ShardFooterSize = 200

	shardHeaderSize    = 48
	shardEntrySize     = 48
	shardHeaderVersion = 2
	shardFooterVersion = 1

	fileFlagVerification = 1 << 31
	fileFlagMetadataExt  = 1 << 30
)

// shardTag is MDB_SHARD_HEADER_TAG: "HFRepoMetaData\0" and 17 magic bytes.
var shardTag = [32]byte{
	'H', 'F', 'R', 'e', 'p', 'o', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0, 85,
	105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169,
}

// bookend is the 48-byte entry that ends the file-info and CAS-info sections.
var bookend = func() (b [shardEntrySize]byte) {
	for i := range 32 {
		b[i] = 0xFF
	}
	return b
}()

// Shard is a Xet shard: file reconstructions and the CAS info of the xorbs they use.
type Shard struct {
	Files []FileInfo
	CAS   []CASInfo
	// Footer fields, serialized only with the footer.
	HMACKey      Hash   // non-zero in global-dedup answers: the CAS chunk hashes are HMAC(HMACKey, hash)
	CreatedAt    uint64 // Unix seconds
	KeyExpiresAt uint64 // Unix seconds; 0: no expiry
	HasFooter    bool   // set by ParseShard
}

// FileInfo is the reconstruction of one file: its terms in order, with verification hashes and the sha256.
type FileInfo struct {
	Hash  Hash
	Terms []Term
	// HasVerification says whether the terms carry verification hashes (required on upload).
	HasVerification bool
	// SHA256 is the metadata extension (required for git repos); HasSHA256 says whether it is present.
	SHA256    [32]byte
	HasSHA256 bool
}

// Size returns the file's length: the sum of its terms' bytes.
func (f *FileInfo) Size() uint64 {
	var n uint64
	for _, t := range f.Terms {
		n += uint64(t.Bytes)
	}
	return n
}

// Term is a range of chunks of one xorb within a file reconstruction.
type Term struct {
	Xorb         Hash
	Bytes        uint32 // unpacked bytes of the chunk range
	ChunkStart   uint32 // first chunk index
	ChunkEnd     uint32 // one past the last chunk index
	Verification Hash   // VerificationHash of the range's chunk hashes
}

// CASInfo describes one xorb: its chunks with their offsets.
type CASInfo struct {
	Xorb        Hash
	Chunks      []CASChunk
	Bytes       uint32 // total unpacked bytes
	BytesOnDisk uint32 // serialized xorb size
}

// CASChunk is one chunk of a CASInfo.
type CASChunk struct {
	Hash      Hash
	ByteStart uint32 // offset of the chunk's unpacked bytes among the xorb's unpacked bytes
	Len       uint32 // unpacked length
}

// Marshal serializes s. withFooter appends the 200-byte footer and, before it, xet-core's lookup tables (the
// spec says an upload must not carry the footer; the JS client sends one anyway and the CAS accepts both; a
// global-dedup answer needs it for the HMAC key). Verification entries are written for a file when
// HasVerification is set, the metadata extension when HasSHA256 is.
func (s *Shard) Marshal(withFooter bool) []byte {
	size := shardHeaderSize + 2*shardEntrySize
	for i := range s.Files {
		size += shardEntrySize * (1 + 2*len(s.Files[i].Terms) + 1)
	}
	for i := range s.CAS {
		size += shardEntrySize * (1 + len(s.CAS[i].Chunks))
	}
	if withFooter {
		size += ShardFooterSize
	}
	out := make([]byte, 0, size)
	out = append(out, shardTag[:]...)
	out = binary.LittleEndian.AppendUint64(out, shardHeaderVersion)
	footer := uint64(0)
	if withFooter {
		footer = ShardFooterSize
	}
	out = binary.LittleEndian.AppendUint64(out, footer)

	type lookup struct {
		key  uint64
		a, b uint32
	}
	var fileLookup, casLookup, chunkLookup []lookup
	index := uint32(0) // entry index within the section
	var materialized uint64
	for i := range s.Files {
		f := &s.Files[i]
		fileLookup = append(fileLookup, lookup{key: truncateHash(f.Hash), a: index})
		var flags uint32
		if f.HasVerification {
			flags |= fileFlagVerification
		}
		if f.HasSHA256 {
			flags |= fileFlagMetadataExt
		}
		out = appendEntry(out, f.Hash, flags, uint32(len(f.Terms)), 0, 0)
		for _, t := range f.Terms {
			out = appendEntry(out, t.Xorb, 0, t.Bytes, t.ChunkStart, t.ChunkEnd)
			materialized += uint64(t.Bytes)
		}
		index += 1 + uint32(len(f.Terms))
		if f.HasVerification {
			for _, t := range f.Terms {
				out = appendEntry(out, t.Verification, 0, 0, 0, 0)
			}
			index += uint32(len(f.Terms))
		}
		if f.HasSHA256 {
			out = appendEntry(out, Hash(f.SHA256), 0, 0, 0, 0)
			index++
		}
	}
	out = append(out, bookend[:]...)
	casOffset := uint64(len(out))
	index = 0
	var stored, onDisk uint64
	for i := range s.CAS {
		c := &s.CAS[i]
		casLookup = append(casLookup, lookup{key: truncateHash(c.Xorb), a: index})
		out = appendEntry(out, c.Xorb, 0, uint32(len(c.Chunks)), c.Bytes, c.BytesOnDisk)
		for j, ch := range c.Chunks {
			chunkLookup = append(chunkLookup, lookup{key: truncateHash(ch.Hash), a: index, b: uint32(j)})
			out = appendEntry(out, ch.Hash, ch.ByteStart, ch.Len, 0, 0)
		}
		index += 1 + uint32(len(c.Chunks))
		stored += uint64(c.Bytes)
		onDisk += uint64(c.BytesOnDisk)
	}
	out = append(out, bookend[:]...)
	if !withFooter {
		return out
	}
	byKey := func(x, y lookup) int { return cmp.Compare(x.key, y.key) }
	slices.SortStableFunc(fileLookup, byKey)
	slices.SortStableFunc(casLookup, byKey)
	slices.SortStableFunc(chunkLookup, byKey)
	fileLookupOffset := uint64(len(out))
	for _, l := range fileLookup {
		out = binary.LittleEndian.AppendUint64(out, l.key)
		out = binary.LittleEndian.AppendUint32(out, l.a)
	}
	casLookupOffset := uint64(len(out))
	for _, l := range casLookup {
		out = binary.LittleEndian.AppendUint64(out, l.key)
		out = binary.LittleEndian.AppendUint32(out, l.a)
	}
	chunkLookupOffset := uint64(len(out))
	for _, l := range chunkLookup {
		out = binary.LittleEndian.AppendUint64(out, l.key)
		out = binary.LittleEndian.AppendUint32(out, l.a)
		out = binary.LittleEndian.AppendUint32(out, l.b)
	}
	footerOffset := uint64(len(out))
	u64 := binary.LittleEndian.AppendUint64
	out = u64(out, shardFooterVersion)
	out = u64(out, shardHeaderSize)
	out = u64(out, casOffset)
	out = u64(out, fileLookupOffset)
	out = u64(out, uint64(len(fileLookup)))
	out = u64(out, casLookupOffset)
	out = u64(out, uint64(len(casLookup)))
	out = u64(out, chunkLookupOffset)
	out = u64(out, uint64(len(chunkLookup)))
	out = append(out, s.HMACKey[:]...)
	out = u64(out, s.CreatedAt)
	out = u64(out, s.KeyExpiresAt)
	out = append(out, make([]byte, 48)...)
	out = u64(out, onDisk)
	out = u64(out, materialized)
	out = u64(out, stored)
	return u64(out, footerOffset)
}

// truncateHash is the lookup-table key of a hash: its first little-endian uint64.
func truncateHash(h Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// appendEntry appends a 48-byte entry: a hash and four u32s (unused ones zero).
func appendEntry(out []byte, h Hash, a, b, c, d uint32) []byte {
	out = append(out, h[:]...)
	out = binary.LittleEndian.AppendUint32(out, a)
	out = binary.LittleEndian.AppendUint32(out, b)
	out = binary.LittleEndian.AppendUint32(out, c)
	return binary.LittleEndian.AppendUint32(out, d)
}

// entry is one 48-byte shard entry, decoded.
type entry struct {
	hash       Hash
	a, b, c, d uint32
}

func readEntry(b []byte) entry {
	return entry{
		hash: Hash(b[:32]),
		a:    binary.LittleEndian.Uint32(b[32:]),
		b:    binary.LittleEndian.Uint32(b[36:]),
		c:    binary.LittleEndian.Uint32(b[40:]),
		d:    binary.LittleEndian.Uint32(b[44:]),
	}
}

// ParseShard parses and validates a serialized shard, with or without footer: header tag and version,
// entry counts against the bytes present, bookends, verification entries on all files or none, chunk ranges,
// CAS chunk offsets and sizes, and with a footer its version, section offsets and lookup-table sizes.
func ParseShard(b []byte) (*Shard, error) {
	if len(b) > MaxShardBytes {
		return nil, fmt.Errorf("xet: shard of %d bytes exceeds %d", len(b), MaxShardBytes)
	}
	if len(b) < shardHeaderSize+2*shardEntrySize {
		return nil, fmt.Errorf("xet: shard of %d bytes is too short", len(b))
	}
	if !bytes.Equal(b[:32], shardTag[:]) {
		return nil, fmt.Errorf("xet: shard: bad header tag")
	}
	if v := binary.LittleEndian.Uint64(b[32:]); v != shardHeaderVersion {
		return nil, fmt.Errorf("xet: shard: header version %d, want %d", v, shardHeaderVersion)
	}
	footerSize := binary.LittleEndian.Uint64(b[40:])
	if footerSize != 0 && footerSize != ShardFooterSize {
		return nil, fmt.Errorf("xet: shard: footer size %d, want 0 or %d", footerSize, ShardFooterSize)
	}
	end := len(b) - int(footerSize) // end of the sections (and lookup tables)
	if end < shardHeaderSize+2*shardEntrySize {
		return nil, fmt.Errorf("xet: shard of %d bytes is too short for its footer", len(b))
	}
	s := &Shard{HasFooter: footerSize != 0}
	off := shardHeaderSize
	// next returns the entry at off, or an error if the sections end first.
	next := func(what string) (entry, error) {
		if end-off < shardEntrySize {
			return entry{}, fmt.Errorf("xet: shard: truncated at offset %d (%s)", off, what)
		}
		e := readEntry(b[off:])
		off += shardEntrySize
		return e, nil
	}
	// lastIsBookend reports whether the entry just read is a whole bookend (not only its hash).
	lastIsBookend := func() bool { return bytes.Equal(b[off-shardEntrySize:off], bookend[:]) }
	isBookendHash := func(h Hash) bool { return bytes.Equal(h[:], bookend[:32]) }

	verification := -1 // unknown; then 0 or 1 for every file
	for {
		h, err := next("file info header or bookend")
		if err != nil {
			return nil, err
		}
		if isBookendHash(h.hash) {
			if !lastIsBookend() {
				return nil, fmt.Errorf("xet: shard: malformed file info bookend at offset %d", off-shardEntrySize)
			}
			break
		}
		fi := len(s.Files)
		flags, n := h.a, int(h.b)
		if flags&^(fileFlagVerification|fileFlagMetadataExt) != 0 {
			return nil, fmt.Errorf("xet: shard: file %d (%s): unknown flags %#x", fi, h.hash, flags)
		}
		f := FileInfo{Hash: h.hash, HasVerification: flags&fileFlagVerification != 0, HasSHA256: flags&fileFlagMetadataExt != 0}
		entries := n
		if f.HasVerification {
			entries *= 2
		}
		if f.HasSHA256 {
			entries++
		}
		if n < 0 || entries > (end-off)/shardEntrySize {
			return nil, fmt.Errorf("xet: shard: file %d (%s): %d terms do not fit in the shard", fi, h.hash, n)
		}
		v := 0
		if f.HasVerification {
			v = 1
		}
		if verification >= 0 && v != verification {
			return nil, fmt.Errorf("xet: shard: file %d (%s): verification entries on some files only", fi, h.hash)
		}
		verification = v
		if n > 0 {
			f.Terms = make([]Term, n)
		}
		for i := range f.Terms {
			e, _ := next("term")
			if isBookendHash(e.hash) {
				return nil, fmt.Errorf("xet: shard: file %d term %d: bookend inside a file info block", fi, i)
			}
			if e.c >= e.d {
				return nil, fmt.Errorf("xet: shard: file %d term %d: empty chunk range [%d, %d)", fi, i, e.c, e.d)
			}
			if e.b == 0 {
				return nil, fmt.Errorf("xet: shard: file %d term %d: zero bytes", fi, i)
			}
			f.Terms[i] = Term{Xorb: e.hash, Bytes: e.b, ChunkStart: e.c, ChunkEnd: e.d}
		}
		if f.HasVerification {
			for i := range f.Terms {
				e, _ := next("verification entry")
				f.Terms[i].Verification = e.hash
			}
		}
		if f.HasSHA256 {
			e, _ := next("metadata extension")
			f.SHA256 = [32]byte(e.hash)
		}
		s.Files = append(s.Files, f)
	}
	casOffset := off
	for {
		h, err := next("CAS info header or bookend")
		if err != nil {
			return nil, err
		}
		if isBookendHash(h.hash) {
			if !lastIsBookend() {
				return nil, fmt.Errorf("xet: shard: malformed CAS info bookend at offset %d", off-shardEntrySize)
			}
			break
		}
		ci := len(s.CAS)
		n := int(h.b)
		if n == 0 {
			return nil, fmt.Errorf("xet: shard: xorb %d (%s): no chunks", ci, h.hash)
		}
		if n > (end-off)/shardEntrySize {
			return nil, fmt.Errorf("xet: shard: xorb %d (%s): %d chunks do not fit in the shard", ci, h.hash, n)
		}
		c := CASInfo{Xorb: h.hash, Bytes: h.c, BytesOnDisk: h.d, Chunks: make([]CASChunk, n)}
		var pos uint64
		for i := range c.Chunks {
			e, _ := next("CAS chunk")
			if uint64(e.a) != pos {
				return nil, fmt.Errorf("xet: shard: xorb %d (%s) chunk %d: starts at %d, the chunks before end at %d", ci, h.hash, i, e.a, pos)
			}
			if e.b == 0 || e.b > MaxChunkSize {
				return nil, fmt.Errorf("xet: shard: xorb %d (%s) chunk %d: length %d, want 1 to %d", ci, h.hash, i, e.b, MaxChunkSize)
			}
			c.Chunks[i] = CASChunk{Hash: e.hash, ByteStart: e.a, Len: e.b}
			pos += uint64(e.b)
		}
		if pos != uint64(c.Bytes) {
			return nil, fmt.Errorf("xet: shard: xorb %d (%s): chunks total %d bytes, the header says %d", ci, h.hash, pos, c.Bytes)
		}
		s.CAS = append(s.CAS, c)
	}
	if footerSize == 0 {
		if off != len(b) {
			return nil, fmt.Errorf("xet: shard: %d bytes after the CAS info bookend", len(b)-off)
		}
		return s, nil
	}
	if err := s.parseFooter(b[end:], uint64(casOffset), uint64(off), uint64(end)); err != nil {
		return nil, err
	}
	return s, nil
}

// parseFooter reads the footer f and checks its offsets: the CAS section at casOffset, the lookup tables
// from tables to footerOffset (or no tables, all offsets zero, as the JS client writes).
func (s *Shard) parseFooter(f []byte, casOffset, tables, footerOffset uint64) error {
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(f[8*i:]) }
	if v := u(0); v != shardFooterVersion {
		return fmt.Errorf("xet: shard: footer version %d, want %d", v, shardFooterVersion)
	}
	if u(1) != shardHeaderSize {
		return fmt.Errorf("xet: shard: footer file info offset %d, want %d", u(1), shardHeaderSize)
	}
	if u(2) != casOffset {
		return fmt.Errorf("xet: shard: footer CAS info offset %d, want %d", u(2), casOffset)
	}
	fileOff, fileN, casOff, casN, chunkOff, chunkN := u(3), u(4), u(5), u(6), u(7), u(8)
	if fileOff|fileN|casOff|casN|chunkOff|chunkN == 0 {
		if tables != footerOffset {
			return fmt.Errorf("xet: shard: %d bytes between the CAS info bookend and the footer", footerOffset-tables)
		}
	} else if fileN > footerOffset || casN > footerOffset || chunkN > footerOffset || fileOff != tables ||
		casOff != fileOff+12*fileN || chunkOff != casOff+12*casN || footerOffset != chunkOff+16*chunkN {
		return fmt.Errorf("xet: shard: footer lookup tables (%d+%d, %d+%d, %d+%d) do not fill bytes %d to %d",
			fileOff, fileN, casOff, casN, chunkOff, chunkN, tables, footerOffset)
	}
	copy(s.HMACKey[:], f[72:104])
	s.CreatedAt = binary.LittleEndian.Uint64(f[104:])
	s.KeyExpiresAt = binary.LittleEndian.Uint64(f[112:])
	if fo := binary.LittleEndian.Uint64(f[192:]); fo != footerOffset {
		return fmt.Errorf("xet: shard: footer offset %d, want %d", fo, footerOffset)
	}
	return nil
}

// ChunkLocation is where a chunk is stored: s.CAS[CAS].Chunks[Chunk], chunk index Chunk of that xorb.
type ChunkLocation struct {
	CAS   int
	Chunk int
}

// ChunkIndex finds chunks by hash in a shard's CAS section, applying the shard's HMAC key when it has one (a
// global-dedup answer lists HMAC(key, chunk hash), not chunk hashes).
type ChunkIndex struct {
	key Hash
	m   map[Hash]ChunkLocation
}

// ChunkIndex indexes the CAS section of s; the first occurrence of a chunk wins.
func (s *Shard) ChunkIndex() *ChunkIndex {
	ix := &ChunkIndex{key: s.HMACKey, m: make(map[Hash]ChunkLocation)}
	for i := range s.CAS {
		for j, c := range s.CAS[i].Chunks {
			if _, dup := ix.m[c.Hash]; !dup {
				ix.m[c.Hash] = ChunkLocation{CAS: i, Chunk: j}
			}
		}
	}
	return ix
}

// Find returns where the chunk with hash h (a plain chunk hash) is stored.
func (ix *ChunkIndex) Find(h Hash) (ChunkLocation, bool) {
	if !ix.key.IsZero() {
		h = HMAC(ix.key, h)
	}
	loc, ok := ix.m[h]
	return loc, ok
}
