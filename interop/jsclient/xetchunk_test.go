package jsclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/xet"
)

// xetchunkOrSkip returns node when @huggingface/xetchunk-wasm is installed too (skip, or fail under CI=true).
func xetchunkOrSkip(t *testing.T) string {
	t.Helper()
	node := nodeOrSkip(t)
	if _, err := os.Stat(filepath.Join("node_modules", "@huggingface", "xetchunk-wasm", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: @huggingface/xetchunk-wasm is not installed (run npm ci in interop/jsclient)")
		}
		t.Skip("@huggingface/xetchunk-wasm is not installed (run npm ci in interop/jsclient)")
	}
	return node
}

type xetchunkResult struct {
	Chunks []struct {
		Len  uint32 `json:"len"`
		Hash string `json:"hash"`
	} `json:"chunks"`
	XorbHash         string `json:"xorbHash"`
	FileHash         string `json:"fileHash"`
	VerificationHash string `json:"verificationHash"`
	HMAC             string `json:"hmac"`
}

// repeat returns pattern repeated to n bytes.
func repeat(pattern []byte, n int) []byte {
	return bytes.Repeat(pattern, n/len(pattern)+1)[:n]
}

// xetchunkInputs are the inputs both chunkers must agree on: sizes around every limit, inputs that force cuts
// and inputs with many natural cuts.
func xetchunkInputs() []struct {
	name string
	data []byte
} {
	const k = 1 << 10
	// Bytes whose gear table entries have a zero top half make h&mask == 0 likely: a sequence of them cuts at
	// the first position the chunker hashes (right after the skip-ahead).
	var cutty []byte
	for b := range 256 {
		if b == 0x11 || b == 0x17 { // gear table entries 0x00005082…, 0x00000106…
			cutty = append(cutty, byte(b))
		}
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{42}},
		{"100 B", randomBytes(1, 100)},
		{"8 KiB-1", randomBytes(2, 8*k-1)},
		{"8 KiB", randomBytes(3, 8*k)},
		{"8 KiB+1", randomBytes(4, 8*k+1)},
		{"64 KiB", randomBytes(5, 64*k)},
		{"128 KiB", randomBytes(6, 128*k)},
		{"128 KiB+1", randomBytes(7, 128*k+1)},
		{"zeros 1 MiB", make([]byte, 1<<20)},
		{"zeros 128 KiB", make([]byte, 128*k)},
		{"repeated 7 B pattern", repeat([]byte("abcdefg"), 700*k)},
		{"repeated 4 KiB pattern", repeat(randomBytes(8, 4*k), 1<<20)},
		{"repeated 64 KiB pattern", repeat(randomBytes(9, 64*k), 1<<20)},
		{"cut-prone bytes", repeat(cutty, 300*k)},
		{"random then zeros", append(randomBytes(10, 3<<20), make([]byte, 1<<20)...)},
		{"random 5 MiB", randomBytes(11, 5<<20)},
	}
	// Random data with cut-prone runs planted at and around every skip-ahead position.
	planted := randomBytes(12, 2<<20)
	r := rand.New(rand.NewPCG(12, 13))
	for i := 0; i < 200; i++ {
		p := r.IntN(len(planted) - 100)
		copy(planted[p:], repeat(cutty, 1+r.IntN(80)))
	}
	inputs = append(inputs, struct {
		name string
		data []byte
	}{"random with planted cut runs", planted})
	return inputs
}

// randomReader returns reads of random sizes from 1 byte to 300 KiB, to exercise the streaming chunker.
type randomReader struct {
	r    *bytes.Reader
	rand *rand.Rand
}

func (rr *randomReader) Read(p []byte) (int, error) {
	n := 1 + rr.rand.IntN(300<<10)
	if rr.rand.IntN(4) == 0 {
		n = 1 + rr.rand.IntN(100)
	}
	return rr.r.Read(p[:min(n, len(p))])
}

// TestXetChunkInterop requires internal/xet's chunk boundaries, chunk hashes, xorb hash, file hash,
// verification hash and HMAC to equal @huggingface/xetchunk-wasm's on every input.
func TestXetChunkInterop(t *testing.T) {
	node := xetchunkOrSkip(t)
	inputs := xetchunkInputs()
	dir := t.TempDir()
	var args []string
	for i, in := range inputs {
		p := filepath.Join(dir, fmt.Sprintf("in%02d", i))
		if err := os.WriteFile(p, in.data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var got struct {
		Results []xetchunkResult `json:"results"`
	}
	runXetchunk(t, node, &got, args...)
	if len(got.Results) != len(inputs) {
		t.Fatalf("xetchunk.mjs returned %d results for %d inputs", len(got.Results), len(inputs))
	}
	for i, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			want := got.Results[i]
			refs := xet.Chunks(in.data)
			if len(refs) != len(want.Chunks) {
				t.Fatalf("%d chunks, xetchunk-wasm has %d", len(refs), len(want.Chunks))
			}
			hashes := make([]xet.Hash, len(refs))
			for j, r := range refs {
				if r.Len != want.Chunks[j].Len || r.Hash.String() != want.Chunks[j].Hash {
					t.Fatalf("chunk %d: %d bytes %s, xetchunk-wasm has %d bytes %s", j, r.Len, r.Hash,
						want.Chunks[j].Len, want.Chunks[j].Hash)
				}
				hashes[j] = r.Hash
			}
			if h := xet.XorbHash(refs).String(); h != want.XorbHash {
				t.Errorf("xorb hash %s, xetchunk-wasm has %s", h, want.XorbHash)
			}
			fh := xet.FileHash(refs)
			if fh.String() != want.FileHash {
				t.Errorf("file hash %s, xetchunk-wasm has %s", fh, want.FileHash)
			}
			if h := xet.VerificationHash(hashes).String(); h != want.VerificationHash {
				t.Errorf("verification hash %s, xetchunk-wasm has %s", h, want.VerificationHash)
			}
			if len(refs) > 0 {
				if h := xet.HMAC(fh, refs[0].Hash).String(); h != want.HMAC {
					t.Errorf("hmac %s, xetchunk-wasm has %s", h, want.HMAC)
				}
			}
			// The streaming chunker, fed reads of random sizes, cuts at the same places.
			var streamed []xet.ChunkRef
			rr := &randomReader{r: bytes.NewReader(in.data), rand: rand.New(rand.NewPCG(uint64(i), 99))}
			err := xet.Split(context.Background(), io.Reader(rr), func(chunk []byte, ref xet.ChunkRef) error {
				streamed = append(streamed, ref)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(streamed) != len(refs) {
				t.Fatalf("Split: %d chunks, Chunks has %d", len(streamed), len(refs))
			}
			for j := range refs {
				if streamed[j] != refs[j] {
					t.Fatalf("Split chunk %d: %+v, Chunks has %+v", j, streamed[j], refs[j])
				}
			}
		})
	}
}

// runXetchunk runs xetchunk.mjs with args and decodes its JSON output into v.
func runXetchunk(t *testing.T, node string, v any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, append([]string{"xetchunk.mjs"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node xetchunk.mjs %v: %v\n%s", args, err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("xetchunk.mjs %v output: %v", args, err)
	}
}

// xorbInteropData mixes content that each compression scheme wins on: random (none), text (LZ4), slowly
// varying float32s (BG4+LZ4) and zeros.
func xorbInteropData() []byte {
	var b bytes.Buffer
	b.Write(randomBytes(20, 200<<10))
	b.Write(repeat([]byte("the quick brown fox jumps over the lazy dog; "), 300<<10))
	f := make([]byte, 400<<10)
	for i := 0; i+4 <= len(f); i += 4 {
		binary.LittleEndian.PutUint32(f[i:], math.Float32bits(1+float32(i%4093)/8192))
	}
	b.Write(f)
	b.Write(make([]byte, 300<<10))
	b.Write(randomBytes(21, 77777))
	return b.Bytes()
}

// TestXetXorbInterop exchanges xorbs with @huggingface/hub's own xorb coder: a xorb it writes (its scheme
// choice, lz4js frames, BG4) parses with xet.ParseXorb to the same chunks and xorb hash, and a xorb
// xet.XorbBuilder writes decodes with its parser to the same bytes. Both sides must use LZ4 and BG4.
func TestXetXorbInterop(t *testing.T) {
	node := xetchunkOrSkip(t)
	data := xorbInteropData()
	dir := t.TempDir()
	in := filepath.Join(dir, "data")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	schemesOf := func(s []int) map[int]bool {
		m := map[int]bool{}
		for _, v := range s {
			m[v] = true
		}
		return m
	}

	t.Run("JS writes, Go parses", func(t *testing.T) {
		var enc struct {
			XorbHash string `json:"xorbHash"`
			Chunks   []struct {
				Len    uint32 `json:"len"`
				Hash   string `json:"hash"`
				Scheme int    `json:"scheme"`
			} `json:"chunks"`
		}
		jsXorb := filepath.Join(dir, "js.xorb")
		runXetchunk(t, node, &enc, "--xorb-encode", in, jsXorb)
		b, err := os.ReadFile(jsXorb)
		if err != nil {
			t.Fatal(err)
		}
		x, err := xet.ParseXorb(b)
		if err != nil {
			t.Fatalf("ParseXorb of the JS client's xorb: %v", err)
		}
		if x.Hash.String() != enc.XorbHash || x.HasFooter {
			t.Fatalf("xorb hash %s (footer %v), the JS client has %s", x.Hash, x.HasFooter, enc.XorbHash)
		}
		var joined []byte
		var schemes []int
		for i, c := range x.Chunks {
			if c.Ref.Len != enc.Chunks[i].Len || c.Ref.Hash.String() != enc.Chunks[i].Hash || int(c.Compression) != enc.Chunks[i].Scheme {
				t.Fatalf("chunk %d: %d %s %v, the JS client wrote %+v", i, c.Ref.Len, c.Ref.Hash, c.Compression, enc.Chunks[i])
			}
			joined = append(joined, c.Data...)
			schemes = append(schemes, enc.Chunks[i].Scheme)
		}
		if !bytes.Equal(joined, data) {
			t.Fatal("decoded bytes differ")
		}
		if s := schemesOf(schemes); !s[0] || !s[1] || !s[2] {
			t.Fatalf("the JS client used schemes %v; the test needs none, LZ4 and BG4", s)
		}
	})

	t.Run("Go writes, JS parses", func(t *testing.T) {
		b := xet.NewXorbBuilder()
		var schemes []int
		err := xet.Split(context.Background(), bytes.NewReader(data), func(chunk []byte, ref xet.ChunkRef) error {
			_, err := b.AddHashedChunk(ref, chunk)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		goXorb := filepath.Join(dir, "go.xorb")
		if err := os.WriteFile(goXorb, b.Serialize(), 0o644); err != nil {
			t.Fatal(err)
		}
		var dec struct {
			Chunks []struct {
				Len    uint32 `json:"len"`
				Scheme int    `json:"scheme"`
			} `json:"chunks"`
			SHA256 string `json:"sha256"`
		}
		runXetchunk(t, node, &dec, "--xorb-decode", goXorb)
		refs := b.Chunks()
		if len(dec.Chunks) != len(refs) {
			t.Fatalf("the JS client decoded %d chunks, we wrote %d", len(dec.Chunks), len(refs))
		}
		for i := range refs {
			if dec.Chunks[i].Len != refs[i].Len {
				t.Fatalf("chunk %d: the JS client decoded %d bytes, we wrote %d", i, dec.Chunks[i].Len, refs[i].Len)
			}
			schemes = append(schemes, dec.Chunks[i].Scheme)
		}
		if dec.SHA256 != sha(data) {
			t.Fatal("the JS client decoded different bytes")
		}
		if s := schemesOf(schemes); !s[0] || !s[1] || !s[2] {
			t.Fatalf("we used schemes %v; the test needs none, LZ4 and BG4", s)
		}
	})
}
