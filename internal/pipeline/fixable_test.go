package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/merge"
)

// TestIsPermanentFixable: the daemon's rule. The checkpoint's own faults are permanent; what a user or time
// fixes (token, network, DNS, 5xx, 429, full disk, a base not downloadable yet) is not.
func TestIsPermanentFixable(t *testing.T) {
	ep := "http://hub.test"
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"corrupt safetensors", fmt.Errorf("merge: %w", &merge.InputError{File: "adapter_model.safetensors", Msg: "bad header"}), true},
		{"unsupported adapter", permanent(errors.New("not a PEFT adapter")), true},
		{"401 at upload", fmt.Errorf("upload: %w", &hub.HTTPError{Status: 401, URL: ep + "/api/models/a/b/preupload/main"}), false},
		{"403 at commit", fmt.Errorf("commit: %w", &hub.HTTPError{Status: 403, URL: ep + "/api/models/a/b/commit/main"}), false},
		{"DNS", &net.DNSError{Err: "no such host", Name: "hub.test", IsNotFound: true}, false},
		{"network down", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
		{"503", &hub.HTTPError{Status: 503, URL: ep + "/api/x"}, false},
		{"429", &hub.RateLimitError{RetryAfter: time.Minute, Err: &hub.HTTPError{Status: 429, URL: ep}}, false},
		{"staging disk full", &os.PathError{Op: "write", Path: "/staging/x", Err: syscall.ENOSPC}, false},
		{"quota", &os.PathError{Op: "write", Path: "/staging/x", Err: syscall.EDQUOT}, false},
		{"merge disk check", &merge.DiskSpaceError{Dir: "/staging", Need: 10, Avail: 1}, false},
		{"base not downloadable yet", fmt.Errorf("base: %w", &hub.HTTPError{Status: 404, Code: "RepoNotFound", URL: ep + "/api/models/o/base"}), false},
		{"bad request", &hub.HTTPError{Status: 422, URL: ep + "/api/x"}, true},
	}
	for _, tc := range tests {
		if got := IsPermanent(tc.err, ep); got != tc.want {
			t.Errorf("%s: IsPermanent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDaemonBackoffCapped: the wait between tries doubles up to MaxBackoff (10 minutes by default) and no
// number of attempts fails a job.
func TestDaemonBackoffCapped(t *testing.T) {
	d := &Daemon{opts: Options{Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff}}
	if DefaultMaxBackoff != 10*time.Minute {
		t.Errorf("DefaultMaxBackoff %s", DefaultMaxBackoff)
	}
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second, 7: 10 * time.Minute, 1000: 10 * time.Minute} {
		if got := d.backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// retryWatch collects the daemon's retry events.
type retryWatch struct {
	mu     sync.Mutex
	events []StageEvent
	ch     chan StageEvent
}

func newRetryWatch() *retryWatch { return &retryWatch{ch: make(chan StageEvent, 100)} }

func (r *retryWatch) hook(ev StageEvent) {
	if ev.Point != PointRetry {
		return
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.ch <- ev:
	default:
	}
}

// wait waits for n retry events (event-driven; the test's own deadline bounds it).
func (r *retryWatch) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.ch:
		case <-time.After(2 * time.Minute):
			t.Fatalf("no retry event %d", i+1)
		}
	}
}

// TestDaemonWrongTokenWaits: a token that may not write (403) does not fail the checkpoint: the job waits,
// retrying (status says why and when it tries next), across more tries than the old five-attempt limit; after
// the token is fixed and the daemon restarted it publishes, with no manual step.
func TestDaemonWrongTokenWaits(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, readToken)
	rw := newRetryWatch()
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) { o.Hook = rw.hook }))
	rw.wait(t, 7)
	r.stop(t)
	jobs := jobsOf(t, env.Journal)
	if len(jobs) != 1 || jobs[0].Stage.Final() {
		t.Fatalf("jobs %s: a wrong token must not finish the job", stages(jobs))
	}
	j := jobs[0]
	if !strings.Contains(j.LastError, "403") || j.NextAttempt.IsZero() || j.Attempts < 7 {
		t.Errorf("waiting job: last error %q, next attempt %v, attempts %d", j.LastError, j.NextAttempt, j.Attempts)
	}
	var table strings.Builder
	if err := journal.WriteTable(&table, jobs, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "403") || !strings.Contains(table.String(), "next try at") {
		t.Errorf("status does not say why it waits and when it tries next:\n%s", table.String())
	}
	if err := env.Close(); err != nil {
		t.Fatal(err)
	}

	// The token is fixed; the daemon restarts.
	env2 := openTestEnv(t, cfg, testToken)
	defer env2.Close()
	r2 := startDaemon(t, cfg, env2, testOptions(nil))
	r2.waitFinished(t, 1)
	r2.stop(t)
	if got := stages(jobsOf(t, env2.Journal)); got != "10:committed" {
		t.Fatalf("after the token was fixed: %s", got)
	}
	if n := commitCount(t, testClient(t, s), "w/model-a", "main"); n < 2 {
		t.Errorf("%d commits on main", n)
	}
	_ = hubtest.OpCommit
	_ = context.Background
}
