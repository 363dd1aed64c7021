package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/merge"
)

// DiskFullError says which file system is full: the one holding Path (its mount point Mount when known, with
// Free bytes available to us, -1 when unknown). It wraps the cause, so it stays fixable (IsFixable).
type DiskFullError struct {
	Path  string
	Mount string
	Free  int64
	Err   error
}

// Error names the full file system.
func (e *DiskFullError) Error() string {
	where := e.Path
	if e.Mount != "" {
		where = fmt.Sprintf("%s (mounted at %s", e.Path, e.Mount)
		if e.Free >= 0 {
			where += ", " + journal.HumanBytes(e.Free) + " free"
		}
		where += ")"
	}
	return fmt.Sprintf("the file system of %s is full; free space there and the job tries again: %v", where, e.Err)
}

// Unwrap returns the cause.
func (e *DiskFullError) Unwrap() error { return e.Err }

// isDiskFull reports a full disk or quota.
func isDiskFull(err error) bool {
	var dse *merge.DiskSpaceError
	return errors.As(err, &dse) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFull names the full file system of a disk-full error: the path the failing operation wrote (else
// fallback, the job's staging directory). Other errors are returned as they are.
func diskFull(err error, fallback string) error {
	var already *DiskFullError
	if err == nil || !isDiskFull(err) || errors.As(err, &already) {
		return err
	}
	p := fallback
	var pe *fs.PathError
	var le *os.LinkError
	var dse *merge.DiskSpaceError
	switch {
	case errors.As(err, &dse) && dse.Dir != "":
		p = dse.Dir
	case errors.As(err, &pe) && pe.Path != "":
		p = pe.Path
	case errors.As(err, &le) && le.New != "":
		p = le.New
	}
	if abs, aerr := filepath.Abs(p); aerr == nil {
		p = abs
	}
	mount, free := mountOf(p)
	return &DiskFullError{Path: p, Mount: mount, Free: free, Err: err}
}
