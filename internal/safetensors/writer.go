package safetensors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/tensor"
)

// SampleSize is how many leading bytes of a file the Hub's preupload call wants.
const SampleSize = 512

// Entry is a tensor to be written: its name, dtype and shape.
type Entry struct {
	Name  string
	DType tensor.DType
	Shape []int64
}

// Layout is a fully planned file: the encoded header and every tensor's place.
type Layout struct {
	// Header is the 8-byte length prefix followed by the padded JSON header.
	Header []byte
	// Tensors are in file order, with offsets relative to the data buffer.
	Tensors []TensorInfo
	// Size is the total file size.
	Size int64
}

// DataSize is the size of the data buffer (the file minus its header).
func (l *Layout) DataSize() int64 { return l.Size - int64(len(l.Header)) }

// Plan lays out a file the way the reference writer does (model-formats.md §1.4): tensors sorted by dtype
// descending then name, packed contiguously from offset 0, a compact JSON header with __metadata__ first, padded
// with spaces to a multiple of 8 bytes.
func Plan(entries []Entry, metadata map[string]string) (*Layout, error) {
	ts := make([]TensorInfo, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if e.Name == "" || e.Name == MetadataKey {
			return nil, fmt.Errorf("invalid tensor name %q", e.Name)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("duplicate tensor name %q", e.Name)
		}
		seen[e.Name] = true
		if e.DType.Bits() == 0 {
			return nil, fmt.Errorf("tensor %q: invalid dtype", e.Name)
		}
		numel, ok := tensor.NumElements(e.Shape)
		if !ok || numel*int64(e.DType.Bits())%8 != 0 {
			return nil, fmt.Errorf("tensor %q: shape %v is invalid for %s", e.Name, e.Shape, e.DType)
		}
		ts[i] = TensorInfo{Name: e.Name, DType: e.DType, Shape: append([]int64(nil), e.Shape...),
			End: numel * int64(e.DType.Bits()) / 8}
	}
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].DType != ts[j].DType {
			return ts[i].DType > ts[j].DType
		}
		return ts[i].Name < ts[j].Name
	})
	var off int64
	for i := range ts {
		size := ts[i].End
		ts[i].Begin, ts[i].End = off, off+size
		off += size
	}
	hdr, err := encodeHeader(ts, metadata)
	if err != nil {
		return nil, err
	}
	return &Layout{Header: hdr, Tensors: ts, Size: int64(len(hdr)) + off}, nil
}

// encodeHeader builds the length prefix and compact JSON, with keys in offset order and __metadata__ first.
func encodeHeader(ts []TensorInfo, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.Write(make([]byte, 8))
	b.WriteByte('{')
	first := true
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
		first = false
	}
	for _, t := range ts {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(t.DType.String())
		b.WriteString(`","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(t.Begin, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(t.End, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for (b.Len()-8)%8 != 0 {
		b.WriteByte(' ')
	}
	out := b.Bytes()
	n := len(out) - 8
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors header would be %d bytes, over the %d-byte limit", n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(out, uint64(n))
	return out, nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// Digest is what the Hub upload needs to know about a file, computed while it is written.
type Digest struct {
	Size   int64
	SHA256 [32]byte
	Sample []byte // the first min(Size, 512) bytes
}

// SHA256Hex is the lower-case hex SHA-256, the LFS oid.
func (d Digest) SHA256Hex() string { return hex.EncodeToString(d.SHA256[:]) }

// FillFunc writes exactly t.Size() bytes of tensor t to w.
type FillFunc func(ctx context.Context, t TensorInfo, w io.Writer) error

// Write writes a planned file to w: the header, then each tensor's bytes as fill produces them, in file order.
// It checks that fill wrote exactly the planned number of bytes for each tensor and returns the file's digest.
func Write(ctx context.Context, w io.Writer, l *Layout, fill FillFunc) (Digest, error) {
	dw := NewDigestWriter(w)
	if _, err := dw.Write(l.Header); err != nil {
		dw.Close()
		return Digest{}, err
	}
	for _, t := range l.Tensors {
		if err := ctx.Err(); err != nil {
			dw.Close()
			return Digest{}, err
		}
		cw := &countingWriter{w: dw}
		if err := fill(ctx, t, cw); err != nil {
			dw.Close()
			return Digest{}, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if cw.n != t.Size() {
			dw.Close()
			return Digest{}, fmt.Errorf("tensor %q: wrote %d bytes, planned %d", t.Name, cw.n, t.Size())
		}
	}
	return dw.Close()
}

// WriteFile writes a planned file at path atomically: into a temporary file in the same directory, synced, then
// renamed into place. On error nothing is left at path.
func WriteFile(ctx context.Context, path string, l *Layout, fill FillFunc) (Digest, error) {
	f, err := fsutil.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Digest{}, err
	}
	tmp := f.Name()
	d, err := Write(ctx, f, l, fill)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return Digest{}, fmt.Errorf("write %s: %w", path, err)
	}
	return d, nil
}

// Data is a tensor with its bytes, for writing small files in one call.
type Data struct {
	Entry
	Bytes []byte
}

// WriteTensors writes small in-memory tensors to path (with {"format":"pt"} metadata unless metadata is given).
func WriteTensors(path string, tensors []Data, metadata map[string]string) (Digest, error) {
	if metadata == nil {
		metadata = map[string]string{"format": "pt"}
	}
	entries := make([]Entry, len(tensors))
	byName := make(map[string][]byte, len(tensors))
	for i, t := range tensors {
		entries[i] = t.Entry
		byName[t.Name] = t.Bytes
	}
	l, err := Plan(entries, metadata)
	if err != nil {
		return Digest{}, fmt.Errorf("%s: %w", path, err)
	}
	return WriteFile(context.Background(), path, l, func(_ context.Context, t TensorInfo, w io.Writer) error {
		_, err := w.Write(byName[t.Name])
		return err
	})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// digestChunk is the unit handed to the background writer and hasher.
const digestChunk = 4 << 20

// writebackEvery is how many bytes a DigestWriter over a file writes before it asks the kernel to start writing
// them to disk (so a file does not reach its fsync with gigabytes of dirty pages).
const writebackEvery = 64 << 20

// DigestWriter forwards bytes to an underlying writer while computing size, SHA-256 and the leading sample.
// Hashing and writing run in two background goroutines over a small ring of 4 MiB buffers, so they overlap with
// each other and with the producer. Close flushes and returns the digest and the first write error.
type DigestWriter struct {
	w      io.Writer
	size   int64
	sample []byte
	cur    []byte
	free   chan []byte
	toHash chan []byte
	toFile chan []byte
	hashed chan []byte
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	h      hash.Hash
	closed bool
}

// NewDigestWriter starts a DigestWriter over w.
func NewDigestWriter(w io.Writer) *DigestWriter {
	const ring = 4
	d := &DigestWriter{
		w:      w,
		h:      sha256.New(),
		free:   make(chan []byte, ring),
		toHash: make(chan []byte, ring),
		toFile: make(chan []byte, ring),
		hashed: make(chan []byte, ring),
	}
	for range ring {
		d.free <- make([]byte, 0, digestChunk)
	}
	d.cur = <-d.free
	d.wg.Add(2)
	go func() { // hasher: hashes in order, then hands the buffer to the file writer's release path
		defer d.wg.Done()
		for b := range d.toHash {
			d.h.Write(b)
			d.hashed <- b
		}
		close(d.hashed)
	}()
	go func() { // file writer: writes in order; a buffer is free again once both hashed and written
		defer d.wg.Done()
		f, isFile := w.(*os.File)
		var off, flushed int64
		for b := range d.toFile {
			if d.firstErr() == nil {
				if _, err := d.w.Write(b); err != nil {
					d.setErr(err)
				}
				off += int64(len(b))
				if isFile && off-flushed >= writebackEvery {
					startWriteback(f, flushed, off-flushed)
					flushed = off
				}
			}
			hb := <-d.hashed
			d.free <- hb[:0]
		}
	}()
	return d
}

func (d *DigestWriter) firstErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *DigestWriter) setErr(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

// Write buffers p; it reports an earlier background write error.
func (d *DigestWriter) Write(p []byte) (int, error) {
	if err := d.firstErr(); err != nil {
		return 0, err
	}
	n := len(p)
	if len(d.sample) < SampleSize {
		k := min(SampleSize-len(d.sample), len(p))
		d.sample = append(d.sample, p[:k]...)
	}
	d.size += int64(n)
	for len(p) > 0 {
		k := copy(d.cur[len(d.cur):cap(d.cur)], p)
		d.cur = d.cur[:len(d.cur)+k]
		p = p[k:]
		if len(d.cur) == cap(d.cur) {
			d.flush()
		}
	}
	return n, nil
}

func (d *DigestWriter) flush() {
	b := d.cur
	d.toHash <- b
	d.toFile <- b
	d.cur = <-d.free
}

// Close flushes the remaining bytes, stops the background goroutines and returns the digest.
func (d *DigestWriter) Close() (Digest, error) {
	if d.closed {
		return Digest{}, fmt.Errorf("digest writer closed twice")
	}
	d.closed = true
	if len(d.cur) > 0 {
		d.flush()
	}
	close(d.toHash)
	close(d.toFile)
	d.wg.Wait()
	if err := d.firstErr(); err != nil {
		return Digest{}, err
	}
	var out Digest
	out.Size = d.size
	copy(out.SHA256[:], d.h.Sum(nil))
	out.Sample = d.sample
	return out, nil
}
