package journal

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// fillJournal stores n finished jobs with realistic records (a dozen outputs with their 512-byte samples, a
// commit and a tag) and one uploading job, whose id it returns.
func fillJournal(tb testing.TB, j *Journal, n int) string {
	tb.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i <= n; i++ {
		job := &Job{WatchDir: "/out", Step: int64(i * 10), Dir: fmt.Sprintf("/out/checkpoint-%d", i*10),
			Target: Target{Repo: "me/model", Layout: "tags", Publish: "merged"}}
		for k := 0; k < 12; k++ {
			job.Outputs = append(job.Outputs, Output{Path: fmt.Sprintf("model-%05d-of-00012.safetensors", k+1),
				Size: 5 << 30, SHA256: fmt.Sprintf("%064x", k), Sample: make([]byte, 512)})
		}
		job.Progress = Progress{BytesTotal: 60 << 30, FilesTotal: 12}
		if i < n {
			job.SetStage(Committed, now)
			job.Commit = &Commit{OID: fmt.Sprintf("%040x", i), URL: "https://hub/commit", At: now}
			job.Tags = []string{fmt.Sprintf("step-%d", i*10)}
		} else {
			job.SetStage(Uploading, now)
		}
		if err := j.Put(ctx, job); err != nil {
			tb.Fatal(err)
		}
	}
	return JobID("/out", int64(n*10))
}

// BenchmarkProgressUpdate1000 measures one upload-progress update (journal write plus status snapshot) with
// 1000 finished jobs in the journal.
func BenchmarkProgressUpdate1000(b *testing.B) {
	p := filepath.Join(b.TempDir(), "journal.db")
	j, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	snap := j.snapshot
	_ = j.SetSnapshot("") // fill without rewriting the snapshot after each record
	id := fillJournal(b, j, 1000)
	if err := j.SetSnapshot(snap); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := j.Update(ctx, id, func(job *Job) error { job.Progress.BytesDone = int64(i); return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
