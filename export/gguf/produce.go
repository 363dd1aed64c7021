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

// chunk produces rows [r0, r1) of tensor p, encoded, into b.out (or a view of p.data).
func (f *File) chunk(ctx context.Context, p *plannedTensor, r0, r1 int64, b *buffers) ([]byte, error) {
	if p.data != nil {
		return p.data[r0*p.rowBytes : r1*p.rowBytes], nil
	}
	es := int64(p.srcDType.Size())
	n := (r1 - r0) * p.cols
	b.raw = grow(b.raw, n*es)
	sw := &sliceWriter{b: b.raw}
	if err := f.src.ReadTensor(ctx, p.src, r0*p.cols*es, n*es, sw); err != nil {
		return nil, fmt.Errorf("gguf: read %s: %w", p.src, err)
	}
	if sw.n != len(b.raw) {
		return nil, fmt.Errorf("gguf: read %s: %d of %d bytes", p.src, sw.n, len(b.raw))
	}
	raw := b.raw
	if p.heads > 0 {
		b.perm = grow(b.perm, int64(len(raw)))
		permuteRows(b.perm, raw, p.rows/p.heads, p.cols*es)
		raw = b.perm
	}
	out := p.info.Type
	if !p.addOne && p.roundTo == tensor.Invalid && out == floatGGML(p.srcDType) {
		return raw, nil // the bytes are already in the output encoding
	}
	b.vals = grow(b.vals, n)
	if err := tensor.DecodeFloats(p.srcDType, raw, b.vals); err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", p.src, err)
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
	b.out = grow(b.out, (r1-r0)*p.rowBytes)
	if err := f.encode(ctx, out, b.out, b.vals, int(p.cols), f.threads); err != nil {
		return nil, fmt.Errorf("gguf: quantize %s as %s: %w", p.info.Name, out, err)
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

// ProduceRange writes bytes [off, off+n) of the file to w (the same bytes Write writes there). Only the tensors
// (and, within them, the chunks of rows) that overlap the range are read and encoded.
func (f *File) ProduceRange(ctx context.Context, off, n int64, w io.Writer) error {
	if off < 0 || n < 0 || off > f.size || n > f.size-off {
		return fmt.Errorf("gguf: range [%d, %d) is outside the %d-byte file", off, off+n, f.size)
	}
	end := off + n
	hl := int64(len(f.header))
	if off < hl {
		if _, err := w.Write(f.header[off:min(end, hl)]); err != nil {
			return err
		}
		off = min(end, hl)
	}
	// The first tensor whose padded extent ends after off.
	i := sort.Search(len(f.tensors), func(i int) bool {
		t := f.tensors[i].info
		return hl+t.Offset+padTo(t.Bytes, Alignment) > off
	})
	var b buffers
	for ; i < len(f.tensors) && off < end; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := f.tensors[i]
		start := hl + p.info.Offset
		dataEnd := start + p.info.Bytes
		for off < end && off < dataEnd {
			rel := off - start
			chunkBytes := p.chunkRows * p.rowBytes
			c := rel / chunkBytes
			r0 := c * p.chunkRows
			r1 := min(r0+p.chunkRows, p.rows)
			data, err := f.chunk(ctx, p, r0, r1, &b)
			if err != nil {
				return err
			}
			lo := rel - c*chunkBytes
			hi := min(int64(len(data)), end-start-c*chunkBytes)
			if _, err := w.Write(data[lo:hi]); err != nil {
				return err
			}
			off += hi - lo
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		padEnd := start + padTo(p.info.Bytes, Alignment)
		if off < end && off < padEnd {
			m := min(end, padEnd) - off
			if _, err := w.Write(zeros[:m]); err != nil {
				return err
			}
			off += m
		}
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
