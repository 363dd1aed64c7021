package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/journal"
)

// TestFreshJournalDoesNotRepublish: a daemon whose journal is lost (a new, empty state directory, or journal.db
// deleted) over a repo where its checkpoints are already published finds each job's commit on the Hub by its
// deterministic id, records the jobs as committed and makes no commit (issue 14 item 4).
func TestFreshJournalDoesNotRepublish(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	steps := []int{10, 20}
	for _, step := range steps {
		writeCheckpoint(t, outputs, step, nil)
	}
	c := testClient(t, s)

	publish := func(what string, mod func(stateDir string)) (*Env, int) {
		t.Helper()
		cfg := testConfig(t, s.URL(), nil, outputs)
		if mod != nil {
			mod(cfg.StateDir)
		}
		env := openTestEnv(t, cfg, testToken)
		t.Cleanup(func() { env.Close() })
		r := startDaemon(t, cfg, env, testOptions(nil))
		r.waitFinished(t, len(steps))
		r.stop(t)
		for _, j := range jobsOf(t, env.Journal) {
			if j.Stage != journal.Committed || j.Commit == nil || len(j.Tags) != 1 {
				t.Errorf("%s: job %d: stage %s commit %+v tags %v", what, j.Step, j.Stage, j.Commit, j.Tags)
			}
		}
		return env, commitCount(t, c, cfg.Watch[0].Repo, "main")
	}
	env1, first := publish("first run", nil)
	if first != 1+len(steps) {
		t.Fatalf("first run: %d commits on main, want %d", first, 1+len(steps))
	}
	oids := map[int64]string{}
	for _, j := range jobsOf(t, env1.Journal) {
		oids[j.Step] = j.Commit.OID
	}
	before := s.Stats()

	for _, tc := range []struct {
		name string
		mod  func(stateDir string)
	}{
		{"new state directory", nil},
		{"empty journal file", func(dir string) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "journal.db"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		env, n := publish(tc.name, tc.mod)
		if n != first {
			t.Errorf("%s: %d commits on main after the rerun, want %d (nothing republished)", tc.name, n, first)
		}
		for _, j := range jobsOf(t, env.Journal) {
			if j.Commit != nil && j.Commit.OID != oids[j.Step] {
				t.Errorf("%s: job %d recorded commit %s, want the published %s", tc.name, j.Step, j.Commit.OID, oids[j.Step])
			}
		}
	}
	if after := s.Stats(); after.Commits != before.Commits {
		t.Errorf("the Hub counted %d commits after the reruns, %d before", after.Commits, before.Commits)
	}
	for _, step := range steps {
		if got := repoFiles(t, c, "w/model-a", fmt.Sprintf("step-%d", step)); len(got) == 0 {
			t.Errorf("tag step-%d lost its files", step)
		}
	}
}

// TestRecoverByTagBeyondSearchDepth: a job whose commit is further down the branch than the search depth is still
// found through its tag (the tag points at the commit carrying the job's id), so nothing is committed again.
func TestRecoverByTagBeyondSearchDepth(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	ctx := context.Background()
	dir := t.TempDir()
	job := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(job, []byte("the job's file"), 0o644); err != nil {
		t.Fatal(err)
	}
	fc := FilesCommit{Repo: "w/deep", Summary: "job", Tag: "step-1",
		Files: []hub.UploadFile{{PathInRepo: "a.txt", LocalPath: job}}}
	o := publishSetOptions{CommitID: "job-1", Recover: true, Log: testLogger(t)}
	first, err := publishFiles(ctx, env.Client, fc, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "b.txt")
	for i := 0; i <= recoverDepth; i++ {
		if err := os.WriteFile(other, []byte(fmt.Sprint("other ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Client.Commit(ctx, "w/deep", []hub.UploadFile{{PathInRepo: "b.txt", LocalPath: other}},
			hub.CommitOptions{Summary: fmt.Sprint("other ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	before := commitCount(t, env.Client, "w/deep", "main")
	again, err := publishFiles(ctx, env.Client, fc, nil, o)
	if err != nil {
		t.Fatalf("republishing the job: %v", err)
	}
	if !again.Recovered || again.OID != first.OID {
		t.Errorf("republish: commit %s (recovered %v), want the job's first commit %s found again", again.OID, again.Recovered, first.OID)
	}
	if n := commitCount(t, env.Client, "w/deep", "main"); n != before {
		t.Errorf("%d commits on main after the republish, %d before", n, before)
	}
}
