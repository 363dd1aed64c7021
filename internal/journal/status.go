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
	return WriteTableOpts(w, jobs, now, TableOptions{DaemonRunning: true})
}

// TableOptions say what `hubsync status` knows beyond the journal's records.
type TableOptions struct {
	// DaemonRunning: the jobs come from a running daemon. Without one, unfinished jobs are shown as parked.
	DaemonRunning bool
	// Settling are complete-looking checkpoints the daemon's watcher waits on (not in the journal yet).
	Settling []Settling
}

// Settling is a checkpoint in its settle period.
type Settling struct {
	WatchDir string    `json:"watch_dir"`
	Step     int64     `json:"step"`
	Dir      string    `json:"dir"`
	Complete time.Time `json:"complete_at"`
}

// WriteTableOpts is WriteTable with what the caller knows about the daemon.
func WriteTableOpts(w io.Writer, jobs []*Job, now time.Time, o TableOptions) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tSTEP\tSTAGE\tPROGRESS\tATTEMPTS\tUPDATED\tDETAIL")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", j.WatchDir, j.Step, state(j, o.DaemonRunning), progress(j),
			j.Attempts, age(now, j.Updated), detail(j, now, o.DaemonRunning))
	}
	for _, st := range o.Settling {
		when := st.Complete.Local().Format("15:04:05")
		fmt.Fprintf(tw, "%s\t%d\tsettling\t-\t0\t-\tsettling, complete at %s\n", st.WatchDir, st.Step, when)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	line := Summarize(jobs).String()
	if n := len(o.Settling); n > 0 {
		line += fmt.Sprintf("; %d settling", n)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// state is a job's STAGE column: the stage, or what a running daemon is doing within it.
func state(j *Job, running bool) string {
	if j.Stage.Final() {
		return string(j.Stage)
	}
	if !running {
		return "parked"
	}
	if j.Activity != "" {
		return j.Activity
	}
	return string(j.Stage)
}

// Report is the JSON document WriteJSON writes and the status snapshot holds.
type Report struct {
	V       int       `json:"v"`
	Written time.Time `json:"written"`
	// Summary counts every job, listed or not.
	Summary Summary `json:"summary"`
	Jobs    []*Job  `json:"jobs"`
	// Omitted counts the older finished jobs a snapshot does not list (SnapshotFinishedKeep per directory).
	Omitted int `json:"omitted,omitempty"`
	// Settling lists the checkpoints the running daemon waits on (snapshot only).
	Settling []Settling `json:"settling,omitempty"`
}

// SnapshotFinishedKeep is how many finished jobs per watched directory the status snapshot lists (the newest
// steps); the summary still counts all of them. The journal itself keeps every record.
const SnapshotFinishedKeep = 100

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
	gen := j.gen.Load()
	if j.written >= gen && j.cache != nil {
		return j.snapErr // a concurrent writer already included this change
	}
	if j.cache == nil {
		jobs, err := j.List(context.Background())
		if err != nil {
			return err
		}
		j.cache = make(map[string]*Job, len(jobs))
		for _, job := range jobs {
			j.cache[job.ID()] = compact(job)
		}
	}
	all := make([]*Job, 0, len(j.cache))
	for _, job := range j.cache {
		all = append(all, job)
	}
	sort.Slice(all, func(a, b int) bool {
		if all[a].WatchDir != all[b].WatchDir {
			return all[a].WatchDir < all[b].WatchDir
		}
		return all[a].Step < all[b].Step
	})
	rep := Report{V: Version, Written: j.now().UTC(), Summary: Summarize(all), Settling: j.settling}
	rep.Jobs, rep.Omitted = listed(all, SnapshotFinishedKeep)
	f, err := os.CreateTemp(filepath.Dir(j.snapshot), "."+filepath.Base(j.snapshot)+".tmp-*")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	err = enc.Encode(rep)
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
	j.written = gen
	return nil
}

// listed keeps the unfinished jobs and the newest keep finished jobs of each directory (all sorted by directory,
// then step), and counts the others.
func listed(all []*Job, keep int) ([]*Job, int) {
	finished := map[string]int{}
	for _, job := range all {
		if job.Stage.Final() {
			finished[job.WatchDir]++
		}
	}
	out := make([]*Job, 0, len(all))
	omitted := 0
	seen := map[string]int{}
	for _, job := range all {
		if job.Stage.Final() {
			seen[job.WatchDir]++
			if finished[job.WatchDir]-seen[job.WatchDir] >= keep {
				omitted++
				continue
			}
		}
		out = append(out, job)
	}
	return out, omitted
}

// compact is the part of a record the status snapshot shows: no digests' samples or block digests, and for finished jobs no
// outputs, staging directory or stage times.
func compact(job *Job) *Job {
	c := *job
	if c.Stage.Final() {
		c.Outputs, c.StagingDir, c.StageAt, c.LastError, c.Activity = nil, "", nil, "", ""
		c.NextAttempt = time.Time{}
		return &c
	}
	c.Outputs = make([]Output, len(job.Outputs))
	for i, o := range job.Outputs {
		o.Sample, o.Blocks = nil, nil
		c.Outputs[i] = o
	}
	c.StageAt = make(map[Stage]time.Time, len(job.StageAt))
	for k, v := range job.StageAt {
		c.StageAt[k] = v
	}
	return &c
}

// changed records a stored (nil: deleted) job in the snapshot cache and rewrites the snapshot.
func (j *Journal) changed(id string, job *Job) {
	j.snapMu.Lock()
	if j.cache != nil {
		if job == nil {
			delete(j.cache, id)
		} else {
			j.cache[id] = compact(job)
		}
	}
	j.gen.Add(1)
	j.snapMu.Unlock()
	j.writeSnapshot()
}

// SetSettling replaces the list of checkpoints in their settle period shown by the status snapshot, and
// rewrites it when the list changed.
func (j *Journal) SetSettling(s []Settling) {
	j.snapMu.Lock()
	same := len(s) == len(j.settling)
	for i := 0; same && i < len(s); i++ {
		same = s[i] == j.settling[i]
	}
	if !same {
		j.settling = append([]Settling(nil), s...)
		j.gen.Add(1)
	}
	j.snapMu.Unlock()
	if !same {
		j.writeSnapshot()
	}
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

func detail(j *Job, now time.Time, running bool) string {
	switch {
	case j.Stage == Failed || j.Stage == Skipped:
		return j.Reason
	case !j.Stage.Final() && !running:
		s := "parked, no daemon running (" + string(j.Stage) + "; resumes when hubsync watch starts)"
		if j.LastError != "" {
			s += "; last error: " + j.LastError
		}
		return s
	case j.LastError != "":
		s := "retrying after: " + j.LastError
		if !j.NextAttempt.IsZero() {
			s += "; next try at " + j.NextAttempt.Local().Format("15:04:05")
			if d := j.NextAttempt.Sub(now); d > 0 {
				s += " (in " + d.Round(time.Second).String() + ")"
			}
		}
		return s
	case j.Stage == Committed && j.Commit != nil:
		oid := j.Commit.OID
		if len(oid) > 12 {
			oid = oid[:12]
		}
		s := j.Target.Repo + "@" + oid
		if len(j.Tags) > 0 {
			s += " tags " + strings.Join(j.Tags, ",")
		}
		if len(j.PrunedTags) > 0 {
			s += " (pruned: " + strings.Join(j.PrunedTags, ",") + ")"
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
