package merge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/safetensors"
)

// VerifyBlockSize is the granularity of the digests a ShardDigest keeps for verifying ranges produced later.
const VerifyBlockSize = 1 << 20

// rangeBufferBudget bounds the tile buffers of one ranged stream (several run at once, one per upload part).
const rangeBufferBudget = 32 << 20

// ErrOutputChanged reports that bytes produced again differ from the bytes a first pass produced (a base or
// adapter file changed underneath, or non-determinism).
var ErrOutputChanged = errors.New("merge output changed since it was digested")

// Producer is a planned merge whose weight files are never written: any byte range of any shard is produced on
// demand (deterministically: the same bytes every time), so that an upload can send the merged model without a
// copy of it on disk. It is safe for concurrent use; each call runs its own bounded tile stream.
type Producer struct {
	p     *Plan
	sp    *export.ShardPlan
	index map[string]*outTensor
	norms normCache // DoRA column factors, computed once per tensor
	// digested counts the bytes pass one has produced, for Options.Progress.
	digested atomic.Int64
}

// ShardDigest is what a first pass over a shard learns: its size, SHA-256 and sample, and the SHA-256 of every
// VerifyBlockSize block, which lets later ranges be checked against it.
type ShardDigest struct {
	export.FileDigest
	Blocks [][32]byte
}

// Producer plans the shards of the output.
func (p *Plan) Producer() (*Producer, error) {
	sp, err := p.planShards()
	if err != nil {
		return nil, err
	}
	idx := make(map[string]*outTensor, len(p.tensors))
	for _, t := range p.tensors {
		idx[t.Name] = t
	}
	return &Producer{p: p, sp: sp, index: idx}, nil
}

// Shards is the shard plan (file names, layouts, sizes). Callers must not modify it.
func (pr *Producer) Shards() *export.ShardPlan { return pr.sp }

// ProduceRange writes bytes [off, off+n) of shard i to w: the safetensors header for the first bytes, then the
// tiles overlapping the range (tiles before it are not computed), cut to the range.
func (pr *Producer) ProduceRange(ctx context.Context, i int, off, n int64, w io.Writer) error {
	return pr.produceRange(ctx, i, off, n, w, rangeBufferBudget)
}

// produceRange is ProduceRange with the tile buffers of its stream bounded by budget.
func (pr *Producer) produceRange(ctx context.Context, i int, off, n int64, w io.Writer, budget int) error {
	if i < 0 || i >= len(pr.sp.Shards) {
		return fmt.Errorf("merge: no shard %d", i)
	}
	l := pr.sp.Shards[i].Layout
	end := off + n
	if off < 0 || n < 0 || end > l.Size {
		return fmt.Errorf("merge: range [%d, %d) outside shard %s (%d bytes)", off, end, pr.sp.Shards[i].FileName, l.Size)
	}
	h := int64(len(l.Header))
	if off < h {
		if _, err := w.Write(l.Header[off:min(end, h)]); err != nil {
			return err
		}
		off = h
	}
	if off >= end {
		return nil
	}
	dOff, dEnd := off-h, end-h
	var order []*outTensor
	var infos []safetensors.TensorInfo
	for _, ti := range l.Tensors {
		if ti.End <= dOff || ti.Begin >= dEnd {
			continue // outside the range, or empty (no bytes, no tiles)
		}
		t := pr.index[ti.Name]
		if t == nil {
			return fmt.Errorf("merge: shard tensor %s is not in the plan", ti.Name)
		}
		order = append(order, t)
		infos = append(infos, ti)
	}
	if len(order) == 0 {
		return fmt.Errorf("merge: no tensor in range [%d, %d) of shard %s", off, end, pr.sp.Shards[i].FileName)
	}
	threads := max(1, pr.p.opts.Threads)
	st := newStreamFrom(ctx, pr.p, order, dOff-infos[0].Begin, threads, budget, &pr.norms)
	defer st.stop()
	for k, ti := range infos {
		if err := st.copyRange(ctx, order[k], max(dOff, ti.Begin)-ti.Begin, min(dEnd, ti.End)-ti.Begin, w); err != nil {
			if ctx.Err() != nil && !IsBadInput(err) {
				return fmt.Errorf("merge: %w", ctx.Err())
			}
			return fmt.Errorf("merge: tensor %s: %w", ti.Name, err)
		}
	}
	return nil
}

// ReadTensor writes bytes [off, off+n) of the output tensor name, encoded in its output dtype, to w: the bytes
// the tensor has in the shards ProduceRange serves, from the same deterministic tile stream (tiles before off are
// not computed). It is safe for concurrent use.
func (pr *Producer) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	t := pr.index[name]
	if t == nil {
		return fmt.Errorf("merge: no output tensor %s", name)
	}
	end := off + n
	if off < 0 || n < 0 || end > t.Bytes {
		return fmt.Errorf("merge: range [%d, %d) outside tensor %s (%d bytes)", off, end, name, t.Bytes)
	}
	if n == 0 {
		return nil
	}
	st := newStreamFrom(ctx, pr.p, []*outTensor{t}, off, max(1, pr.p.opts.Threads), rangeBufferBudget, &pr.norms)
	defer st.stop()
	if err := st.copyRange(ctx, t, off, end, w); err != nil {
		if ctx.Err() != nil && !IsBadInput(err) {
			return fmt.Errorf("merge: %w", ctx.Err())
		}
		return fmt.Errorf("merge: tensor %s: %w", name, err)
	}
	return nil
}

// copyRange takes tensor t's tiles from the stream (the stream skipped those before from when t is the first)
// and writes bytes [from, to) of the tensor to w. A tensor the range ends inside is not drained: the caller stops
// the stream.
func (s *stream) copyRange(ctx context.Context, t *outTensor, from, to int64, w io.Writer) error {
	es := int64(t.DType.Size())
	for {
		j, err := s.nextTile(ctx, t)
		if err != nil {
			return err
		}
		b0 := j.start
		if t.Kind != KindCopy {
			b0 *= es
		}
		b1 := b0 + int64(len(j.out))
		lo, hi := max(b0, from), min(b1, to)
		if lo < hi {
			_, err = w.Write(j.out[lo-b0 : hi-b0])
		}
		s.release(j.slot)
		if err != nil {
			return err
		}
		if b1 >= to {
			return nil
		}
	}
}

// Digest is pass one over shard i: it produces the whole shard without writing it and returns its digest.
// Options.Progress receives the bytes digested so far, of all shards, against the shards' total file size.
func (pr *Producer) Digest(ctx context.Context, i int) (*ShardDigest, error) {
	if i < 0 || i >= len(pr.sp.Shards) {
		return nil, fmt.Errorf("merge: no shard %d", i)
	}
	s := pr.sp.Shards[i]
	bw := &blockHasher{size: VerifyBlockSize}
	var sink io.Writer = bw
	if prog := pr.p.opts.Progress; prog != nil {
		total := pr.sp.FileSize()
		sink = writerFunc(func(b []byte) (int, error) {
			n, err := bw.Write(b)
			prog(pr.digested.Add(int64(n)), total)
			return n, err
		})
	}
	// One stream at a time: the whole merge's tile budget, as Execute.
	return digestStream(s.FileName, bw, sink, func(w io.Writer) error {
		return pr.produceRange(ctx, i, 0, s.Layout.Size, w, tileBufferBudget)
	})
}

// DigestProduced is pass one over any deterministic produced file of size bytes (a GGUF file made from a
// Producer): produce(ctx, off, n, w) is called once for the whole file, and the digest (size, SHA-256, sample,
// block digests) is named path.
func DigestProduced(ctx context.Context, path string, size int64, produce func(ctx context.Context, off, n int64, w io.Writer) error) (*ShardDigest, error) {
	bw := &blockHasher{size: VerifyBlockSize}
	return digestStream(path, bw, bw, func(w io.Writer) error { return produce(ctx, 0, size, w) })
}

// digestStream runs produce into a digest writer over sink, whose block sums bw keeps.
func digestStream(path string, bw *blockHasher, sink io.Writer, produce func(io.Writer) error) (*ShardDigest, error) {
	dw := safetensors.NewDigestWriter(sink)
	err := produce(dw)
	d, derr := dw.Close()
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	bw.finish()
	return &ShardDigest{
		FileDigest: export.FileDigest{Path: path, Size: d.Size, SHA256: d.SHA256, Sample: d.Sample},
		Blocks:     bw.sums,
	}, nil
}

// ProduceVerified is ProduceRange checked against a first pass: the range is widened to whole VerifyBlockSize
// blocks, every block is hashed as it is produced and compared with d.Blocks before its last bytes reach w, and
// only [off, off+n) is written to w. A mismatch is an error wrapping ErrOutputChanged, returned before the range
// is complete, so a consumer with a known length never accepts wrong bytes.
func (pr *Producer) ProduceVerified(ctx context.Context, i int, d *ShardDigest, off, n int64, w io.Writer) error {
	return VerifyProduced(ctx, d, off, n, w, func(ctx context.Context, off, n int64, w io.Writer) error {
		return pr.ProduceRange(ctx, i, off, n, w)
	})
}

// VerifyProduced is ProduceVerified for any deterministic produced file whose pass one DigestProduced (or
// Digest) computed: produce serves its byte ranges.
func VerifyProduced(ctx context.Context, d *ShardDigest, off, n int64, w io.Writer, produce func(ctx context.Context, off, n int64, w io.Writer) error) error {
	if d == nil || int64(len(d.Blocks)) != (d.Size+VerifyBlockSize-1)/VerifyBlockSize {
		return errors.New("merge: shard digest has no block digests")
	}
	a := off / VerifyBlockSize * VerifyBlockSize
	b := min(d.Size, (off+n+VerifyBlockSize-1)/VerifyBlockSize*VerifyBlockSize)
	vw := &verifyWriter{w: w, pos: a, from: off, to: off + n, size: d.Size, want: d.Blocks, name: d.Path, h: sha256.New()}
	vw.blockEnd = min(d.Size, a+VerifyBlockSize)
	return produce(ctx, a, b-a, vw)
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// blockHasher keeps the SHA-256 of every size-byte block written to it.
type blockHasher struct {
	size int64
	n    int64
	h    interface {
		io.Writer
		Sum([]byte) []byte
		Reset()
	}
	sums [][32]byte
}

func (b *blockHasher) Write(p []byte) (int, error) {
	if b.h == nil {
		b.h = sha256.New()
	}
	total := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), b.size-b.n)
		b.h.Write(p[:k])
		b.n += k
		p = p[k:]
		if b.n == b.size {
			b.flush()
		}
	}
	return total, nil
}

func (b *blockHasher) flush() {
	var s [32]byte
	b.h.Sum(s[:0])
	b.sums = append(b.sums, s)
	b.h.Reset()
	b.n = 0
}

// finish records the last, partial block.
func (b *blockHasher) finish() {
	if b.n > 0 {
		b.flush()
	}
}

// verifyWriter checks block digests of the bytes passing through and forwards those in [from, to).
type verifyWriter struct {
	w             io.Writer
	pos, from, to int64
	size          int64
	blockEnd      int64
	want          [][32]byte
	name          string
	h             interface {
		io.Writer
		Sum([]byte) []byte
		Reset()
	}
}

func (v *verifyWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), v.blockEnd-v.pos)
		chunk := p[:k]
		v.h.Write(chunk)
		start := v.pos
		v.pos += k
		p = p[k:]
		if v.pos == v.blockEnd {
			var s [32]byte
			v.h.Sum(s[:0])
			blk := (v.blockEnd - 1) / VerifyBlockSize
			if blk >= int64(len(v.want)) || s != v.want[blk] {
				return 0, fmt.Errorf("%w: %s bytes [%d, %d) differ from the first pass (a base or adapter file changed?)",
					ErrOutputChanged, v.name, blk*VerifyBlockSize, v.blockEnd)
			}
			v.h.Reset()
			v.blockEnd = min(v.blockEnd+VerifyBlockSize, v.size)
		}
		// Forward the verified-so-far part of this chunk that lies in [from, to). Bytes of a block are forwarded
		// only up to its end, which is checked above before the block's final chunk is forwarded.
		lo, hi := max(start, v.from), min(v.pos, v.to)
		if lo < hi {
			if _, err := v.w.Write(chunk[lo-start : hi-start]); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

// WriteSmallFiles writes every output file except the weight shards into Options.Out (committed like Execute's
// directory): the index (for a sharded plan), config.json, the copied tokenizer and generation config, the model
// card. It returns their digests and the card information.
func (pr *Producer) WriteSmallFiles(ctx context.Context) ([]export.FileDigest, export.CardInfo, error) {
	p := pr.p
	var card export.CardInfo
	var filesErr error
	_, files, err := export.WriteModel(ctx, p.opts.Out, pr.sp, nil, func() (export.ModelFiles, error) {
		var m export.ModelFiles
		m, card, filesErr = p.modelFiles(pr.sp, p.auxFiles())
		return m, filesErr
	})
	if err != nil {
		if err == filesErr {
			return nil, export.CardInfo{}, err
		}
		return nil, export.CardInfo{}, fmt.Errorf("merge: %w", err)
	}
	return files, card, nil
}
