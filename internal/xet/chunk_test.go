package xet

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// gearScans are the loops that must agree with gearScanRef: gearScan (the assembly loop on amd64) and the
// portable gearScanGo.
var gearScans = []struct {
	name string
	scan func(h uint64, data []byte) (int, uint64)
}{
	{"gearScan", gearScan},
	{"gearScanGo", gearScanGo},
}

// refCuts is the chunking rule written out byte by byte, independent of Chunker: bytes at offset < skipAhead
// of a chunk are not hashed, a chunk ends after a hashed byte with h&gearMask == 0 or at MaxChunkSize, and h
// is reset at every cut. It returns the chunk end offsets, the last one len(data).
func refCuts(data []byte) []int {
	var cuts []int
	start, h := 0, uint64(0)
	for i, b := range data {
		n := i + 1 - start
		hashed := n > skipAhead
		if hashed {
			h = h<<1 + gearTable[b]
		}
		if (hashed && h&gearMask == 0) || n == MaxChunkSize {
			cuts = append(cuts, i+1)
			start, h = i+1, 0
		}
	}
	if start < len(data) {
		cuts = append(cuts, len(data))
	}
	return cuts
}

// chunkerCuts feeds data to a Chunker in pieces whose sizes come from r and returns the chunk end offsets.
func chunkerCuts(data []byte, r *rand.Rand) []int {
	var c Chunker
	var cuts []int
	for pos := 0; pos < len(data); {
		end := min(len(data), pos+1+r.IntN(1<<r.IntN(18)))
		for pos < end {
			n, cut := c.Next(data[pos:end])
			pos += n
			if cut {
				cuts = append(cuts, pos)
			}
		}
	}
	if c.Pending() > 0 {
		cuts = append(cuts, len(data))
	}
	return cuts
}

// stateForCutAt returns a start state from which the gearhash over data first reaches h < 1<<48 after byte k
// (or earlier, by chance): it solves 2^k*h0 + s_k = target for a target below 1<<48, where s_k is the state
// after k bytes from 0. k is 1..48.
func stateForCutAt(data []byte, k int, high uint64) uint64 {
	var s uint64
	for _, b := range data[:k] {
		s = s<<1 + gearTable[b]
	}
	target := s & (1<<k - 1)            // below 1<<48 for k <= 48, and s - target is a multiple of 2^k
	return (target-s)>>k | high<<(64-k) // the top k bits of h0 are shifted out
}

// TestGearScanCutAt plants a cut after every byte position 1..48 (every offset within the assembly loop's
// 8-byte groups and the tail) and requires both loops to agree with gearScanRef on position and state.
func TestGearScanCutAt(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	data := randBytes(12, 200)
	for k := 1; k <= 48; k++ {
		for _, n := range []int{k, k + 1, k + 7, k + 8, k + 9, 200} {
			h0 := stateForCutAt(data, k, r.Uint64())
			wantP, wantH := gearScanRef(h0, data[:n])
			if wantP < 1 || wantP > k {
				t.Fatalf("k %d: planted cut not found (reference at %d)", k, wantP)
			}
			for _, s := range gearScans {
				if p, h := s.scan(h0, data[:n]); p != wantP || h != wantH {
					t.Errorf("%s k %d n %d: (%d, %#x), reference (%d, %#x)", s.name, k, n, p, h, wantP, wantH)
				}
			}
		}
	}
	// No cut: every length 0..70 must give -1 and the reference state.
	for n := 0; n <= 70; n++ {
		h0 := uint64(1) << 63 // h*2 wraps; the data below keeps h high
		d := make([]byte, n)
		for i := range d {
			d[i] = 0x0a // table entry 0xe1c9...: h stays >= 1<<48 (checked against the reference)
		}
		wantP, wantH := gearScanRef(h0, d)
		if wantP != -1 {
			t.Fatalf("n %d: the no-cut input cuts at %d", n, wantP)
		}
		for _, s := range gearScans {
			if p, h := s.scan(h0, d); p != wantP || h != wantH {
				t.Errorf("%s n %d: (%d, %#x), reference (%d, %#x)", s.name, n, p, h, wantP, wantH)
			}
		}
	}
}

// scanWalk scans data from cut to cut (no skip-ahead) with gearScanRef and every loop of gearScans and
// returns a description of the first disagreement, or "".
func scanWalk(h uint64, data []byte) string {
	for pos := 0; pos <= len(data); {
		wantP, wantH := gearScanRef(h, data[pos:])
		for _, s := range gearScans {
			if p, h2 := s.scan(h, data[pos:]); p != wantP || h2 != wantH {
				return fmt.Sprintf("%s at %d of %d: (%d, %#x), reference (%d, %#x)", s.name, pos, len(data), p, h2, wantP, wantH)
			}
		}
		if wantP < 0 {
			break
		}
		pos, h = pos+wantP, wantH
	}
	return ""
}

// TestGearScanLong walks long inputs from cut to cut: random data (cuts at every alignment), zeros in random
// data and data full of cuts (a table entry below 1<<48 repeated: h stays small).
func TestGearScanLong(t *testing.T) {
	mixed := randBytes(61, 2<<20)
	clear(mixed[300000:400000])
	tests := []struct {
		name string
		data []byte
	}{
		{"random", randBytes(60, 16<<20)},
		{"mixed", mixed},
		{"cut-prone", bytes.Repeat([]byte{17, 23, 17, 17}, 50000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, h := range []uint64{0, 1 << 60} {
				if err := scanWalk(h, tt.data); err != "" {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestChunkerMatchesRefCuts compares Chunks and the streaming Chunker (random piece sizes) with refCuts on
// random data, zeros (forced cuts) and mixes.
func TestChunkerMatchesRefCuts(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"random 3 MiB", randBytes(40, 3<<20)},
		{"zeros", make([]byte, 3*MaxChunkSize+100)},
		{"random then zeros", append(randBytes(41, 1<<20), make([]byte, 300<<10)...)},
		{"short", randBytes(42, 9000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := refCuts(tt.data)
			var got []int
			end := 0
			for _, ref := range Chunks(tt.data) {
				end += int(ref.Len)
				got = append(got, end)
			}
			if !slicesEqual(got, want) {
				t.Fatalf("Chunks: %d cuts %v, reference %d %v", len(got), got, len(want), want)
			}
			for seed := range uint64(4) {
				if got := chunkerCuts(tt.data, rand.New(rand.NewPCG(seed, 99))); !slicesEqual(got, want) {
					t.Fatalf("Chunker seed %d: %v, reference %v", seed, got, want)
				}
			}
		})
	}
}

// FuzzGearScan is the differential fuzz test of the gearhash loops: gearScan and gearScanGo against
// gearScanRef from a fuzzed state, and the streaming Chunker, fed random pieces, against refCuts on a file
// built from the fuzzed bytes (repeated and mixed with random data so that chunks of every size occur).
func FuzzGearScan(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0))
	f.Add([]byte{0}, uint64(1)<<40, uint64(1))
	f.Add(randBytes(50, 100), uint64(0xdeadbeef), uint64(200<<10))
	f.Add(make([]byte, 64), uint64(0), uint64(300<<10))
	f.Fuzz(func(t *testing.T, data []byte, h0, seed uint64) {
		for off := range min(len(data), 9) + 1 {
			wantP, wantH := gearScanRef(h0, data[off:])
			for _, s := range gearScans {
				if p, h := s.scan(h0, data[off:]); p != wantP || h != wantH {
					t.Fatalf("%s offset %d: (%d, %#x), reference (%d, %#x)", s.name, off, p, h, wantP, wantH)
				}
			}
		}
		r := rand.New(rand.NewPCG(seed, h0))
		file := make([]byte, int(seed%(400<<10)))
		for i := 0; i < len(file); {
			if len(data) > 0 && r.IntN(2) == 0 {
				i += copy(file[i:], data)
				continue
			}
			n := min(len(file)-i, 1+r.IntN(20<<10))
			if r.IntN(4) > 0 { // else leave zeros
				for j := range n {
					file[i+j] = byte(r.Uint32())
				}
			}
			i += n
		}
		if err := scanWalk(h0, file); err != "" {
			t.Fatal(err)
		}
		if got, want := chunkerCuts(file, r), refCuts(file); !slicesEqual(got, want) {
			t.Fatalf("Chunker cuts %v, reference %v", got, want)
		}
	})
}

// TestChunkHasherMatchesChunkHash reuses one chunkHasher over chunks of every size class, in an order where a
// shorter chunk follows a longer one, and requires ChunkHash's value for each.
func TestChunkHasherMatchesChunkHash(t *testing.T) {
	data := randBytes(70, MaxChunkSize+1)
	hasher := newChunkHasher()
	for _, n := range []int{MaxChunkSize, 0, 1, 1023, 1024, 1025, 8192, MaxChunkSize + 1, 64 << 10, 17, 0} {
		want := ChunkRef{Hash: ChunkHash(data[:n]), Len: uint32(n)}
		if got := hasher.ref(data[:n]); got != want {
			t.Fatalf("%d bytes: %v, ChunkHash %v", n, got, want)
		}
	}
}
