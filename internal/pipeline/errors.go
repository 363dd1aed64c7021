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

// IsPermanent reports whether err cannot be fixed by trying again because the checkpoint itself is bad: bad
// merge input (corrupt or mismatched files, an unsupported adapter), the checkpoint gone or changed before it was
// pinned, permission denied on local files, a read-only output file system, or a request the Hub rejects as
// invalid (hub.ErrRejected: 400, 405, 410, 413, 422 from the Hub API, never from a storage host).
//
// Everything else is fixable and retried with capped backoff, indefinitely (DESIGN.md, Daemon): the Hub
// refusing the token (401/403: a new token fixes it), a base or repo not found yet (404), network errors, DNS,
// 5xx and 429 after the client's own retries, 409/412 races, a full disk (ENOSPC, EDQUOT, too little space for
// the merge: freeing space fixes it), lock contention, I/O hiccups.
//
// The hub client records which server gave each answer (hub.HTTPError.Origin), so endpoint is no longer
// consulted; it stays for the callers.
func IsPermanent(err error, endpoint string) bool {
	_ = endpoint
	if err == nil {
		return false
	}
	var pe *PermanentError
	if errors.As(err, &pe) {
		return true
	}
	if IsFixable(err) {
		return false
	}
	switch {
	case merge.IsBadInput(err):
		return true
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return true
	case errors.Is(err, watcher.ErrVanished), errors.Is(err, watcher.ErrChanged):
		return true
	}
	// The Hub API refusing the request as invalid; a storage host's refusal never is (hub.ErrRejected).
	return errors.Is(err, hub.ErrRejected)
}

// IsFixable reports errors that the user (or time) fixes outside hubsync and that a job must wait out rather
// than fail on, whatever wraps them: a full disk (ENOSPC, EDQUOT, merge.DiskSpaceError) and the Hub refusing
// the token (401, 403).
func IsFixable(err error) bool {
	var dse *merge.DiskSpaceError
	return errors.As(err, &dse) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, hub.ErrUnauthorized) || errors.Is(err, hub.ErrForbidden)
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
