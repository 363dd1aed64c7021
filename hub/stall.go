package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultStallTimeout is how long an attempt may go without a byte read or written before it is aborted and
// retried (Options.StallTimeout).
const DefaultStallTimeout = 60 * time.Second

// errStalled is the cancellation cause of an attempt whose transfer made no progress for the stall timeout.
var errStalled = errors.New("no progress")

// StallError reports an attempt aborted because no byte moved for Timeout. It is retried like a network error.
type StallError struct {
	Timeout time.Duration
}

// Error names the timeout.
func (e *StallError) Error() string {
	return fmt.Sprintf("no byte transferred for %s (stalled)", e.Timeout)
}

// watchdog cancels an attempt's context when touch has not been called for timeout. It can be paused while the
// wait is another timeout's business (the server working on a complete request before it answers).
type watchdog struct {
	mu      sync.Mutex
	timer   *time.Timer
	timeout time.Duration
	paused  bool
	done    bool
}

// newWatchdog starts a watchdog that calls cancel(errStalled) after timeout without progress; timeout <= 0
// disables it.
func newWatchdog(timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{timeout: timeout}
	if timeout > 0 {
		w.timer = time.AfterFunc(timeout, func() { cancel(errStalled) })
	}
	return w
}

// touch records progress: the countdown starts again (and resumes if paused).
func (w *watchdog) touch() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.paused = false
	w.timer.Reset(w.timeout)
}

// pause stops the countdown until the next touch.
func (w *watchdog) pause() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused = true
	w.timer.Stop()
}

// stop ends the watchdog for good.
func (w *watchdog) stop() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.timer.Stop()
}

// stallErr translates an error of an attempt whose context may have been cancelled by its watchdog.
func stallErr(actx context.Context, timeout time.Duration, err error) error {
	if err != nil && errors.Is(context.Cause(actx), errStalled) {
		return &StallError{Timeout: timeout}
	}
	return err
}

// watchedReader touches the watchdog on every read that moved bytes; at EOF of a request body it pauses the
// watchdog (the wait for the answer is ResponseHeaderTimeout's).
type watchedReader struct {
	r        io.Reader
	w        *watchdog
	pauseEOF bool
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.touch()
	}
	if err == io.EOF && r.pauseEOF {
		r.w.pause()
	}
	return n, err
}

// watchedBody is a streamed response body: reads touch the watchdog, a stall surfaces as a *StallError, and
// Close ends the attempt (its context and watchdog).
type watchedBody struct {
	rc      io.ReadCloser
	w       *watchdog
	actx    context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.touch()
	}
	if err != nil && err != io.EOF {
		err = stallErr(b.actx, b.timeout, err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	b.cancel(nil)
	return err
}
