package journal

import (
	"context"
	"path/filepath"
	"testing"
)

// TestSnapshotCompact: the status snapshot does not grow with history: it lists the unfinished jobs and the
// newest SnapshotFinishedKeep finished ones, without samples or finished jobs' outputs, while its summary counts
// every job; each change is in the snapshot when the write returns.
func TestSnapshotCompact(t *testing.T) {
	p := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	n := SnapshotFinishedKeep + 20
	id := fillJournal(t, j, n)
	if _, err := j.Update(context.Background(), id, func(job *Job) error {
		job.Progress.BytesDone = 12345
		job.Activity = "completing upload"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r, err := ReadSnapshot(p + SnapshotSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Total != n+1 || r.Summary.Stages[Committed] != n {
		t.Errorf("summary %+v, want %d jobs", r.Summary, n+1)
	}
	if len(r.Jobs) != SnapshotFinishedKeep+1 || r.Omitted != 20 {
		t.Fatalf("%d jobs listed, %d omitted", len(r.Jobs), r.Omitted)
	}
	if first := r.Jobs[0].Step; first != 200 {
		t.Errorf("oldest listed step %d, want 200 (the newest finished kept)", first)
	}
	last := r.Jobs[len(r.Jobs)-1]
	if last.ID() != id || last.Progress.BytesDone != 12345 || last.Activity != "completing upload" {
		t.Errorf("unfinished job in the snapshot: %+v", last)
	}
	for _, job := range r.Jobs {
		if job.Stage.Final() && job.Outputs != nil {
			t.Errorf("step %d: finished job with outputs in the snapshot", job.Step)
		}
		for _, o := range job.Outputs {
			if o.Sample != nil {
				t.Errorf("step %d: sample in the snapshot", job.Step)
			}
		}
	}
	// The journal itself keeps everything.
	full, err := j.Get(context.Background(), id)
	if err != nil || len(full.Outputs) != 12 || len(full.Outputs[0].Sample) != 512 {
		t.Errorf("journal record lost data: %v", err)
	}
	all, err := j.List(context.Background())
	if err != nil || len(all) != n+1 {
		t.Errorf("List: %d jobs, %v", len(all), err)
	}
}
