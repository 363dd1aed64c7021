package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hubsync/hubsync/internal/boltcheck"
	"github.com/hubsync/hubsync/internal/journal"
)

// Status sources.
const (
	SourceJournal  = "journal"
	SourceSnapshot = "snapshot"
	SourceNone     = "none"
)

// StatusReport is what `hubsync status` shows.
type StatusReport struct {
	// Jobs are every job, ordered by watched directory, then step.
	Jobs []*journal.Job
	// Source says where they were read: the journal database, the running daemon's snapshot, or nowhere (no
	// journal yet: Jobs is empty).
	Source string
	// Path is the file read.
	Path string
	// Written is when the snapshot was written (Source snapshot).
	Written time.Time
	// DaemonRunning: a daemon holds the journal (Source snapshot); without one, unfinished jobs are parked.
	DaemonRunning bool
	// Omitted counts older finished jobs the snapshot does not list; Settling are the checkpoints in their
	// settle period (both Source snapshot).
	Omitted  int
	Settling []journal.Settling
}

// ReadStatus reads the jobs of the journal at path: from the database when no daemon holds it (a read-only open
// waiting at most timeout), else from the status snapshot the running daemon rewrites after every change
// (path + journal.SnapshotSuffix). A journal that does not exist yet is an empty report.
func ReadStatus(ctx context.Context, path string, timeout time.Duration) (*StatusReport, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return &StatusReport{Source: SourceNone, Path: path}, nil
	}
	j, err := journal.OpenReadOnly(path, timeout)
	if err == nil {
		defer j.Close()
		jobs, err := j.List(ctx)
		if err != nil {
			return nil, err
		}
		return &StatusReport{Jobs: jobs, Source: SourceJournal, Path: path}, nil
	}
	if errors.Is(err, boltcheck.ErrCorrupt) {
		return nil, err // a damaged journal is said, not hidden behind an older snapshot
	}
	snap := path + journal.SnapshotSuffix
	r, serr := journal.ReadSnapshot(snap)
	if serr != nil {
		return nil, fmt.Errorf("%w; and the daemon's status snapshot is unreadable: %v", err, serr)
	}
	return &StatusReport{Jobs: r.Jobs, Source: SourceSnapshot, Path: snap, Written: r.Written, DaemonRunning: true,
		Omitted: r.Omitted, Settling: r.Settling}, nil
}
