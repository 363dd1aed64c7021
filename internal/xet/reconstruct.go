package xet

import (
	"fmt"
)

// ChunkPlacement says where one chunk of a file is stored: chunk Index of xorb Xorb.
type ChunkPlacement struct {
	Ref   ChunkRef
	Xorb  Hash
	Index uint32
}

// BuildFileInfo returns the reconstruction of a file made of chunks (in file order, each placed in a xorb):
// the file hash, one term per maximal run of consecutive chunks of one xorb, each with its verification
// hash, and the sha256 metadata extension, as an upload's shard carries it.
func BuildFileInfo(chunks []ChunkPlacement, sha256 [32]byte) FileInfo {
	refs := make([]ChunkRef, len(chunks))
	for i := range chunks {
		refs[i] = chunks[i].Ref
	}
	f := FileInfo{Hash: FileHash(refs), HasVerification: true, SHA256: sha256, HasSHA256: true}
	for i := 0; i < len(chunks); {
		j := i + 1
		for j < len(chunks) && chunks[j].Xorb == chunks[i].Xorb && chunks[j].Index == chunks[j-1].Index+1 {
			j++
		}
		t := Term{Xorb: chunks[i].Xorb, ChunkStart: chunks[i].Index, ChunkEnd: chunks[j-1].Index + 1}
		hashes := make([]Hash, j-i)
		for k := i; k < j; k++ {
			t.Bytes += chunks[k].Ref.Len
			hashes[k-i] = chunks[k].Ref.Hash
		}
		t.Verification = VerificationHash(hashes)
		f.Terms = append(f.Terms, t)
		i = j
	}
	return f
}

// VerifyFileInfo checks a file reconstruction against the xorbs it names, as a CAS does before accepting a
// shard: every term's chunk range exists in its xorb (chunksOf returns a xorb's chunks, false if unknown),
// its byte count matches, its verification hash (when present) matches, and the file hash over all the
// chunks equals f.Hash.
func VerifyFileInfo(f *FileInfo, chunksOf func(xorb Hash) ([]ChunkRef, bool)) error {
	var refs []ChunkRef
	for i, t := range f.Terms {
		xc, ok := chunksOf(t.Xorb)
		if !ok {
			return fmt.Errorf("xet: file %s term %d: unknown xorb %s", f.Hash, i, t.Xorb)
		}
		if t.ChunkStart >= t.ChunkEnd || int(t.ChunkEnd) > len(xc) {
			return fmt.Errorf("xet: file %s term %d: chunk range [%d, %d) outside xorb %s of %d chunks", f.Hash, i, t.ChunkStart, t.ChunkEnd, t.Xorb, len(xc))
		}
		rng := xc[t.ChunkStart:t.ChunkEnd]
		var n uint64
		hashes := make([]Hash, len(rng))
		for k, c := range rng {
			n += uint64(c.Len)
			hashes[k] = c.Hash
		}
		if n != uint64(t.Bytes) {
			return fmt.Errorf("xet: file %s term %d: %d bytes, the chunk range holds %d", f.Hash, i, t.Bytes, n)
		}
		if f.HasVerification && VerificationHash(hashes) != t.Verification {
			return fmt.Errorf("xet: file %s term %d: verification hash mismatch", f.Hash, i)
		}
		refs = append(refs, rng...)
	}
	if h := FileHash(refs); h != f.Hash {
		return fmt.Errorf("xet: file %s: the reconstruction hashes to %s", f.Hash, h)
	}
	return nil
}
