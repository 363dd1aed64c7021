package hub

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hubsync/hubsync/internal/boltcheck"
)

// DefaultJournalBucket is the bbolt bucket OpenBoltJournal uses.
const DefaultJournalBucket = "hub-uploads"

// BoltJournal is a Journal in a bbolt database. Layout: bucket → one sub-bucket per record key holding "rec"
// (the JSON UploadRecord) and a "parts" sub-bucket (4-byte big-endian part number → ETag). Every write is its own
// bbolt transaction, fsynced when it returns.
type BoltJournal struct {
	db     *bbolt.DB
	bucket []byte
	owned  bool
}

var _ Journal = (*BoltJournal)(nil)

// Keys inside a record's bucket.
const (
	recKey   = "rec"
	partsKey = "parts"
)

// OpenBoltJournal opens (creating it, mode 0600 in a 0700 directory) a journal database of its own at path.
// Close it when done.
func OpenBoltJournal(path string) (*BoltJournal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("upload journal: %w", err)
	}
	db, err := boltcheck.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second}) // a damaged file is an error, never a panic
	if err != nil {
		return nil, fmt.Errorf("upload journal %s: %w", path, err)
	}
	j, err := NewBoltJournal(db, DefaultJournalBucket)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	j.owned = true
	return j, nil
}

// NewBoltJournal uses bucket of an already open database (the daemon shares its own DB file). Close does not
// close db.
func NewBoltJournal(db *bbolt.DB, bucket string) (*BoltJournal, error) {
	if bucket == "" {
		return nil, errors.New("upload journal: empty bucket name")
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(bucket))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("upload journal: creating bucket %q: %w", bucket, err)
	}
	return &BoltJournal{db: db, bucket: []byte(bucket)}, nil
}

// Close closes the database when OpenBoltJournal opened it.
func (j *BoltJournal) Close() error {
	if j.owned {
		return j.db.Close()
	}
	return nil
}

// Get implements Journal.
func (j *BoltJournal) Get(ctx context.Context, key string) (*UploadRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rec *UploadRecord
	err := j.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(j.bucket)
		if b == nil {
			return fmt.Errorf("bucket %q missing", j.bucket)
		}
		rb := b.Bucket([]byte(key))
		if rb == nil {
			return nil
		}
		raw := rb.Get([]byte(recKey))
		if raw == nil {
			return nil
		}
		var r UploadRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("record %q: %w", key, err)
		}
		r.ETags = map[int]string{}
		if pb := rb.Bucket([]byte(partsKey)); pb != nil {
			err := pb.ForEach(func(k, v []byte) error {
				if len(k) != 4 {
					return fmt.Errorf("record %q: bad part key", key)
				}
				r.ETags[int(binary.BigEndian.Uint32(k))] = string(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		rec = &r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("upload journal: %w", err)
	}
	return rec, nil
}

// Put implements Journal.
func (j *BoltJournal) Put(ctx context.Context, rec *UploadRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec == nil || rec.Key == "" {
		return errors.New("upload journal: record without key")
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("upload journal: %w", err)
	}
	err = j.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(j.bucket)
		if b == nil {
			return fmt.Errorf("bucket %q missing", j.bucket)
		}
		if b.Bucket([]byte(rec.Key)) != nil {
			if err := b.DeleteBucket([]byte(rec.Key)); err != nil {
				return err
			}
		}
		rb, err := b.CreateBucket([]byte(rec.Key))
		if err != nil {
			return err
		}
		if _, err := rb.CreateBucket([]byte(partsKey)); err != nil {
			return err
		}
		return rb.Put([]byte(recKey), raw)
	})
	if err != nil {
		return fmt.Errorf("upload journal: storing %s: %w", rec.OID, err)
	}
	return nil
}

// PutPart implements Journal.
func (j *BoltJournal) PutPart(ctx context.Context, key string, n int, etag string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n < 1 || n > 1<<31 {
		return fmt.Errorf("upload journal: bad part number %d", n)
	}
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(n))
	// Batch coalesces the ETags of parts finishing together into one fsynced transaction, so the journal keeps
	// up with many parallel parts; the function is idempotent, as Batch requires.
	err := j.db.Batch(func(tx *bbolt.Tx) error {
		b := tx.Bucket(j.bucket)
		if b == nil {
			return fmt.Errorf("bucket %q missing", j.bucket)
		}
		rb := b.Bucket([]byte(key))
		if rb == nil {
			return fmt.Errorf("no record %q", key)
		}
		pb, err := rb.CreateBucketIfNotExists([]byte(partsKey))
		if err != nil {
			return err
		}
		return pb.Put(k[:], []byte(etag))
	})
	if err != nil {
		return fmt.Errorf("upload journal: part %d: %w", n, err)
	}
	return nil
}

// Delete implements Journal.
func (j *BoltJournal) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := j.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(j.bucket)
		if b == nil {
			return nil
		}
		if b.Bucket([]byte(key)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("upload journal: deleting: %w", err)
	}
	return nil
}

// Keys lists the recorded uploads (for status displays and tests).
func (j *BoltJournal) Keys(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var keys []string
	err := j.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(j.bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				keys = append(keys, string(k))
			}
			return nil
		})
	})
	return keys, err
}
