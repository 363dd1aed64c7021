package xet

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
)

// Chunk size limits of Xet content-defined chunking.
const (
	// TargetChunkSize is the mean chunk size the gearhash mask aims for.
	TargetChunkSize = 64 << 10
	// MinChunkSize is the nominal smallest chunk. As in xet-core, the skip-ahead resumes hashing 65 bytes before
	// it, so a chunk other than the last is at least MinChunkSize-64 bytes.
	MinChunkSize = TargetChunkSize / 8
	// MaxChunkSize is where the chunker forces a cut.
	MaxChunkSize = TargetChunkSize * 2

	// hashWindow is the gearhash window: after 64 bytes h depends on nothing earlier.
	hashWindow = 64
	// gearMask keeps the top 16 bits: a cut where they are all zero, once per 64 KiB on average. gearScan
	// tests it as h < 1<<48.
	gearMask = uint64(TargetChunkSize-1) << 48
	// skipAhead is how many bytes of a new chunk are never hashed: a cut cannot fall in them.
	skipAhead = MinChunkSize - hashWindow - 1
)

// Chunker finds Xet chunk boundaries in a byte stream fed in pieces of any size. Its zero value is ready to
// use; it only tracks positions, so the caller keeps the bytes of the chunk in progress.
type Chunker struct {
	h uint64 // gearhash state, reset at each cut
	n int    // bytes of the chunk in progress
}

// NewChunker returns a Chunker at the start of a stream.
func NewChunker() *Chunker { return &Chunker{} }

// Next consumes data up to the next chunk boundary. It returns how many bytes of data it consumed and whether
// the chunk in progress ends after them (then the next byte starts a new chunk). With cut false it consumed all
// of data and the chunk continues. At the end of the stream the chunk in progress (Pending bytes, if any) is
// the last chunk.
func (c *Chunker) Next(data []byte) (n int, cut bool) {
	if len(data) == 0 {
		return 0, false
	}
	if c.n+hashWindow < MinChunkSize {
		// Skip ahead: the first skipAhead bytes of a chunk are not hashed (as in xet-core and the JS chunker).
		n = min(skipAhead-c.n, len(data))
		c.n += n
	}
	end := min(len(data), n+MaxChunkSize-c.n)
	p, h := gearScan(c.h, data[n:end])
	c.h = h
	step := end - n
	if p >= 0 {
		step, cut = p, true
	}
	if c.n+step >= MaxChunkSize {
		step, cut = MaxChunkSize-c.n, true
	}
	n += step
	c.n += step
	if cut {
		c.n, c.h = 0, 0
	}
	return n, cut
}

// Pending returns the length of the chunk in progress.
func (c *Chunker) Pending() int { return c.n }

// Reset starts a new stream.
func (c *Chunker) Reset() { *c = Chunker{} }

// gearScanGo is the portable gearhash loop: it returns the 1-based position of the first byte of data after
// which h&gearMask == 0 (or -1) and the state after the bytes it hashed. The mask test is written as
// h < 1<<48 (the same thing for the top-16-bit mask).
//
// The loop is bound by the latency of the chain h -> 2h + table[b]. It advances the chain two bytes per step,
// h2 = 4h + (2*table[b0] + table[b1]), with the table terms combined off the chain, and derives the odd state
// 2h + table[b0] beside it for its mask test: about 1.3x the one-byte-per-step loop (docs/xet.md). On amd64
// gearScan uses an assembly loop instead (chunk_amd64.s) and this one only for the tail.
func gearScanGo(h uint64, data []byte) (int, uint64) {
	t := &gearTable
	i := 0
	for ; i+8 <= len(data); i += 8 {
		d := (*[8]byte)(data[i:])
		a0, a1 := t[d[0]], t[d[1]]
		h1 := h*2 + a0
		if h1 < 1<<48 {
			return i + 1, h1
		}
		h2 := h*4 + (a0*2 + a1)
		if h2 < 1<<48 {
			return i + 2, h2
		}
		a2, a3 := t[d[2]], t[d[3]]
		h3 := h2*2 + a2
		if h3 < 1<<48 {
			return i + 3, h3
		}
		h4 := h2*4 + (a2*2 + a3)
		if h4 < 1<<48 {
			return i + 4, h4
		}
		a4, a5 := t[d[4]], t[d[5]]
		h5 := h4*2 + a4
		if h5 < 1<<48 {
			return i + 5, h5
		}
		h6 := h4*4 + (a4*2 + a5)
		if h6 < 1<<48 {
			return i + 6, h6
		}
		a6, a7 := t[d[6]], t[d[7]]
		h7 := h6*2 + a6
		if h7 < 1<<48 {
			return i + 7, h7
		}
		h = h6*4 + (a6*2 + a7)
		if h < 1<<48 {
			return i + 8, h
		}
	}
	for ; i < len(data); i++ {
		h = t[data[i]] + h*2
		if h < 1<<48 {
			return i + 1, h
		}
	}
	return -1, h
}

// Chunks splits data, a whole file, into Xet chunks and hashes them.
func Chunks(data []byte) []ChunkRef {
	var refs []ChunkRef
	_ = chunkBytes(data, func(chunk []byte, ref ChunkRef) error {
		refs = append(refs, ref)
		return nil
	})
	return refs
}

// chunkHasher computes chunk hashes (ChunkHash) with one keyed BLAKE3 state reused from chunk to chunk:
// ChunkHash allocates and clears a state of about 10 KiB per call, a sixth of a 64 KiB chunk's bytes.
type chunkHasher struct{ h *blake3.Hasher }

func newChunkHasher() chunkHasher {
	h, err := blake3.NewKeyed(dataKey[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	return chunkHasher{h}
}

// ref returns chunk's reference: ChunkHash(chunk) and its length.
func (c chunkHasher) ref(chunk []byte) ChunkRef {
	c.h.Reset() // keeps the key
	_, _ = c.h.Write(chunk)
	ref := ChunkRef{Len: uint32(len(chunk))}
	c.h.Sum(ref.Hash[:0])
	return ref
}

// chunkBytes calls fn for each chunk of data, a whole file.
func chunkBytes(data []byte, fn func(chunk []byte, ref ChunkRef) error) error {
	var c Chunker
	hasher := newChunkHasher()
	start := 0
	for pos := 0; pos < len(data); {
		n, cut := c.Next(data[pos:])
		pos += n
		if cut || pos == len(data) {
			chunk := data[start:pos]
			if err := fn(chunk, hasher.ref(chunk)); err != nil {
				return err
			}
			start = pos
		}
	}
	return nil
}

// splitBuffer is how much Split reads at a time, beyond the chunk in progress.
const splitBuffer = 4 << 20

// Split reads r to the end, splits it into Xet chunks and calls fn with each chunk's bytes and reference, in
// order. chunk is valid only during the call. It stops at the first error from r, fn or ctx.
func Split(ctx context.Context, r io.Reader, fn func(chunk []byte, ref ChunkRef) error) error {
	var c Chunker
	hasher := newChunkHasher()
	buf := make([]byte, MaxChunkSize+splitBuffer)
	start, fill := 0, 0 // buf[start:fill] is the chunk in progress plus unscanned bytes
	scan := 0           // buf[start:scan] has been fed to c
	eof := false
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("xet: split: %w", err)
		}
		for scan < fill {
			n, cut := c.Next(buf[scan:fill])
			scan += n
			if cut {
				chunk := buf[start:scan]
				if err := fn(chunk, hasher.ref(chunk)); err != nil {
					return err
				}
				start = scan
			}
		}
		if eof {
			if start < fill {
				chunk := buf[start:fill]
				return fn(chunk, hasher.ref(chunk))
			}
			return nil
		}
		// Move the chunk in progress to the front and read more.
		fill = copy(buf, buf[start:fill])
		scan, start = fill, 0
		n, err := io.ReadFull(r, buf[fill:])
		fill += n
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			eof = true
		} else if err != nil {
			return fmt.Errorf("xet: split: read: %w", err)
		}
	}
}
