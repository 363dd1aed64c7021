package hub

import (
	"io"
	"sync"
	"sync/atomic"
)

// Phase is the stage a ProgressEvent reports on.
type Phase string

// The phases.
const (
	PhaseHashing     Phase = "hashing"
	PhaseUploading   Phase = "uploading"
	PhaseCommitting  Phase = "committing"
	PhaseDownloading Phase = "downloading"
)

// ProgressEvent reports bytes done out of total for one file (File is the path in the repo; empty for the
// committing phase). Done may go down when a failed attempt's bytes are rolled back.
type ProgressEvent struct {
	Phase Phase
	File  string
	Done  int64
	Total int64
}

// progressSink serialises calls to the user's callback (it never runs concurrently with itself).
type progressSink struct {
	mu sync.Mutex
	fn func(ProgressEvent)
}

func newProgressSink(fn func(ProgressEvent)) *progressSink { return &progressSink{fn: fn} }

func (s *progressSink) emit(ev ProgressEvent) {
	if s == nil || s.fn == nil {
		return
	}
	s.mu.Lock()
	s.fn(ev)
	s.mu.Unlock()
}

// fileProgress tracks one file's bytes across concurrent parts and retried attempts.
type fileProgress struct {
	sink  *progressSink
	phase Phase
	file  string
	total int64
	done  atomic.Int64
}

func (s *progressSink) file(phase Phase, file string, total int64) *fileProgress {
	return &fileProgress{sink: s, phase: phase, file: file, total: total}
}

func (p *fileProgress) add(n int64) {
	if p == nil || n == 0 {
		return
	}
	d := p.done.Add(n)
	p.sink.emit(ProgressEvent{Phase: p.phase, File: p.file, Done: d, Total: p.total})
}

// attempt returns a body reader for one try that counts into p; a previous try's count (if this body function is
// called again for a retry) is rolled back first.
type attemptCounter struct {
	p    *fileProgress
	last *countingReader
}

func (a *attemptCounter) wrap(r io.Reader) io.Reader {
	if a.last != nil {
		a.p.add(-a.last.n.Load())
	}
	cr := &countingReader{r: r, p: a.p}
	a.last = cr
	return cr
}

// rollback removes the last attempt's bytes (the whole transfer is being redone).
func (a *attemptCounter) rollback() {
	if a.last != nil {
		a.p.add(-a.last.n.Load())
		a.last = nil
	}
}

type countingReader struct {
	r io.Reader
	p *fileProgress
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.n.Add(int64(n))
		c.p.add(int64(n))
	}
	return n, err
}
