package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ContentFunc produces bytes [off, off+n) of a file that is not on disk (a merged shard computed on demand). It
// must write exactly n bytes to w, the same bytes every time it is called for the same range; it may be called
// concurrently for different ranges, and again for a range whose earlier attempt failed. An error wrapping
// ErrContentChanged (the bytes differ from those the file's SHA256 was computed from) is not retried: the upload
// and the commit fail with it.
type ContentFunc func(ctx context.Context, off, n int64, w io.Writer) error

// ErrContentChanged marks a ContentFunc error saying the produced bytes are not those that were hashed.
var ErrContentChanged = errors.New("file content changed since it was hashed")

// source is what an upload reads a file's bytes from: the file on disk or its ContentFunc.
type source struct {
	f  *preparedFile
	fh *os.File
}

// openSource opens f for sending; for a file on disk it checks the size it was hashed with.
func openSource(f *preparedFile) (*source, error) {
	if f.Content != nil {
		return &source{f: f}, nil
	}
	fh, err := openChecked(f)
	if err != nil {
		return nil, err
	}
	return &source{f: f, fh: fh}, nil
}

func (s *source) Close() error {
	if s.fh != nil {
		return s.fh.Close()
	}
	return nil
}

// rangeBody returns a body for the bytes [off, off+n), to be opened once per attempt; close it when the request
// is over.
func (s *source) rangeBody(ctx context.Context, off, n int64) *rangeBody {
	return &rangeBody{ctx: ctx, src: s, off: off, n: n}
}

// rangeBody opens a fresh reader for every attempt of one request. For a ContentFunc each reader is a pipe fed
// by a producer goroutine; close ends them all and waits for them. A producer that reported ErrContentChanged
// makes the next attempt fail at once instead of sending again.
type rangeBody struct {
	ctx    context.Context
	src    *source
	off, n int64

	mu      sync.Mutex
	readers []*io.PipeReader
	wg      sync.WaitGroup
	changed error
}

var errAttemptOver = errors.New("upload attempt over")

func (b *rangeBody) open() (io.Reader, int64, error) {
	if b.src.fh != nil {
		return io.NewSectionReader(b.src.fh, b.off, b.n), b.n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		return nil, 0, b.changed
	}
	pr, pw := io.Pipe()
	b.readers = append(b.readers, pr)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		cw := &countWriter{w: pw}
		err := b.src.f.Content(b.ctx, b.off, b.n, cw)
		if err == nil && cw.n != b.n {
			err = fmt.Errorf("%s: content for [%d, %d) has %d bytes", b.src.f.path, b.off, b.off+b.n, cw.n)
		}
		if errors.Is(err, ErrContentChanged) {
			b.mu.Lock()
			if b.changed == nil {
				b.changed = err
			}
			b.mu.Unlock()
		}
		pw.CloseWithError(err)
	}()
	return pr, b.n, nil
}

// err is the content error that must stop the upload, if any.
func (b *rangeBody) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *rangeBody) close() {
	b.mu.Lock()
	for _, r := range b.readers {
		r.CloseWithError(errAttemptOver)
	}
	b.readers = nil
	b.mu.Unlock()
	b.wg.Wait()
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

// readWhole returns the whole content of a small file (inline commits, .gitignore, git blob ids).
func (f *preparedFile) readWhole(ctx context.Context) ([]byte, error) {
	if f.Content == nil {
		b, err := os.ReadFile(f.LocalPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.LocalPath, err)
		}
		if int64(len(b)) != f.size {
			return nil, fmt.Errorf("%s changed: %d bytes now, %d when hashed", f.LocalPath, len(b), f.size)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if err := f.Content(ctx, 0, f.size, &buf); err != nil {
		return nil, fmt.Errorf("producing %s: %w", f.path, err)
	}
	if int64(buf.Len()) != f.size {
		return nil, fmt.Errorf("%s: content has %d bytes, %d when hashed", f.path, buf.Len(), f.size)
	}
	return buf.Bytes(), nil
}

// name is how errors name the file: its local path, else its path in the repo.
func (f *preparedFile) name() string {
	if f.LocalPath != "" {
		return f.LocalPath
	}
	return f.path
}
