// Package journal is the daemon's durable job journal: one record per checkpoint job, in a bbolt database, with
// the job's stage (detected → pinned → merged → uploading → committed, or failed / skipped), timestamps, attempts,
// the last transient error, the staging directory, the publishing target, the merged output files with their
// digests, upload progress and the resulting commit and tags.
//
// Every write is one bbolt transaction, fsynced before it returns, so after a crash the journal shows the last
// stage transition that returned. Records are versioned JSON (field "v") so the schema can grow; a record from a
// newer hubsync is refused rather than silently truncated on rewrite.
//
// bbolt lets one process open a database at a time (even read-only opens wait for the writer's lock), so while
// the daemon runs, `hubsync status` cannot open the journal. The journal therefore also writes a status snapshot
// (all jobs as JSON) next to the database after every change; ReadSnapshot reads it.
package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hubsync/hubsync/internal/boltcheck"
)

// Version is the record version this package writes.
const Version = 1

// Bucket is the bbolt bucket holding the jobs. Other users of a shared database (the Hub client's part journal)
// use their own buckets.
const Bucket = "jobs"

// Stage is where a job is in the pipeline.
type Stage string

// The stages. Committed, Failed and Skipped are final.
const (
	// Detected: the checkpoint was found complete; nothing done yet.
	Detected Stage = "detected"
	// Pinned: its files are hard-linked (or copied) into StagingDir.
	Pinned Stage = "pinned"
	// Merged: the merged model (or the adapter to publish) is written; Outputs lists its files.
	Merged Stage = "merged"
	// Uploading: objects are being uploaded (Progress).
	Uploading Stage = "uploading"
	// Committed: the Hub commit exists (Commit, Tags).
	Committed Stage = "committed"
	// Failed: a permanent failure (Reason); not retried.
	Failed Stage = "failed"
	// Skipped: deliberately not published (Reason), e.g. superseded by a newer checkpoint under the latest
	// policy.
	Skipped Stage = "skipped"
)

// AllStages lists every stage in pipeline order, final stages last.
func AllStages() []Stage {
	return []Stage{Detected, Pinned, Merged, Uploading, Committed, Failed, Skipped}
}

// Valid reports whether s is one of the stages.
func (s Stage) Valid() bool {
	switch s {
	case Detected, Pinned, Merged, Uploading, Committed, Failed, Skipped:
		return true
	}
	return false
}

// Final reports whether a job in stage s is finished (committed, failed or skipped).
func (s Stage) Final() bool { return s == Committed || s == Failed || s == Skipped }

// Job is one checkpoint job.
type Job struct {
	// V is the record version (set by Put/Update).
	V int `json:"v"`
	// WatchDir and Step identify the job: the watched directory (absolute) and N of its checkpoint-N.
	WatchDir string `json:"watch_dir"`
	Step     int64  `json:"step"`
	// Dir is the checkpoint directory.
	Dir string `json:"dir"`

	Stage Stage `json:"stage"`
	// Reason explains a failed or skipped job.
	Reason string `json:"reason,omitempty"`
	// LastError is the latest transient error (the job will be retried).
	LastError string `json:"last_error,omitempty"`
	// Attempts counts the attempts made at the current work (incremented by the pipeline).
	Attempts int `json:"attempts"`
	// Activity is what a running daemon is doing with the job within its stage ("merging", "completing
	// upload"); the stage says what is durably done. Status shows it as the job's state while a daemon runs.
	Activity string `json:"activity,omitempty"`
	// NextAttempt is when a job waiting after a fixable error (LastError) tries again (zero: not waiting).
	NextAttempt time.Time `json:"next_attempt,omitzero"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// StageAt records when the job entered each stage.
	StageAt map[Stage]time.Time `json:"stage_at,omitempty"`

	// StagingDir is where the checkpoint is pinned and the merged output written.
	StagingDir string `json:"staging_dir,omitempty"`
	Target     Target `json:"target"`
	// Outputs are the files to upload, with their digests.
	Outputs  []Output `json:"outputs,omitempty"`
	Progress Progress `json:"progress"`
	Commit   *Commit  `json:"commit,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	// PrunedTags are tags (or branches) of this job that pruning deleted from the Hub (no longer live).
	PrunedTags []string `json:"pruned_tags,omitempty"`
}

// Target is where a job publishes.
type Target struct {
	Repo        string `json:"repo,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Layout      string `json:"layout,omitempty"`  // tags, branches or subfolders
	Publish     string `json:"publish,omitempty"` // adapter, merged or both
	PathInRepo  string `json:"path_in_repo,omitempty"`
	AdapterRepo string `json:"adapter_repo,omitempty"`
}

// Output is one file to upload.
type Output struct {
	Path   string `json:"path"` // path in the repo
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // lower-case hex
	// Sample is the file's first bytes (up to 512) for the Hub's preupload call (base64 in JSON).
	Sample []byte `json:"sample,omitempty"`
	// Produced marks a merged shard that is not on disk (staging none); Blocks are then the SHA-256 of each of
	// its merge.VerifyBlockSize blocks, concatenated, that the bytes produced for the upload are checked against.
	Produced bool   `json:"produced,omitempty"`
	Blocks   []byte `json:"blocks,omitempty"`
}

// Progress is the upload progress of a job.
type Progress struct {
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	FilesDone  int   `json:"files_done"`
	FilesTotal int   `json:"files_total"`
}

// Commit is the Hub commit a job produced.
type Commit struct {
	OID string    `json:"oid"`
	URL string    `json:"url,omitempty"`
	At  time.Time `json:"at"`
}

// ID is the job's identifier: JobID(WatchDir, Step).
func (j *Job) ID() string { return JobID(j.WatchDir, j.Step) }

// SetStage moves the job to stage s at time now, recording when, and clears LastError.
func (j *Job) SetStage(s Stage, now time.Time) {
	j.Stage = s
	if j.StageAt == nil {
		j.StageAt = map[Stage]time.Time{}
	}
	j.StageAt[s] = now.UTC()
	j.LastError = ""
	j.NextAttempt = time.Time{}
	j.Activity = ""
}

// Fail marks the job permanently failed.
func (j *Job) Fail(reason string, now time.Time) {
	j.SetStage(Failed, now)
	j.Reason = reason
}

// Skip marks the job skipped, e.g. Skip(fmt.Sprintf("superseded by step %d", newer), now).
func (j *Job) Skip(reason string, now time.Time) {
	j.SetStage(Skipped, now)
	j.Reason = reason
}

// JobID returns the identifier of the job for step of watchDir: "<watchDir>@<step>".
func JobID(watchDir string, step int64) string { return watchDir + "@" + strconv.FormatInt(step, 10) }

// ParseJobID splits an identifier made by JobID.
func ParseJobID(id string) (watchDir string, step int64, err error) {
	i := strings.LastIndexByte(id, '@')
	if i <= 0 {
		return "", 0, fmt.Errorf("invalid job id %q: want DIR@STEP", id)
	}
	step, err = strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || step < 0 {
		return "", 0, fmt.Errorf("invalid job id %q: bad step", id)
	}
	return id[:i], step, nil
}

// key orders records by watch dir, then step: the dir's bytes, a NUL (sorting below every path byte, so a dir
// sorts before any longer dir it prefixes), then the step big-endian.
func key(watchDir string, step int64) []byte {
	k := make([]byte, len(watchDir)+9)
	copy(k, watchDir)
	binary.BigEndian.PutUint64(k[len(watchDir)+1:], uint64(step))
	return k
}

// ErrNotFound is returned for a job that is not in the journal.
var ErrNotFound = errors.New("job not found")

// ErrFinal is returned by Update when it would move a finished (committed, failed, skipped) job to another
// stage. Use Put to overwrite a record deliberately (for example to retry a failed job).
var ErrFinal = errors.New("job is finished")

// ErrInUse is matched when another process (a running daemon) has the journal open.
var ErrInUse = errors.New("journal in use")

// Journal is the job journal. It is safe for concurrent use.
type Journal struct {
	db    *bbolt.DB
	owned bool
	now   func() time.Time

	snapMu   sync.Mutex // serializes snapshot writes; guards snapshot, snapErr, written and the cache
	snapshot string
	snapErr  error
	// The snapshot is built from cache (compact copies of every record, loaded once), not by reading the
	// database again; gen counts changes and written the change the last snapshot included, so concurrent
	// changes are written once (coalesced), never lost.
	cache   map[string]*Job
	gen     atomic.Uint64
	written uint64
	// settling is the daemon's list of checkpoints in their settle period (SetSettling).
	settling []Settling
}

// SnapshotSuffix is appended to the database path to name the status snapshot Open maintains.
const SnapshotSuffix = ".status.json"

// Open opens (creating it and its directories, 0700/0600) the journal database at path, and maintains the
// status snapshot path+SnapshotSuffix. It fails after a second when another process has the database open
// (another daemon using the same state directory).
func Open(path string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	db, err := boltcheck.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, boltcheck.ErrCorrupt) {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("journal %s is in use by another process (a running hubsync watch?): %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j, err := New(db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	j.owned = true
	j.snapshot = path + SnapshotSuffix
	j.writeSnapshot()
	return j, nil
}

// OpenReadOnly opens an existing journal for reading, waiting at most timeout for a writer to let go.
func OpenReadOnly(path string, timeout time.Duration) (*Journal, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	db, err := boltcheck.Open(path, 0o600, &bbolt.Options{Timeout: timeout, ReadOnly: true})
	if err != nil {
		if errors.Is(err, boltcheck.ErrCorrupt) {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("journal %s is in use by another process (a running hubsync watch?): %w: %w", path, ErrInUse, err)
		}
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return &Journal{db: db, owned: true, now: time.Now}, nil
}

// New uses an already open database (shared with the Hub client's part journal), creating the jobs bucket.
// Close does not close db. No snapshot is written unless SetSnapshot is called.
func New(db *bbolt.DB) (*Journal, error) {
	if !db.IsReadOnly() {
		err := db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte(Bucket))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	return &Journal{db: db, now: time.Now}, nil
}

// SetSnapshot makes the journal rewrite the status snapshot at path now and after every change ("" stops it).
// It returns the error of the first write.
func (j *Journal) SetSnapshot(path string) error {
	j.snapMu.Lock()
	j.snapshot = path
	j.gen.Add(1) // a new path is written even when nothing changed
	j.snapMu.Unlock()
	j.writeSnapshot()
	return j.SnapshotError()
}

// DB returns the underlying database, for other buckets in the same file.
func (j *Journal) DB() *bbolt.DB { return j.db }

// Close closes the database if Open or OpenReadOnly opened it.
func (j *Journal) Close() error {
	if j.owned {
		return j.db.Close()
	}
	return nil
}

// Put stores job (creating or replacing its record). It sets V, Updated, and Created when zero.
func (j *Journal) Put(ctx context.Context, job *Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validate(job); err != nil {
		return err
	}
	err := j.db.Update(func(tx *bbolt.Tx) error {
		return put(tx, job, j.now())
	})
	if err != nil {
		return fmt.Errorf("journal: put %s: %w", job.ID(), err)
	}
	j.changed(job.ID(), job)
	return nil
}

// Get returns the job with this id, or an error wrapping ErrNotFound.
func (j *Journal) Get(ctx context.Context, id string) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, step, err := ParseJobID(id)
	if err != nil {
		return nil, err
	}
	var job *Job
	err = j.db.View(func(tx *bbolt.Tx) error {
		job, err = get(tx, dir, step)
		return err
	})
	return job, err
}

// Update applies fn to the job with this id in one transaction: the change is stored (durably) only when fn
// returns nil. A finished job cannot change stage (ErrFinal). It returns the stored job.
func (j *Journal) Update(ctx context.Context, id string, fn func(*Job) error) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, step, err := ParseJobID(id)
	if err != nil {
		return nil, err
	}
	var job *Job
	err = j.db.Update(func(tx *bbolt.Tx) error {
		cur, err := get(tx, dir, step)
		if err != nil {
			return err
		}
		was := cur.Stage
		if err := fn(cur); err != nil {
			return err
		}
		if cur.WatchDir != dir || cur.Step != step {
			return fmt.Errorf("journal: update of %s changed the job's identity", id)
		}
		if was.Final() && cur.Stage != was {
			return fmt.Errorf("journal: %s is %s: %w", id, was, ErrFinal)
		}
		if err := validate(cur); err != nil {
			return err
		}
		job = cur
		return put(tx, cur, j.now())
	})
	if err != nil {
		return nil, err
	}
	j.changed(id, job)
	return job, nil
}

// Delete removes a job (no error when it does not exist).
func (j *Journal) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, step, err := ParseJobID(id)
	if err != nil {
		return err
	}
	err = j.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(Bucket)).Delete(key(dir, step))
	})
	if err != nil {
		return fmt.Errorf("journal: delete %s: %w", id, err)
	}
	j.changed(id, nil)
	return nil
}

// List returns every job, ordered by watch dir, then step.
func (j *Journal) List(ctx context.Context) ([]*Job, error) {
	return j.list(ctx, func(*Job) bool { return true })
}

// Unfinished returns the jobs to resume on start (not committed, failed or skipped), in List order.
func (j *Journal) Unfinished(ctx context.Context) ([]*Job, error) {
	return j.list(ctx, func(job *Job) bool { return !job.Stage.Final() })
}

func (j *Journal) list(ctx context.Context, keep func(*Job) bool) ([]*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*Job
	err := j.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(Bucket))
		if b == nil { // a read-only open of a journal never written
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			job, err := decode(k, v)
			if err != nil {
				return err
			}
			if keep(job) {
				out = append(out, job)
			}
			return nil
		})
	})
	return out, err
}

func validate(job *Job) error {
	switch {
	case job.WatchDir == "":
		return errors.New("journal: job without a watch dir")
	case strings.IndexByte(job.WatchDir, 0) >= 0:
		return fmt.Errorf("journal: watch dir %q contains a NUL byte", job.WatchDir)
	case job.Step < 0:
		return fmt.Errorf("journal: job %s: negative step", job.ID())
	case !job.Stage.Valid():
		return fmt.Errorf("journal: job %s: unknown stage %q", job.ID(), job.Stage)
	}
	return nil
}

func put(tx *bbolt.Tx, job *Job, now time.Time) error {
	job.V = Version
	now = now.UTC()
	if job.Created.IsZero() {
		job.Created = now
	}
	job.Updated = now
	if job.StageAt[job.Stage].IsZero() {
		if job.StageAt == nil {
			job.StageAt = map[Stage]time.Time{}
		}
		job.StageAt[job.Stage] = now
	}
	v, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return tx.Bucket([]byte(Bucket)).Put(key(job.WatchDir, job.Step), v)
}

func get(tx *bbolt.Tx, dir string, step int64) (*Job, error) {
	k := key(dir, step)
	b := tx.Bucket([]byte(Bucket))
	if b == nil {
		return nil, fmt.Errorf("journal: %s: %w", JobID(dir, step), ErrNotFound)
	}
	v := b.Get(k)
	if v == nil {
		return nil, fmt.Errorf("journal: %s: %w", JobID(dir, step), ErrNotFound)
	}
	return decode(k, v)
}

func decode(k, v []byte) (*Job, error) {
	var probe struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(v, &probe); err != nil {
		return nil, fmt.Errorf("journal: corrupt record %q: %w", k, err)
	}
	if probe.V > Version {
		return nil, fmt.Errorf("journal: record %q has version %d; this hubsync reads up to %d (upgrade hubsync)", k, probe.V, Version)
	}
	var job Job
	dec := json.NewDecoder(bytes.NewReader(v))
	if err := dec.Decode(&job); err != nil {
		return nil, fmt.Errorf("journal: corrupt record %q: %w", k, err)
	}
	return &job, nil
}

// Requeue puts a failed job back to detected (pinned and merged again from its checkpoint, attempts reset), in
// one transaction. It reports whether the job was failed; any other job is left as it is (so requeueing is
// idempotent).
func (j *Journal) Requeue(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	dir, step, err := ParseJobID(id)
	if err != nil {
		return false, err
	}
	var stored *Job
	err = j.db.Update(func(tx *bbolt.Tx) error {
		cur, err := get(tx, dir, step)
		if err != nil || cur.Stage != Failed {
			return err
		}
		now := j.now()
		fresh := &Job{WatchDir: cur.WatchDir, Step: cur.Step, Dir: cur.Dir, Target: cur.Target, Created: cur.Created}
		fresh.SetStage(Detected, now)
		stored = fresh
		return put(tx, fresh, now)
	})
	if err != nil {
		return false, fmt.Errorf("journal: requeue %s: %w", id, err)
	}
	if stored != nil {
		j.changed(id, stored)
	}
	return stored != nil, nil
}
