package xet

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestBuildAndVerifyFileInfo(t *testing.T) {
	data := randBytes(40, 900<<10)
	refs := Chunks(data)
	if len(refs) < 6 {
		t.Fatalf("%d chunks", len(refs))
	}
	// Chunks 0-2 in xorb A at 5.., chunk 3 deduplicated to xorb B index 0, the rest in A after a gap.
	a, b := Hash{0xA}, Hash{0xB}
	xorbs := map[Hash][]ChunkRef{
		a: append(append(make([]ChunkRef, 5), refs[:3]...), append([]ChunkRef{{Hash: Hash{1}, Len: 9}}, refs[4:]...)...),
		b: {refs[3]},
	}
	var placed []ChunkPlacement
	for i, r := range refs {
		switch {
		case i < 3:
			placed = append(placed, ChunkPlacement{Ref: r, Xorb: a, Index: uint32(5 + i)})
		case i == 3:
			placed = append(placed, ChunkPlacement{Ref: r, Xorb: b, Index: 0})
		default:
			placed = append(placed, ChunkPlacement{Ref: r, Xorb: a, Index: uint32(5 + i)}) // after the filler at 8
		}
	}
	sum := sha256.Sum256(data)
	f := BuildFileInfo(placed, sum)
	if f.Hash != FileHash(refs) || f.SHA256 != sum || !f.HasSHA256 || !f.HasVerification {
		t.Fatal("file hash or metadata")
	}
	if len(f.Terms) != 3 || f.Terms[0].ChunkStart != 5 || f.Terms[0].ChunkEnd != 8 || f.Terms[1].Xorb != b || f.Terms[2].ChunkStart != 9 {
		t.Fatalf("terms %+v", f.Terms)
	}
	if f.Size() != uint64(len(data)) {
		t.Fatalf("size %d", f.Size())
	}
	lookup := func(x Hash) ([]ChunkRef, bool) { c, ok := xorbs[x]; return c, ok }
	if err := VerifyFileInfo(&f, lookup); err != nil {
		t.Fatal(err)
	}
	// Empty file: no terms, zero hash.
	empty := BuildFileInfo(nil, sha256.Sum256(nil))
	if !empty.Hash.IsZero() || len(empty.Terms) != 0 || VerifyFileInfo(&empty, lookup) != nil {
		t.Fatal("empty file")
	}
	bad := []struct {
		name string
		edit func(f *FileInfo)
		want string
	}{
		{"unknown xorb", func(f *FileInfo) { f.Terms[1].Xorb = Hash{0xC} }, "unknown xorb"},
		{"range", func(f *FileInfo) { f.Terms[2].ChunkEnd = 1000 }, "outside xorb"},
		{"bytes", func(f *FileInfo) { f.Terms[0].Bytes++ }, "bytes, the chunk range holds"},
		{"verification", func(f *FileInfo) { f.Terms[0].Verification[0] ^= 1 }, "verification hash"},
		{"file hash", func(f *FileInfo) { f.Hash[0] ^= 1 }, "hashes to"},
		{"order", func(f *FileInfo) { f.Terms[0], f.Terms[1] = f.Terms[1], f.Terms[0] }, "hashes to"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			g := f
			g.Terms = append([]Term(nil), f.Terms...)
			tt.edit(&g)
			if err := VerifyFileInfo(&g, lookup); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
