package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
)

// cancelAfterParts is a transport that calls cancel once n part uploads (PUTs to the storage host) have
// started, so the daemon stops in the middle of an upload.
type cancelAfterParts struct {
	base    http.RoundTripper
	storage string
	n       int64
	armed   atomic.Bool
	seen    atomic.Int64
	cancel  func()
}

func (c *cancelAfterParts) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.armed.Load() && req.Method == http.MethodPut && strings.HasPrefix(req.URL.String(), c.storage) {
		if c.seen.Add(1) == c.n {
			// Let this part through, stop the daemon while later ones are in flight.
			defer c.cancel()
		}
	}
	return c.base.RoundTrip(req)
}

// TestDaemonRestartResumes stops the daemon at every stage of a job (ctx cancel from the stage hook, or in the
// middle of the upload), starts a new one on the same state directory and checks that the Hub ends as after an
// uninterrupted run: the same files in every tag, one commit per checkpoint.
func TestDaemonRestartResumes(t *testing.T) {
	t.Parallel()
	points := []string{"detected", "pinned", "merged", "uploading", "mid-upload", PointCommitLanded, "committed",
		"both/" + PointCommitLanded, "none/merged", "none/mid-upload", "none/" + PointCommitLanded}
	for _, name := range points {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			point, both := strings.CutPrefix(name, "both/")
			point, none := strings.CutPrefix(point, "none/") // staging none: shards produced again while uploading
			s := newTestHub(t)
			outputs := filepath.Join(t.TempDir(), "outputs")
			ckpts := map[int]string{}
			for _, step := range []int{10, 20} {
				ckpts[step] = writeCheckpoint(t, outputs, step, nil)
			}
			cfg := testConfig(t, s.URL(), func(c *config.Config) {
				if both {
					c.Watch[0].Publish = config.PublishBoth
				}
				if none {
					c.Watch[0].Staging = config.StagingNone
				}
			}, outputs)

			// First run: stop when job 20 reaches the point.
			var (
				mu       sync.Mutex
				cancel   func()
				stopped  bool
				hitStage journal.Stage
			)
			stop := func(st journal.Stage) {
				mu.Lock()
				defer mu.Unlock()
				if !stopped && cancel != nil {
					stopped, hitStage = true, st
					cancel()
				}
			}
			retry := hub.TestFastRetries()
			eo := EnvOptions{Token: testToken, Log: testLogger(t), Retry: &retry}
			var tr *cancelAfterParts
			var armedParts map[string]int64
			if point == "mid-upload" {
				tr = &cancelAfterParts{base: http.DefaultTransport.(*http.Transport).Clone(),
					storage: s.StorageURL(), n: 3, cancel: func() { stop(journal.Uploading) }}
				eo.HTTPClient = &http.Client{Transport: tr}
			}
			env1, err := OpenEnv(cfg, eo)
			if err != nil {
				t.Fatal(err)
			}
			opts := testOptions(func(o *Options) {
				o.Hook = func(ev StageEvent) {
					if ev.Job.Step == 20 && ev.Point == point {
						stop(ev.Job.Stage)
					}
					if ev.Job.Step == 20 && ev.Point == "uploading" && tr != nil {
						armedParts = s.Stats().PartsStored
						tr.armed.Store(true)
					}
				}
			})
			d1, err := NewDaemon(cfg, *env1, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, c1 := context.WithCancel(context.Background())
			mu.Lock()
			cancel = c1
			mu.Unlock()
			done := make(chan error, 1)
			go func() { done <- d1.Run(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("first run: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("first run did not stop")
			}
			c1()
			mu.Lock()
			if !stopped {
				t.Fatalf("never reached %s", point)
			}
			mu.Unlock()
			job20, err := env1.Journal.Get(context.Background(), journal.JobID(outputs, 20))
			if err != nil {
				t.Fatal(err)
			}
			wantStage := map[string]journal.Stage{"detected": journal.Detected, "pinned": journal.Pinned,
				"merged": journal.Merged, "uploading": journal.Uploading, "mid-upload": journal.Uploading,
				PointCommitLanded: journal.Uploading, "committed": journal.Committed}[point]
			if job20.Stage != wantStage {
				t.Errorf("after stopping at %s (hook stage %s) the journal says %s, want %s", point, hitStage, job20.Stage, wantStage)
			}
			partsRun1 := s.Stats().PartsStored
			commitsRun1 := s.Stats().Commits
			env1.Close()

			// Second run on the same state: everything finishes, nothing twice.
			env2 := openTestEnv(t, cfg, testToken)
			defer env2.Close()
			var remerged atomic.Int64
			r := startDaemon(t, cfg, env2, testOptions(func(o *Options) {
				o.Hook = func(ev StageEvent) {
					if ev.Job.Step == 20 && ev.Point == "merged" {
						remerged.Add(1)
					}
				}
			}))
			waitFor(t, "every job committed", func() bool {
				return stages(jobsOf(t, env2.Journal)) == "10:committed 20:committed"
			})
			r.stop(t)
			if job20.Stage == journal.Merged || job20.Stage == journal.Uploading {
				// The outputs' digests are journaled: the second run uploads without merging (or, staged none,
				// without pass one) again.
				if n := remerged.Load(); n != 0 {
					t.Errorf("job 20 was merged again after a restart at %s", point)
				}
			}

			c := testClient(t, s)
			repo := cfg.Watch[0].Repo
			for _, step := range []int{10, 20} {
				tag := fmt.Sprintf("step-%d", step)
				sameDigests(t, tag, repoFiles(t, c, repo, tag), referenceMerge(t, ckpts[step], testShard, repo))
			}
			repos := []string{repo}
			if both {
				repos = append(repos, cfg.Watch[0].AdapterRepo)
				for _, step := range []int{10, 20} {
					tag := fmt.Sprintf("step-%d", step)
					sameDigests(t, "adapter "+tag, withoutCard(repoFiles(t, c, cfg.Watch[0].AdapterRepo, tag)),
						adapterDigests(t, ckpts[step]))
				}
			}
			for _, rp := range repos {
				if n := commitCount(t, c, rp, "main"); n != 3 {
					t.Errorf("%s: %d commits on main, want 3 (initial + one per checkpoint)", rp, n)
				}
			}
			st := s.Stats()
			if want := int64(2 * len(repos)); st.Commits != want {
				t.Errorf("the Hub made %d commits, want %d (first run %d)", st.Commits, want, commitsRun1)
			}
			if point == PointCommitLanded && !both {
				j, _ := env2.Journal.Get(context.Background(), journal.JobID(outputs, 20))
				if commitsRun1 != 2 || j.Commit == nil {
					t.Errorf("first run made %d commits; job %+v", commitsRun1, j.Commit)
				}
			}
			if point == "mid-upload" {
				kept := 0
				for k, n := range partsRun1 {
					if armedParts[k] > 0 {
						continue // job 10's
					}
					if n == 1 && st.PartsStored[k] == 1 {
						kept++
					}
				}
				if len(partsRun1) == 0 || kept == 0 {
					t.Errorf("no part of job 20 stored in the first run was kept: before %v, run 1 %v, total %v", armedParts, partsRun1, st.PartsStored)
				}
			}
			_ = hubtest.OpCommit
			_ = config.PolicyAll
		})
	}
}
