package merge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/safetensors"
)

// ErrBadInput matches (errors.Is) every error caused by the inputs themselves: a missing or malformed file, a
// tensor of the wrong shape or dtype, an adapter variant hubsync does not merge, a non-finite value. Such errors
// are permanent: running the same merge again fails the same way. Errors that do not match ErrBadInput are I/O or
// environment trouble (a read failed, the disk is full, the context was cancelled) and may succeed on retry.
var ErrBadInput = errors.New("bad merge input")

// InputError is a bad-input error. It names the file (or directory) at fault and, when there is one, the tensor
// or configuration field.
type InputError struct {
	// File is the path of the file or directory at fault.
	File string
	// Tensor is the tensor or JSON field concerned ("" when the problem is the whole file).
	Tensor string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause, if any.
	Err error
}

// Error renders "FILE: tensor "NAME": MSG: CAUSE".
func (e *InputError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, "%q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		if e.Msg != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *InputError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrBadInput) true.
func (e *InputError) Is(target error) bool { return target == ErrBadInput }

// IsBadInput reports whether err was caused by the inputs (see ErrBadInput).
func IsBadInput(err error) bool {
	return errors.Is(err, ErrBadInput) || errors.Is(err, safetensors.ErrFormat) || errors.Is(err, fsutil.ErrNotRegular)
}

// badf builds an InputError.
func badf(file, tensorName, format string, args ...any) *InputError {
	return &InputError{File: file, Tensor: tensorName, Msg: fmt.Sprintf(format, args...)}
}

// DiskSpaceError reports that the output file system has less free space than the merge will write.
type DiskSpaceError struct {
	// Dir is the directory whose file system was checked.
	Dir string
	// Need is the number of bytes the output needs; Avail the number available to this user.
	Need, Avail int64
}

// Error names both numbers.
func (e *DiskSpaceError) Error() string {
	return fmt.Sprintf("not enough disk space in %s: the merged model needs %d bytes (%s), %d bytes (%s) are available",
		e.Dir, e.Need, humanBytes(e.Need), e.Avail, humanBytes(e.Avail))
}

// humanBytes renders a byte count in decimal units, as the Hub and huggingface_hub do.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
