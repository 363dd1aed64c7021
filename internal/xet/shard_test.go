package xet

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// testShard is a shard as an upload builds it: two files over two xorbs, one of them empty.
func testShard(t testing.TB) *Shard {
	t.Helper()
	data := randBytes(20, 600<<10)
	refs := Chunks(data)
	x1, x2 := NewXorbBuilder(), NewXorbBuilder()
	pos := 0
	for i, r := range refs {
		chunk := data[pos : pos+int(r.Len)]
		pos += int(r.Len)
		b := x1
		if i >= 3 {
			b = x2
		}
		if _, err := b.AddHashedChunk(r, chunk); err != nil {
			t.Fatal(err)
		}
	}
	hashes := func(rs []ChunkRef) []Hash {
		out := make([]Hash, len(rs))
		for i, r := range rs {
			out[i] = r.Hash
		}
		return out
	}
	c1, c2 := x1.CASInfo(), x2.CASInfo()
	file := FileInfo{
		Hash: FileHash(refs),
		Terms: []Term{
			{Xorb: c1.Xorb, Bytes: c1.Bytes, ChunkStart: 0, ChunkEnd: 3, Verification: VerificationHash(hashes(refs[:3]))},
			{Xorb: c2.Xorb, Bytes: c2.Bytes, ChunkStart: 0, ChunkEnd: uint32(len(refs) - 3), Verification: VerificationHash(hashes(refs[3:]))},
		},
		HasVerification: true,
		SHA256:          sha256.Sum256(data),
		HasSHA256:       true,
	}
	empty := FileInfo{Hash: Hash{}, HasVerification: true, SHA256: sha256.Sum256(nil), HasSHA256: true}
	return &Shard{Files: []FileInfo{file, empty}, CAS: []CASInfo{c1, c2}}
}

func TestShardRoundTrip(t *testing.T) {
	s := testShard(t)
	for _, footer := range []bool{false, true} {
		want := *s
		if footer {
			want.HMACKey = Hash{1, 2, 3}
			want.CreatedAt, want.KeyExpiresAt = 1700000000, 1800000000
		}
		b := want.Marshal(footer)
		got, err := ParseShard(b)
		if err != nil {
			t.Fatalf("footer %v: %v", footer, err)
		}
		want.HasFooter = footer
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("footer %v: parsed %+v\nwant %+v", footer, got, &want)
		}
		if !bytes.Equal(got.Marshal(footer), b) {
			t.Fatalf("footer %v: Marshal(ParseShard(b)) != b", footer)
		}
		if footer && binary.LittleEndian.Uint64(b[40:]) != ShardFooterSize {
			t.Fatal("header footer_size")
		}
	}
	if n := s.Files[0].Size(); n != 600<<10 {
		t.Errorf("file size %d", n)
	}
}

// jsFooterShard rewrites a footer the way the JS client writes it: no lookup tables, all their offsets zero.
func jsFooterShard(s *Shard) []byte {
	b := s.Marshal(false)
	binary.LittleEndian.PutUint64(b[40:], ShardFooterSize)
	casOffset := uint64(shardHeaderSize)
	for i := range s.Files {
		casOffset += uint64(shardEntrySize * (2 + 2*len(s.Files[i].Terms)))
	}
	casOffset += shardEntrySize
	footerOffset := uint64(len(b))
	f := make([]byte, ShardFooterSize)
	binary.LittleEndian.PutUint64(f[0:], 1)
	binary.LittleEndian.PutUint64(f[8:], shardHeaderSize)
	binary.LittleEndian.PutUint64(f[16:], casOffset)
	binary.LittleEndian.PutUint64(f[104:], 1700000000)
	binary.LittleEndian.PutUint64(f[192:], footerOffset)
	return append(b, f...)
}

func TestParseShardJSFooter(t *testing.T) {
	s := testShard(t)
	got, err := ParseShard(jsFooterShard(s))
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasFooter || got.CreatedAt != 1700000000 || !reflect.DeepEqual(got.Files, s.Files) || !reflect.DeepEqual(got.CAS, s.CAS) {
		t.Fatalf("parsed %+v", got)
	}
}

func TestParseShardErrors(t *testing.T) {
	s := testShard(t)
	plain, full := s.Marshal(false), s.Marshal(true)
	term0 := shardHeaderSize + shardEntrySize // first term entry
	casStart := shardHeaderSize + shardEntrySize*(1+4+1) + shardEntrySize*2 + shardEntrySize
	footer := len(full) - ShardFooterSize
	set32 := func(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	set64 := func(b []byte, off int, v uint64) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
	noVerification := *s
	noVerification.Files = []FileInfo{s.Files[0], s.Files[1]}
	noVerification.Files[1].HasVerification = false
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"short", plain[:60], "too short"},
		{"tag", corrupt(plain, func(b []byte) []byte { b[3] = 'x'; return b }), "header tag"},
		{"version", corrupt(plain, func(b []byte) []byte { return set64(b, 32, 3) }), "header version 3"},
		{"footer size", corrupt(plain, func(b []byte) []byte { return set64(b, 40, 100) }), "footer size 100"},
		{"footer missing", corrupt(plain, func(b []byte) []byte { return set64(b, 40, ShardFooterSize) }), ""},
		{"no bookend", plain[:len(plain)-shardEntrySize], "truncated"},
		{"term count", corrupt(plain, func(b []byte) []byte { return set32(b, shardHeaderSize+36, 1<<30) }), "do not fit"},
		{"flags", corrupt(plain, func(b []byte) []byte { return set32(b, shardHeaderSize+32, 1) }), "unknown flags"},
		{"chunk range", corrupt(plain, func(b []byte) []byte { return set32(b, term0+44, 0) }), "empty chunk range"},
		{"term bytes", corrupt(plain, func(b []byte) []byte { return set32(b, term0+36, 0) }), "zero bytes"},
		{"some verification", noVerification.Marshal(false), "verification entries on some files only"},
		{"cas chunk count", corrupt(plain, func(b []byte) []byte { return set32(b, casStart+36, 1<<28) }), "do not fit"},
		{"cas no chunks", corrupt(plain, func(b []byte) []byte { return set32(b, casStart+36, 0) }), "no chunks"},
		{"cas bytes", corrupt(plain, func(b []byte) []byte { return set32(b, casStart+40, 5) }), "the header says 5"},
		{"cas chunk start", corrupt(plain, func(b []byte) []byte { return set32(b, casStart+48+48+32, 7) }), "starts at 7"},
		{"cas chunk length", corrupt(plain, func(b []byte) []byte { return set32(b, casStart+48+36, 0) }), "length 0"},
		{"malformed bookend", corrupt(plain, func(b []byte) []byte { b[len(b)-1] = 1; return b }), "malformed CAS info bookend"},
		{"trailing", append(bytes.Clone(plain), 0), "after the CAS info bookend"},
		{"footer version", corrupt(full, func(b []byte) []byte { return set64(b, footer, 2) }), "footer version 2"},
		{"footer cas offset", corrupt(full, func(b []byte) []byte { return set64(b, footer+16, 9) }), "CAS info offset 9"},
		{"footer lookup", corrupt(full, func(b []byte) []byte { return set64(b, footer+32, 1<<62) }), "lookup tables"},
		{"footer offset", corrupt(full, func(b []byte) []byte { return set64(b, footer+192, 9) }), "footer offset 9"},
		{"too big", make([]byte, MaxShardBytes+1), "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseShard(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzParseShard(f *testing.F) {
	s := testShard(f)
	f.Add(s.Marshal(false))
	f.Add(s.Marshal(true))
	f.Add(jsFooterShard(s))
	f.Add((&Shard{}).Marshal(false))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := ParseShard(in)
		if err != nil {
			return
		}
		// A parsed shard marshals to a shard that parses to the same value.
		back, err := ParseShard(s.Marshal(s.HasFooter))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("re-parse differs:\n%+v\n%+v", back, s)
		}
	})
}

func TestChunkIndex(t *testing.T) {
	s := testShard(t)
	want := s.CAS[1].Chunks[2].Hash
	tests := []struct {
		name string
		key  Hash
	}{{"plain", Hash{}}, {"hmac", Hash{9, 8, 7}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := *s
			answer.Files = nil
			answer.HMACKey = tt.key
			answer.CAS = make([]CASInfo, len(s.CAS))
			for i, c := range s.CAS {
				answer.CAS[i] = c
				answer.CAS[i].Chunks = make([]CASChunk, len(c.Chunks))
				for j, ch := range c.Chunks {
					if !tt.key.IsZero() {
						ch.Hash = HMAC(tt.key, ch.Hash)
					}
					answer.CAS[i].Chunks[j] = ch
				}
			}
			parsed, err := ParseShard(answer.Marshal(true))
			if err != nil {
				t.Fatal(err)
			}
			ix := parsed.ChunkIndex()
			if loc, ok := ix.Find(want); !ok || loc != (ChunkLocation{CAS: 1, Chunk: 2}) {
				t.Fatalf("Find: %+v %v", loc, ok)
			}
			if _, ok := ix.Find(Hash{1}); ok {
				t.Fatal("found an absent chunk")
			}
		})
	}
}
