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

// progressSink is the progress meter of one operation: it owns the per-file counters and delivers their values
// to the user's callback, never concurrently with itself.
//
// Counting never waits on a lock: a read adds to its file's atomic counter and marks it dirty; whichever goroutine
// then wins TryLock delivers every dirty file's latest value (a goroutine that loses leaves its update to the
// winner, who looks for new marks again after unlocking). Events may therefore be coalesced — a fast stream of
// reads yields fewer events than reads — but the last value of every file is always delivered.
type progressSink struct {
	fn func(ProgressEvent)

	mu    sync.Mutex // held while delivering; taken with TryLock by counters
	files []*fileProgress
	dirty atomic.Bool // some file has an undelivered value

	regMu sync.Mutex // guards files for registration (delivery copies the slice under it)
}

func newProgressSink(fn func(ProgressEvent)) *progressSink { return &progressSink{fn: fn} }

// emit delivers a one-off event (waiting for a delivery in progress).
func (s *progressSink) emit(ev ProgressEvent) {
	if s == nil || s.fn == nil {
		return
	}
	s.mu.Lock()
	s.deliverLocked()
	s.fn(ev)
	s.mu.Unlock()
	s.drain()
}

// drain delivers the dirty files' values unless another goroutine is delivering; see progressSink.
func (s *progressSink) drain() {
	for s.dirty.Load() {
		if !s.mu.TryLock() {
			return // the holder re-checks dirty after unlocking
		}
		s.deliverLocked()
		s.mu.Unlock()
	}
}

// deliverLocked sends each dirty file's current value; s.mu is held.
func (s *progressSink) deliverLocked() {
	s.dirty.Store(false)
	s.regMu.Lock()
	files := s.files
	s.regMu.Unlock()
	for _, p := range files {
		if p.dirty.Swap(false) {
			s.fn(ProgressEvent{Phase: p.phase, File: p.file, Done: p.done.Load(), Total: p.total})
		}
	}
}

// fileProgress tracks one file's bytes across concurrent parts and retried attempts.
type fileProgress struct {
	sink  *progressSink
	phase Phase
	file  string
	total int64
	done  atomic.Int64
	dirty atomic.Bool
}

func (s *progressSink) file(phase Phase, file string, total int64) *fileProgress {
	p := &fileProgress{sink: s, phase: phase, file: file, total: total}
	if s != nil && s.fn != nil {
		s.regMu.Lock()
		s.files = append(s.files, p)
		s.regMu.Unlock()
	}
	return p
}

func (p *fileProgress) add(n int64) {
	if p == nil || n == 0 {
		return
	}
	p.done.Add(n)
	s := p.sink
	if s == nil || s.fn == nil {
		return
	}
	p.dirty.Store(true)
	s.dirty.Store(true)
	s.drain()
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
