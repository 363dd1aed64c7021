package gguf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// buffers are reused across chunks of one Write or ProduceRange call.
type buffers struct {
	raw, perm, out []byte
	vals, tmp      []float32
}

func grow[T any](b []T, n int64) []T {
	if int64(cap(b)) < n {
		return make([]T, n)
	}
	return b[:n]
}

// sliceWriter fills a fixed byte slice.
type sliceWriter struct {
	b []byte
	n int
}

func (s *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(s.b)-s.n {
		return 0, fmt.Errorf("gguf: source wrote more bytes than asked for")
	}
	s.n += copy(s.b[s.n:], p)
	return len(p), nil
}

// permuteRows applies llama's Q/K permutation to rows of rowLen elements (of any size es bytes) in src, which
// holds whole heads of headRows rows: output row h·d + 2i + j is input row h·d + j·d/2 + i.
func permuteRows(dst, src []byte, headRows, rowLen int64) {
	half := headRows / 2
	for h := int64(0); h*headRows*rowLen < int64(len(src)); h++ {
		base := h * headRows
		for i := range half {
			for j := range int64(2) {
				o := (base + 2*i + j) * rowLen
				in := (base + j*half + i) * rowLen
				copy(dst[o:o+rowLen], src[in:in+rowLen])
			}
		}
	}
}

// prepare reads rows [r0, r1) of tensor p and brings them to what the encoder takes: either the final bytes
// (a view of p.data, or source bytes already in the output encoding) or float32 values in b.vals.
func (f *File) prepare(ctx context.Context, p *plannedTensor, r0, r1 int64, b *buffers) (final []byte, vals []float32, err error) {
	if p.data != nil {
		return p.data[r0*p.rowBytes : r1*p.rowBytes], nil, nil
	}
	es := int64(p.srcDType.Size())
	n := (r1 - r0) * p.cols
	b.raw = grow(b.raw, n*es)
	sw := &sliceWriter{b: b.raw}
	if err := f.src.ReadTensor(ctx, p.src, r0*p.cols*es, n*es, sw); err != nil {
		return nil, nil, fmt.Errorf("gguf: read %s: %w", p.src, err)
	}
	if sw.n != len(b.raw) {
		return nil, nil, fmt.Errorf("gguf: read %s: %d of %d bytes", p.src, sw.n, len(b.raw))
	}
	raw := b.raw
	if p.heads > 0 {
		b.perm = grow(b.perm, int64(len(raw)))
		permuteRows(b.perm, raw, p.rows/p.heads, p.cols*es)
		raw = b.perm
	}
	if !p.addOne && p.roundTo == tensor.Invalid && p.info.Type == floatGGML(p.srcDType) {
		return raw, nil, nil // the bytes are already in the output encoding
	}
	b.vals = grow(b.vals, n)
	if err := tensor.DecodeFloats(p.srcDType, raw, b.vals); err != nil {
		return nil, nil, fmt.Errorf("gguf: %s: %w", p.src, err)
	}
	for i, v := range b.vals {
		if p.addOne {
			v++
		}
		if p.roundTo != tensor.Invalid {
			v = tensor.RoundTo(p.roundTo, v)
		}
		b.vals[i] = v
	}
	return nil, b.vals, nil
}

// encodeRows encodes prepared float32 rows of p as its type into b.out.
func (f *File) encodeRows(ctx context.Context, p *plannedTensor, vals []float32, b *buffers) ([]byte, error) {
	b.out = grow(b.out, int64(len(vals))/p.cols*p.rowBytes)
	if err := f.encode(ctx, p.info.Type, b.out, vals, int(p.cols), f.threads); err != nil {
		return nil, fmt.Errorf("gguf: quantize %s as %s: %w", p.info.Name, p.info.Type, err)
	}
	return b.out, nil
}

// floatGGML is the ggml type of a float dtype.
func floatGGML(d tensor.DType) ggml.Type {
	switch d {
	case tensor.F16:
		return ggml.F16
	case tensor.BF16:
		return ggml.BF16
	}
	return ggml.F32
}

// tensorDType is the safetensors dtype of a float ggml type.
func tensorDType(t ggml.Type) (tensor.DType, bool) {
	switch t {
	case ggml.F32:
		return tensor.F32, true
	case ggml.F16:
		return tensor.F16, true
	case ggml.BF16:
		return tensor.BF16, true
	}
	return tensor.Invalid, false
}

var zeros [Alignment]byte

// job is one piece of the data section a ProduceRange call writes: bytes [lo, hi) of the encoded rows
// [r0, r1) of tensor p, or, when p is nil, hi-lo zero bytes of padding.
type job struct {
	p              *plannedTensor
	r0, r1, lo, hi int64
}

// jobs lists the pieces of the data section that bytes [off, end) cover (off at or after the header).
func (f *File) jobs(off, end int64) []job {
	hl := int64(len(f.header))
	// The first tensor whose padded extent ends after off.
	i := sort.Search(len(f.tensors), func(i int) bool {
		t := f.tensors[i].info
		return hl+t.Offset+padTo(t.Bytes, Alignment) > off
	})
	var js []job
	for ; i < len(f.tensors) && off < end; i++ {
		p := f.tensors[i]
		start := hl + p.info.Offset
		dataEnd := start + p.info.Bytes
		chunkBytes := p.chunkRows * p.rowBytes
		for off < end && off < dataEnd {
			c := (off - start) / chunkBytes
			r0 := c * p.chunkRows
			r1 := min(r0+p.chunkRows, p.rows)
			cs := start + c*chunkBytes
			hi := min(end, cs+(r1-r0)*p.rowBytes)
			js = append(js, job{p: p, r0: r0, r1: r1, lo: off - cs, hi: hi - cs})
			off = hi
		}
		if padEnd := start + padTo(p.info.Bytes, Alignment); off < end && off < padEnd {
			m := min(end, padEnd) - off
			js = append(js, job{lo: 0, hi: m})
			off += m
		}
	}
	return js
}

// prepared is a job whose rows have been read (and decoded), waiting to be encoded and written.
type prepared struct {
	j     job
	b     *buffers
	final []byte
	vals  []float32
	err   error
}

// ProduceRange writes bytes [off, off+n) of the file to w (the same bytes Write writes there). Only the tensors
// (and, within them, the chunks of rows) that overlap the range are read and encoded. Reading and decoding the
// next chunk overlaps encoding the current one.
func (f *File) ProduceRange(ctx context.Context, off, n int64, w io.Writer) error {
	if off < 0 || n < 0 || off > f.size || n > f.size-off {
		return fmt.Errorf("gguf: range [%d, %d) is outside the %d-byte file", off, off+n, f.size)
	}
	end := off + n
	if hl := int64(len(f.header)); off < hl {
		if _, err := w.Write(f.header[off:min(end, hl)]); err != nil {
			return err
		}
		off = min(end, hl)
	}
	js := f.jobs(off, end)
	if len(js) == 0 {
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan *buffers, 2)
	free <- &buffers{}
	free <- &buffers{}
	ready := make(chan prepared, 1)
	go func() {
		defer close(ready)
		for _, j := range js {
			var b *buffers
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			pr := prepared{j: j, b: b}
			if j.p != nil {
				pr.final, pr.vals, pr.err = f.prepare(ctx, j.p, j.r0, j.r1, b)
			}
			select {
			case ready <- pr:
			case <-ctx.Done():
				return
			}
			if pr.err != nil {
				return
			}
		}
	}()
	stop := func(err error) error {
		cancel()
		for range ready { // wait for the reader to stop using the Source and the buffers
		}
		return err
	}
	done := 0
	for pr := range ready {
		if pr.err != nil {
			return stop(pr.err)
		}
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		var data []byte
		if pr.j.p == nil {
			data = zeros[:pr.j.hi]
		} else {
			data = pr.final
			if data == nil {
				var err error
				if data, err = f.encodeRows(ctx, pr.j.p, pr.vals, pr.b); err != nil {
					return stop(err)
				}
			}
		}
		if _, err := w.Write(data[pr.j.lo:pr.j.hi]); err != nil {
			return stop(err)
		}
		done++
		free <- pr.b
	}
	if done != len(js) {
		return ctx.Err() // the reader stopped because the caller's context ended
	}
	return nil
}

// Write streams the whole file to w.
func (f *File) Write(ctx context.Context, w io.Writer) error {
	return f.ProduceRange(ctx, 0, f.size, w)
}

// WriteFile writes the file to path atomically (a temporary file in the same directory, fsynced, then
// renamed): on any error no file is left at path.
func WriteFile(ctx context.Context, path string, f *File) error {
	tf, err := fsutil.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := tf.Name()
	bw := bufio.NewWriterSize(tf, 1<<20)
	err = f.Write(ctx, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tf.Sync()
	}
	if cerr := tf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
