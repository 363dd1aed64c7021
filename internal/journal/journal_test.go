package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var ctx = context.Background()

func openTemp(t *testing.T) (*Journal, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state", "sub", "journal.db")
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, p
}

func sampleJob(dir string, step int64, stage Stage) *Job {
	return &Job{
		WatchDir: dir, Step: step, Dir: filepath.Join(dir, fmt.Sprintf("checkpoint-%d", step)), Stage: stage,
		StagingDir: filepath.Join(dir, ".hubsync-staging", fmt.Sprint(step)),
		Target:     Target{Repo: "me/llama3-sft", Revision: "main", Layout: "tags", Publish: "merged"},
	}
}

func TestPutGetUpdate(t *testing.T) {
	j, _ := openTemp(t)
	job := sampleJob("/out", 500, Detected)
	if err := j.Put(ctx, job); err != nil {
		t.Fatal(err)
	}
	got, err := j.Get(ctx, JobID("/out", 500))
	if err != nil {
		t.Fatal(err)
	}
	if got.V != Version || got.Created.IsZero() || got.StageAt[Detected].IsZero() || got.Target.Repo != "me/llama3-sft" {
		t.Fatalf("got %+v", got)
	}

	// A full pipeline of transitions.
	outputs := []Output{
		{Path: "model-00001-of-00002.safetensors", Size: 4_990_000_000, SHA256: strings.Repeat("ab", 32), Sample: []byte{1, 2, 3, 0, 255}},
		{Path: "config.json", Size: 700, SHA256: strings.Repeat("cd", 32)},
	}
	steps := []func(*Job) error{
		func(j *Job) error { j.SetStage(Pinned, time.Now()); return nil },
		func(j *Job) error { j.SetStage(Merged, time.Now()); j.Outputs = outputs; return nil },
		func(j *Job) error {
			j.SetStage(Uploading, time.Now())
			j.Progress = Progress{BytesDone: 1 << 30, BytesTotal: 4_990_000_700, FilesTotal: 2}
			return nil
		},
		func(j *Job) error { j.Attempts++; j.LastError = "connection reset"; return nil },
		func(j *Job) error {
			j.SetStage(Committed, time.Now())
			j.Commit = &Commit{OID: strings.Repeat("f", 40), URL: "https://huggingface.co/me/llama3-sft/commit/fff", At: time.Now().UTC()}
			j.Tags = []string{"step-500"}
			return nil
		},
	}
	for i, fn := range steps {
		if _, err := j.Update(ctx, job.ID(), fn); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	got, err = j.Get(ctx, job.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Stage != Committed || got.Attempts != 1 || got.LastError != "" || len(got.StageAt) != 5 ||
		!reflect.DeepEqual(got.Outputs, outputs) || got.Commit == nil || got.Tags[0] != "step-500" || got.Progress.BytesDone != 1<<30 {
		t.Fatalf("final record %+v", got)
	}

	// A finished job keeps its stage.
	_, err = j.Update(ctx, job.ID(), func(j *Job) error { j.SetStage(Uploading, time.Now()); return nil })
	if !errors.Is(err, ErrFinal) {
		t.Fatalf("reopening a committed job: %v", err)
	}
	// fn's error rolls the transaction back.
	boom := errors.New("boom")
	_, err = j.Update(ctx, job.ID(), func(j *Job) error { j.Tags = nil; return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := j.Get(ctx, job.ID()); len(got.Tags) != 1 {
		t.Fatal("failed update was stored")
	}
	// Identity cannot change.
	if _, err := j.Update(ctx, job.ID(), func(j *Job) error { j.Step = 7; return nil }); err == nil {
		t.Fatal("step change accepted")
	}
	// Missing job.
	if _, err := j.Get(ctx, JobID("/out", 1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if _, err := j.Update(ctx, JobID("/out", 1), func(*Job) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update missing: %v", err)
	}
	// Delete.
	if err := j.Delete(ctx, job.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Get(ctx, job.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if err := j.Delete(ctx, job.ID()); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestPutValidation(t *testing.T) {
	j, _ := openTemp(t)
	for _, tc := range []struct {
		name string
		job  *Job
		want string
	}{
		{"no dir", &Job{Step: 1, Stage: Detected}, "without a watch dir"},
		{"NUL", &Job{WatchDir: "/a\x00b", Stage: Detected}, "NUL"},
		{"negative step", &Job{WatchDir: "/a", Step: -1, Stage: Detected}, "negative step"},
		{"bad stage", &Job{WatchDir: "/a", Step: 1, Stage: "done"}, "unknown stage"},
	} {
		if err := j.Put(ctx, tc.job); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if err := j.Put(ctx2, sampleJob("/a", 1, Detected)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put: %v", err)
	}
}

func TestListOrderAndUnfinished(t *testing.T) {
	j, _ := openTemp(t)
	// Inserted out of order; dirs where one is a prefix of another; steps whose decimal order differs.
	jobs := []*Job{
		sampleJob("/runs/a-b", 1, Committed),
		sampleJob("/runs/a", 100, Uploading),
		sampleJob("/runs/a", 9, Committed),
		sampleJob("/runs/a/sub", 5, Detected),
		sampleJob("/runs/a", 10, Failed),
		sampleJob("/runs/a", math.MaxInt64, Skipped),
		sampleJob("/runs/a", 0, Pinned),
	}
	for _, job := range jobs {
		if err := j.Put(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	all, err := j.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, job := range all {
		ids = append(ids, job.ID())
	}
	want := []string{"/runs/a@0", "/runs/a@9", "/runs/a@10", "/runs/a@100", "/runs/a@9223372036854775807",
		"/runs/a-b@1", "/runs/a/sub@5"}
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("List order\n got %v\nwant %v", ids, want)
	}
	un, err := j.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids = nil
	for _, job := range un {
		ids = append(ids, job.ID())
	}
	if want := []string{"/runs/a@0", "/runs/a@100", "/runs/a/sub@5"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("Unfinished = %v, want %v", ids, want)
	}
	s, err := j.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 7 || s.Stages[Committed] != 2 || len(s.Dirs) != 3 || s.Dirs[0].WatchDir != "/runs/a" ||
		*s.Dirs[0].LastCommitted != 9 || s.Dirs[0].Unfinished != 2 || s.Dirs[0].Failed != 1 || s.Dirs[0].Skipped != 1 {
		t.Fatalf("summary %+v", s)
	}
	if got := s.String(); got != "7 jobs: 1 detected, 1 pinned, 1 uploading, 2 committed, 1 failed, 1 skipped" {
		t.Errorf("summary line %q", got)
	}
}

func TestNewerVersionRefused(t *testing.T) {
	j, _ := openTemp(t)
	err := j.DB().Update(func(tx *bbolt.Tx) error {
		v, _ := json.Marshal(map[string]any{"v": Version + 1, "watch_dir": "/x", "step": 1, "stage": "detected", "new_field": 1})
		return tx.Bucket([]byte(Bucket)).Put(key("/x", 1), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Get(ctx, JobID("/x", 1)); err == nil || !strings.Contains(err.Error(), "upgrade hubsync") {
		t.Fatalf("err = %v", err)
	}
	if _, err := j.List(ctx); err == nil {
		t.Fatal("List read a newer record")
	}
}

func TestSharedDBAndReadOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j.db")
	db, err := bbolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	// Another user of the file (the Hub part journal) has its own bucket.
	if err := j.DB().Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("hub-uploads"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := j.Put(ctx, sampleJob("/o", 1, Uploading)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.List(ctx); err != nil {
		t.Fatalf("Close of a shared journal closed the DB: %v", err)
	}
	// While the writer holds the file, a read-only open times out with a clear error.
	if _, err := OpenReadOnly(p, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("read-only open during write: %v", err)
	}
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
	db.Close()
	r, err := OpenReadOnly(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	un, err := r.Unfinished(ctx)
	if err != nil || len(un) != 1 {
		t.Fatalf("read-only Unfinished: %v %v", un, err)
	}
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "none.db"), time.Second); err == nil {
		t.Fatal("read-only open of a missing journal succeeded")
	}
}

func TestSnapshot(t *testing.T) {
	j, p := openTemp(t)
	snap := p + SnapshotSuffix
	r, err := ReadSnapshot(snap)
	if err != nil || r.Summary.Total != 0 || r.Jobs == nil {
		t.Fatalf("initial snapshot: %+v %v", r, err)
	}
	job := sampleJob("/out", 20, Detected)
	if err := j.Put(ctx, job); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Update(ctx, job.ID(), func(j *Job) error {
		j.SetStage(Uploading, time.Now())
		j.Progress = Progress{BytesDone: 50, BytesTotal: 200}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r, err = ReadSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Jobs) != 1 || r.Jobs[0].Stage != Uploading || r.Jobs[0].Progress.BytesDone != 50 || r.Summary.Stages[Uploading] != 1 {
		t.Fatalf("snapshot %+v", r)
	}
	if err := j.SnapshotError(); err != nil {
		t.Fatal(err)
	}
	// A snapshot that cannot be written does not fail the journal write.
	if err := j.SetSnapshot(filepath.Join(t.TempDir(), "missing-dir", "s.json")); err == nil {
		t.Fatal("SetSnapshot into a missing dir succeeded")
	}
	if _, err := j.Update(ctx, job.ID(), func(j *Job) error { j.Attempts++; return nil }); err != nil {
		t.Fatalf("write failed because of the snapshot: %v", err)
	}
	if j.SnapshotError() == nil {
		t.Fatal("snapshot error not reported")
	}
}

func TestWriteTableAndJSON(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	jobs := []*Job{
		{WatchDir: "/out", Step: 10, Stage: Committed, Updated: now.Add(-3 * time.Hour), Target: Target{Repo: "me/m"},
			Commit: &Commit{OID: "0123456789abcdef0123"}, Tags: []string{"step-10"}, Progress: Progress{BytesDone: 16_060_000_000, BytesTotal: 16_060_000_000}},
		{WatchDir: "/out", Step: 20, Stage: Skipped, Reason: "superseded by step 30", Updated: now.Add(-90 * time.Second)},
		{WatchDir: "/out", Step: 30, Stage: Uploading, Attempts: 2, LastError: "502 Bad Gateway", Updated: now,
			Progress: Progress{BytesDone: 4_000_000_000, BytesTotal: 16_000_000_000}},
	}
	var b bytes.Buffer
	if err := WriteTable(&b, jobs, now); err != nil {
		t.Fatal(err)
	}
	want := `DIR   STEP  STAGE      PROGRESS            ATTEMPTS  UPDATED   DETAIL
/out  10    committed  16.1 GB             0         3h ago    me/m@0123456789ab tags step-10
/out  20    skipped    -                   0         1m ago    superseded by step 30
/out  30    uploading  25% 4.0 GB/16.0 GB  2         just now  retrying after: 502 Bad Gateway
3 jobs: 1 uploading, 1 committed, 1 skipped
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteJSON(&b, jobs, now); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.V != Version || len(r.Jobs) != 3 || r.Summary.Total != 3 || r.Jobs[2].LastError != "502 Bad Gateway" {
		t.Fatalf("json %+v", r)
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {999, "999 B"}, {1000, "1.0 kB"}, {1_500, "1.5 kB"}, {999_949, "999.9 kB"}, {999_950, "1.0 MB"},
		{16_060_000_000, "16.1 GB"}, {5_000_000_000_000, "5.0 TB"}, {math.MaxInt64, "9.2 EB"},
	} {
		if got := HumanBytes(tc.n); got != tc.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestParseJobID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		dir  string
		step int64
		ok   bool
	}{
		{"/out@500", "/out", 500, true},
		{"/we@ird/dir@7", "/we@ird/dir", 7, true},
		{"/out@", "", 0, false},
		{"@5", "", 0, false},
		{"/out", "", 0, false},
		{"/out@-1", "", 0, false},
		{"/out@x", "", 0, false},
	} {
		dir, step, err := ParseJobID(tc.id)
		if (err == nil) != tc.ok || dir != tc.dir || step != tc.step {
			t.Errorf("ParseJobID(%q) = %q, %d, %v", tc.id, dir, step, err)
		}
	}
}

func FuzzParseJobID(f *testing.F) {
	for _, s := range []string{"/out@500", "a@b@1", "@", "x@-0", "x@+5", "/o@9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		dir, step, err := ParseJobID(id)
		if err != nil {
			return
		}
		if dir == "" || step < 0 {
			t.Fatalf("accepted %q as %q, %d", id, dir, step)
		}
		// The id of what was parsed parses back to the same job.
		d2, s2, err := ParseJobID(JobID(dir, step))
		if err != nil || d2 != dir || s2 != step {
			t.Fatalf("round trip of %q: %q %d %v", id, d2, s2, err)
		}
	})
}

// FuzzDecodeRecord feeds arbitrary record bytes to the decoder: it must return a job or an error, never panic.
func FuzzDecodeRecord(f *testing.F) {
	good, _ := json.Marshal(sampleJob("/o", 3, Uploading))
	f.Add(good)
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"stage_at":{"detected":"x"}}`))
	f.Add([]byte(`{"outputs":[{"sample":"!!"}]}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		job, err := decode(key("/o", 3), v)
		if err == nil && job == nil {
			t.Fatal("nil job without error")
		}
	})
}

// BenchmarkUpdate measures one durable stage/progress update (a bbolt commit with fsync, plus the status
// snapshot rewrite) with 100 jobs in the journal.
func BenchmarkUpdate(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "j.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	for i := range 100 {
		if err := j.Put(ctx, sampleJob("/out", int64(i), Committed)); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Put(ctx, sampleJob("/out", 1000, Uploading)); err != nil {
		b.Fatal(err)
	}
	id := JobID("/out", 1000)
	for _, snap := range []bool{true, false} {
		b.Run(fmt.Sprintf("snapshot=%v", snap), func(b *testing.B) {
			if !snap {
				j.SetSnapshot("")
			}
			for i := range b.N {
				if _, err := j.Update(ctx, id, func(job *Job) error { job.Progress.BytesDone = int64(i); return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
