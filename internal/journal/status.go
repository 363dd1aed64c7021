package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary counts jobs, overall and per watched directory.
type Summary struct {
	Total  int           `json:"total"`
	Stages map[Stage]int `json:"stages"`
	Dirs   []DirSummary  `json:"dirs"`
}

// DirSummary summarizes the jobs of one watched directory.
type DirSummary struct {
	WatchDir   string `json:"watch_dir"`
	Jobs       int    `json:"jobs"`
	Unfinished int    `json:"unfinished"`
	Failed     int    `json:"failed"`
	Skipped    int    `json:"skipped"`
	// LastCommitted is the highest committed step, with its commit (nil when nothing was committed).
	LastCommitted *int64  `json:"last_committed_step,omitempty"`
	LastCommit    *Commit `json:"last_commit,omitempty"`
}

// Summarize counts jobs (in List order).
func Summarize(jobs []*Job) Summary {
	s := Summary{Stages: map[Stage]int{}}
	index := map[string]int{}
	for _, j := range jobs {
		s.Total++
		s.Stages[j.Stage]++
		i, ok := index[j.WatchDir]
		if !ok {
			i = len(s.Dirs)
			index[j.WatchDir] = i
			s.Dirs = append(s.Dirs, DirSummary{WatchDir: j.WatchDir})
		}
		d := &s.Dirs[i]
		d.Jobs++
		switch j.Stage {
		case Failed:
			d.Failed++
		case Skipped:
			d.Skipped++
		case Committed:
			if d.LastCommitted == nil || j.Step > *d.LastCommitted {
				step := j.Step
				d.LastCommitted, d.LastCommit = &step, j.Commit
			}
		default:
			d.Unfinished++
		}
	}
	sort.SliceStable(s.Dirs, func(a, b int) bool { return s.Dirs[a].WatchDir < s.Dirs[b].WatchDir })
	return s
}

// Summary summarizes the journal.
func (j *Journal) Summary(ctx context.Context) (Summary, error) {
	jobs, err := j.List(ctx)
	if err != nil {
		return Summary{}, err
	}
	return Summarize(jobs), nil
}

// String renders a one-line summary: "5 jobs: 3 committed, 1 uploading, 1 skipped".
func (s Summary) String() string {
	if s.Total == 0 {
		return "no jobs"
	}
	var parts []string
	for _, st := range AllStages() {
		if n := s.Stages[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	noun := "jobs"
	if s.Total == 1 {
		noun = "job"
	}
	return fmt.Sprintf("%d %s: %s", s.Total, noun, strings.Join(parts, ", "))
}

// WriteTable renders jobs as an aligned table for `hubsync status`, followed by the summary line. now is used
// for ages ("3m ago").
func WriteTable(w io.Writer, jobs []*Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tSTEP\tSTAGE\tPROGRESS\tATTEMPTS\tUPDATED\tDETAIL")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", j.WatchDir, j.Step, j.Stage, progress(j), j.Attempts,
			age(now, j.Updated), detail(j))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, Summarize(jobs))
	return err
}

// Report is the JSON document WriteJSON writes and the status snapshot holds.
type Report struct {
	V       int       `json:"v"`
	Written time.Time `json:"written"`
	Summary Summary   `json:"summary"`
	Jobs    []*Job    `json:"jobs"`
}

// WriteJSON writes jobs and their summary as one indented JSON document (`hubsync status --json`).
func WriteJSON(w io.Writer, jobs []*Job, now time.Time) error {
	if jobs == nil {
		jobs = []*Job{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Report{V: Version, Written: now.UTC(), Summary: Summarize(jobs), Jobs: jobs})
}

// ReadSnapshot reads a status snapshot written by a journal (see Open and SetSnapshot).
func ReadSnapshot(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal status: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("journal status %s: %w", path, err)
	}
	if r.V > Version {
		return nil, fmt.Errorf("journal status %s has version %d; this hubsync reads up to %d", path, r.V, Version)
	}
	return &r, nil
}

// SnapshotError returns the error of the latest failed snapshot write (nil after a successful one). Snapshot
// failures do not fail the journal write that triggered them.
func (j *Journal) SnapshotError() error {
	j.snapMu.Lock()
	defer j.snapMu.Unlock()
	return j.snapErr
}

// writeSnapshot rewrites the status snapshot (atomically: temp file + rename) from the current records. Its
// error is kept for SnapshotError.
func (j *Journal) writeSnapshot() {
	j.snapMu.Lock()
	defer j.snapMu.Unlock()
	if j.snapshot == "" {
		j.snapErr = nil
		return
	}
	j.snapErr = j.writeSnapshotLocked()
}

func (j *Journal) writeSnapshotLocked() error {
	jobs, err := j.List(context.Background())
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(j.snapshot), "."+filepath.Base(j.snapshot)+".tmp-*")
	if err != nil {
		return err
	}
	err = WriteJSON(f, jobs, j.now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), j.snapshot)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("journal status snapshot: %w", err)
	}
	return nil
}

func progress(j *Job) string {
	p := j.Progress
	switch {
	case j.Stage == Committed && p.BytesTotal > 0:
		return HumanBytes(p.BytesTotal)
	case p.BytesTotal > 0:
		return fmt.Sprintf("%d%% %s/%s", p.BytesDone*100/p.BytesTotal, HumanBytes(p.BytesDone), HumanBytes(p.BytesTotal))
	}
	return "-"
}

func detail(j *Job) string {
	switch {
	case j.Stage == Failed || j.Stage == Skipped:
		return j.Reason
	case j.LastError != "":
		return "retrying after: " + j.LastError
	case j.Stage == Committed && j.Commit != nil:
		oid := j.Commit.OID
		if len(oid) > 12 {
			oid = oid[:12]
		}
		s := j.Target.Repo + "@" + oid
		if len(j.Tags) > 0 {
			s += " tags " + strings.Join(j.Tags, ",")
		}
		return s
	}
	return j.Target.Repo
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// HumanBytes formats a byte count with decimal units, as the Hub shows sizes: 999 B, 1.5 kB, 16.1 GB.
func HumanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB", "PB"} {
		f /= 1000
		if f < 999.95 {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f EB", f/1000)
}
