// Package boltcheck opens bbolt databases that may be damaged (random bytes, a file cut short) without letting
// bbolt panic or fault: the file is checked before it is used, and bbolt's panics (and faults on the memory map
// of a truncated file) are turned into an error matching ErrCorrupt that names the file.
package boltcheck

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"go.etcd.io/bbolt"
)

// ErrCorrupt is matched by the error Open returns for a damaged database file.
var ErrCorrupt = errors.New("database file is damaged")

// CorruptError reports a damaged database file.
type CorruptError struct {
	Path  string
	Cause string
}

// Error names the file, the damage, and what to do.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s is damaged (%s): move it aside (mv %s %s.damaged) and start again", e.Path, e.Cause,
		e.Path, e.Path)
}

// Is reports ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Open opens the database at path with opts, after checking an existing non-empty file: it is opened read-only
// first and every page checked (bbolt's Tx.Check), with bbolt's panics and memory faults recovered. A damaged
// file is a *CorruptError; the file is left as it is.
func Open(path string, mode os.FileMode, opts *bbolt.Options) (*bbolt.DB, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := Check(path, opts); err != nil {
			return nil, err
		}
	}
	return guardedOpen(path, mode, opts)
}

// Check verifies the database file at path (read-only). It returns nil for a sound file, a *CorruptError for a
// damaged one, and other errors (a lock held too long, permissions) as they are.
func Check(path string, opts *bbolt.Options) error {
	ro := bbolt.Options{ReadOnly: true}
	if opts != nil {
		ro.Timeout = opts.Timeout
	}
	db, err := guardedOpen(path, 0o600, &ro)
	if err != nil {
		return err
	}
	defer db.Close()
	// Every bucket, key and value is read in this goroutine (bbolt's Tx.Check runs in another one, where a panic
	// could not be recovered), so each reachable page is touched under guard.
	return guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			var sum byte
			var walk func(b *bbolt.Bucket, depth int) error
			walk = func(b *bbolt.Bucket, depth int) error {
				if depth > 64 {
					return &CorruptError{Path: path, Cause: "buckets nested too deep"}
				}
				return b.ForEach(func(k, v []byte) error {
					for _, c := range k {
						sum ^= c
					}
					if v == nil {
						nb := b.Bucket(k)
						if nb == nil {
							return &CorruptError{Path: path, Cause: fmt.Sprintf("key %q is neither a value nor a bucket", k)}
						}
						return walk(nb, depth+1)
					}
					for _, c := range v {
						sum ^= c
					}
					return nil
				})
			}
			err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error { return walk(b, 0) })
			_ = sum
			return err
		})
	})
}

func guardedOpen(path string, mode os.FileMode, opts *bbolt.Options) (db *bbolt.DB, err error) {
	err = guard(path, func() error {
		var oerr error
		db, oerr = bbolt.Open(path, mode, opts)
		if oerr != nil && isFormatError(oerr) {
			return &CorruptError{Path: path, Cause: oerr.Error()}
		}
		return oerr
	})
	return db, err
}

// guard runs fn, turning a panic (bbolt's own, or a fault on the memory map) into a *CorruptError.
func guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Path: path, Cause: fmt.Sprint(r)}
		}
	}()
	return fn()
}

func isFormatError(err error) bool {
	return errors.Is(err, bbolt.ErrInvalid) || errors.Is(err, bbolt.ErrVersionMismatch) ||
		errors.Is(err, bbolt.ErrChecksum) || errors.Is(err, bbolt.ErrInvalidMapping)
}
