package pipeline

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/watcher"
)

// PermanentError marks a failure that running the same job again cannot fix. Wrap with it (or use permanentf) to
// stop a job from being retried.
type PermanentError struct{ Err error }

// Error returns the cause's message.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err cannot be fixed by trying again: bad merge input (corrupt or mismatched files,
// an unsupported adapter), a disk too small for the output, permission denied, the checkpoint gone before it was
// pinned, the Hub refusing the token (401/403 from the Hub API) or not finding the repo, a request the Hub
// rejects as invalid (400, 404, 413, 422). Everything else (network errors, 5xx and 429 after the client's own
// retries, 409/412 races, lock contention, I/O hiccups) is transient and retried with backoff.
func IsPermanent(err error, endpoint string) bool {
	if err == nil {
		return false
	}
	var pe *PermanentError
	var dse *merge.DiskSpaceError
	switch {
	case errors.As(err, &pe), merge.IsBadInput(err), errors.As(err, &dse):
		return true
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT),
		errors.Is(err, syscall.EROFS):
		return true
	case errors.Is(err, watcher.ErrVanished), errors.Is(err, watcher.ErrChanged):
		return true
	}
	var he *hub.HTTPError
	if errors.As(err, &he) {
		fromAPI := endpoint == "" || strings.HasPrefix(he.URL, endpoint)
		switch he.Status {
		case 401, 403:
			// A storage URL answering 403 is an expired or bad signature; the client asks for new URLs.
			return fromAPI
		case 400, 404, 405, 410, 413, 422:
			return fromAPI
		}
	}
	return false
}

// reason renders an error for the journal and status output: one line.
func reason(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "\n", " ")
	const max = 600
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
