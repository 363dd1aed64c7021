package xet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// xorshiftBytes is the deterministic input of the golden values below (the same generator ran through
// @huggingface/xetchunk-wasm 0.2.0 to produce them).
func xorshiftBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(0x12345678)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustHash(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestChunksGolden(t *testing.T) {
	want := []struct {
		len  uint32
		hash string
	}{
		{30539, "943a96270fa5d4b5566aa85207bd57b264a0bbdfbb3d71cd876fa720546814dc"},
		{11266, "54f168fcdc509c0d9795f2d6c3629909d03aa9d7b1f0819c33743d898652a95c"},
		{42344, "ae2b6de5e1683fc0fdc6bf184e60b99813cf290c0f185d43353601258e2e8d2e"},
		{131072, "1ea926d8588fdbed5f8da8714242d385fd55e6f626d6627820787852d2139573"},
		{18951, "3e77764f6112040d55dafd6097387fe91082c97fab2af658f858923cc5f2600f"},
		{37935, "959d4b3dd0609971eae8ff3dc4772d96bab5b93a9cfd0611c9d2f12749291269"},
		{35093, "01f483c8bcd2646531b80c74af834ff2af3fb2dfba34b011fcaf5cb4d4bc2d1b"},
	}
	refs := Chunks(xorshiftBytes(300 << 10))
	if len(refs) != len(want) {
		t.Fatalf("%d chunks, want %d", len(refs), len(want))
	}
	hashes := make([]Hash, len(refs))
	for i, r := range refs {
		if r.Len != want[i].len || r.Hash.String() != want[i].hash {
			t.Errorf("chunk %d: %d %s, want %d %s", i, r.Len, r.Hash, want[i].len, want[i].hash)
		}
		hashes[i] = r.Hash
	}
	tests := []struct {
		name string
		got  Hash
		want string
	}{
		{"xorb", XorbHash(refs), "63d3510fe9601de8bf8e736437814a167e9b46eb5ca4a7a7ea897fefb7903fa3"},
		{"file", FileHash(refs), "5c31c359ecfad7c4ab661d8f1ff1d69bc0cebaf2cdbcf31314c83520cee4a5f0"},
		{"verification", VerificationHash(hashes), "a7ad4b8f53f98d1f3623595c4bc0c5d8e496e0fe6abbcd042440957cd9afc2ce"},
		{"hmac", HMAC(refs[1].Hash, refs[0].Hash), "656bbceda4423e1087022fac0cfbaa03e2d435b9ea42649bd25c2af128d55f95"},
		{"hello chunk", ChunkHash([]byte("hello")), "9076ba12d998050b9c95c8bf770f943e6cad55c7490a82b76cf1582a2a05c2c2"},
		{"hello file", FileHash(Chunks([]byte("hello"))), "48a3213a086cad271381aafe47232eb5df291a963cebbfec071972eff45eb422"},
		{"empty file", FileHash(nil), strings.Repeat("0", 64)},
		{"empty xorb", XorbHash(nil), strings.Repeat("0", 64)},
	}
	for _, tt := range tests {
		if tt.got.String() != tt.want {
			t.Errorf("%s hash %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	// A deeper Merkle tree (56 chunks: three levels).
	big := Chunks(xorshiftBytes(3 << 20))
	if len(big) != 56 {
		t.Fatalf("3 MiB: %d chunks, want 56", len(big))
	}
	if h := XorbHash(big).String(); h != "00875771c498867bfe07c5cb3619ff04d0f90c9476e1aef37e149628f5a3b607" {
		t.Errorf("3 MiB xorb hash %s", h)
	}
	if h := FileHash(big).String(); h != "e16ecff050373c1231d163fcfbfcbabad807ffa78e9f4414a2d6ec98922e64b8" {
		t.Errorf("3 MiB file hash %s", h)
	}
}

func TestHashString(t *testing.T) {
	var h Hash
	for i := range h {
		h[i] = byte(i)
	}
	const want = "0706050403020100" + "0f0e0d0c0b0a0908" + "1716151413121110" + "1f1e1d1c1b1a1918"
	if h.String() != want {
		t.Fatalf("String %s, want %s", h, want)
	}
	back, err := ParseHash(want)
	if err != nil || back != h {
		t.Fatalf("ParseHash: %v, %v", back, err)
	}
	text, _ := h.MarshalText()
	var u Hash
	if err := u.UnmarshalText(text); err != nil || u != h {
		t.Fatalf("UnmarshalText: %v %v", u, err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 63), strings.Repeat("0", 65)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
	if !(Hash{}).IsZero() || h.IsZero() {
		t.Error("IsZero")
	}
}

func TestGlobalDedupEligible(t *testing.T) {
	tests := []struct {
		last uint64
		want bool
	}{{0, true}, {1024, true}, {1 << 40, true}, {1, false}, {1023, false}, {1025, false}}
	for _, tt := range tests {
		var h Hash
		for i := range 8 {
			h[24+i] = byte(tt.last >> (8 * i))
		}
		if got := GlobalDedupEligible(h); got != tt.want {
			t.Errorf("last u64 %d: %v, want %v", tt.last, got, tt.want)
		}
	}
}

func TestChunkSizeLimits(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		// want, if set, is the exact chunk lengths.
		want []uint32
	}{
		{"empty", nil, []uint32{}},
		{"one byte", []byte{1}, []uint32{1}},
		{"under min", randBytes(1, MinChunkSize-1), []uint32{MinChunkSize - 1}},
		{"zeros force cuts at max", make([]byte, 2*MaxChunkSize+5), []uint32{MaxChunkSize, MaxChunkSize, 5}},
		{"random", randBytes(2, 4<<20), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs := Chunks(tt.data)
			var total int
			for i, r := range refs {
				total += int(r.Len)
				// The skip-ahead stops 65 bytes short of MinChunkSize, so a chunk can be 64 bytes shorter (as in
				// xet-core and the JS chunker).
				if r.Len > MaxChunkSize || (i < len(refs)-1 && r.Len < MinChunkSize-hashWindow) {
					t.Errorf("chunk %d of %d bytes", i, r.Len)
				}
			}
			if total != len(tt.data) {
				t.Fatalf("chunks cover %d bytes of %d", total, len(tt.data))
			}
			if tt.want != nil {
				got := make([]uint32, len(refs))
				for i, r := range refs {
					got[i] = r.Len
				}
				if !slicesEqual(got, tt.want) {
					t.Fatalf("chunk lengths %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestChunkerStreaming feeds the Chunker pieces of every size class and requires Chunks' cut points.
func TestChunkerStreaming(t *testing.T) {
	data := append(randBytes(3, 3<<20), make([]byte, 300<<10)...)
	want := Chunks(data)
	for _, piece := range []int{1, 7, 64, 8127, 8128, 65536, 1 << 20} {
		var c Chunker
		var got []uint32
		start := 0
		for pos := 0; pos < len(data); {
			end := min(len(data), pos+piece)
			for pos < end {
				n, cut := c.Next(data[pos:end])
				pos += n
				if cut {
					got = append(got, uint32(pos-start))
					start = pos
				}
			}
		}
		if start < len(data) {
			if c.Pending() != len(data)-start {
				t.Fatalf("piece %d: Pending %d, want %d", piece, c.Pending(), len(data)-start)
			}
			got = append(got, uint32(len(data)-start))
		}
		if len(got) != len(want) {
			t.Fatalf("piece %d: %d chunks, want %d", piece, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i].Len {
				t.Fatalf("piece %d: chunk %d of %d bytes, want %d", piece, i, got[i], want[i].Len)
			}
		}
	}
}

func TestSplit(t *testing.T) {
	data := randBytes(4, 9<<20) // more than one Split buffer
	want := Chunks(data)
	readers := map[string]io.Reader{
		"plain":    bytes.NewReader(data),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
		"data+eof": iotest.DataErrReader(bytes.NewReader(data)),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			var got []ChunkRef
			var joined []byte
			err := Split(context.Background(), r, func(chunk []byte, ref ChunkRef) error {
				if ChunkHash(chunk) != ref.Hash || int(ref.Len) != len(chunk) {
					t.Fatal("ref does not describe chunk")
				}
				joined = append(joined, chunk...)
				got = append(got, ref)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slicesEqual(got, want) || !bytes.Equal(joined, data) {
				t.Fatalf("Split gave %d chunks, Chunks %d", len(got), len(want))
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		boom := errors.New("boom")
		err := Split(context.Background(), iotest.ErrReader(boom), func([]byte, ChunkRef) error { return nil })
		if !errors.Is(err, boom) {
			t.Errorf("reader error: %v", err)
		}
		err = Split(context.Background(), bytes.NewReader(data), func([]byte, ChunkRef) error { return boom })
		if !errors.Is(err, boom) {
			t.Errorf("callback error: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err = Split(ctx, bytes.NewReader(data), func([]byte, ChunkRef) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled: %v", err)
		}
		var n int
		if err := Split(context.Background(), bytes.NewReader(nil), func([]byte, ChunkRef) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("empty input: %d chunks, %v", n, err)
		}
	})
}

// TestGearMaskCompare pins the equivalence gearScan relies on: h&gearMask == 0 exactly when h < 1<<48.
func TestGearMaskCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	samples := []uint64{0, 1, 1<<48 - 1, 1 << 48, 1<<48 + 1, ^uint64(0), 1 << 63}
	for range 1000 {
		samples = append(samples, r.Uint64(), r.Uint64()>>r.IntN(64))
	}
	for _, h := range samples {
		if (h&gearMask == 0) != (h < 1<<48) {
			t.Fatalf("h %#x: mask test %v, compare %v", h, h&gearMask == 0, h < 1<<48)
		}
	}
}
