package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/watcher"
)

func TestTargetDests(t *testing.T) {
	t.Parallel()
	base := Target{Repo: "me/m", AdapterRepo: "me/m-ad", TagFormat: "step-{step}", BranchFormat: "ckpt-{step}",
		SubfolderFormat: "{checkpoint}", Message: "Upload {checkpoint} (step {step})"}
	tests := []struct {
		name string
		mod  func(*Target)
		want []string // kind repo branch prefix tag summary
	}{
		{"tags merged", nil, []string{"merged me/m main  step-500 Upload checkpoint-500 (step 500)"}},
		{"branches", func(t *Target) { t.Layout = config.LayoutBranches },
			[]string{"merged me/m ckpt-500   Upload checkpoint-500 (step 500)"}},
		{"subfolders under a path", func(t *Target) { t.Layout = config.LayoutSubfolders; t.PathInRepo = "runs/a/" },
			[]string{"merged me/m main runs/a/checkpoint-500  Upload checkpoint-500 (step 500)"}},
		{"both", func(t *Target) { t.Publish = config.PublishBoth },
			[]string{"merged me/m main  step-500 Upload checkpoint-500 (step 500)",
				"adapter me/m-ad main  step-500 Upload checkpoint-500 (step 500)"}},
		{"adapter, explicit tag, dev", func(t *Target) { t.Publish = config.PublishAdapter; t.Tag = "v1"; t.Revision = "dev" },
			[]string{"adapter me/m dev  v1 Upload checkpoint-500 (step 500)"}},
		{"no tag format", func(t *Target) { t.TagFormat = ""; t.Message = "" },
			[]string{"merged me/m main   Upload checkpoint-500 (step 500)"}},
	}
	for _, tc := range tests {
		tg := base
		if tc.mod != nil {
			tc.mod(&tg)
		}
		var got []string
		for _, d := range tg.dests(500, "checkpoint-500") {
			got = append(got, strings.Join([]string{d.Kind, d.Repo, d.Branch, d.Prefix, d.Tag, d.Summary}, " "))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestCommitID(t *testing.T) {
	t.Parallel()
	d := dest{Kind: KindMerged, Repo: "me/m", Branch: "main"}
	a := commitID(d, "/out", 500, config.LayoutTags)
	if a != commitID(d, "/out", 500, config.LayoutTags) {
		t.Error("not deterministic")
	}
	if len(a) != len("hubsync-")+24 || !strings.HasPrefix(a, "hubsync-") {
		t.Errorf("id %q", a)
	}
	seen := map[string]string{a: "base"}
	variants := map[string]string{
		"step":   commitID(d, "/out", 501, config.LayoutTags),
		"dir":    commitID(d, "/out2", 500, config.LayoutTags),
		"layout": commitID(d, "/out", 500, config.LayoutSubfolders),
		"kind":   commitID(dest{Kind: KindAdapter, Repo: "me/m", Branch: "main"}, "/out", 500, config.LayoutTags),
		"repo":   commitID(dest{Kind: KindMerged, Repo: "me/n", Branch: "main"}, "/out", 500, config.LayoutTags),
		"branch": commitID(dest{Kind: KindMerged, Repo: "me/m", Branch: "dev"}, "/out", 500, config.LayoutTags),
		"prefix": commitID(dest{Kind: KindMerged, Repo: "me/m", Branch: "main", Prefix: "x"}, "/out", 500, config.LayoutTags),
	}
	for what, id := range variants {
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share the id %s", what, other, id)
		}
		seen[id] = what
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	ep := "http://hub.test"
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"bad input", &merge.InputError{File: "a", Msg: "bad"}, true},
		{"disk space", fmt.Errorf("x: %w", &merge.DiskSpaceError{Dir: "/", Need: 2, Avail: 1}), false}, // fixable (issue 7 §2)
		{"permission", fmt.Errorf("open: %w", fs.ErrPermission), true},
		{"ENOSPC", &os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, false}, // fixable (issue 7 §2)
		{"vanished", fmt.Errorf("pin: %w", watcher.ErrVanished), true},
		{"api 403", &hub.HTTPError{Status: 403, URL: ep + "/api/repos/create"}, false},                      // fixable (issue 7 §2)
		{"api 401", &hub.HTTPError{Status: 401, URL: ep + "/api/whoami-v2"}, false},                         // fixable (issue 7 §2)
		{"repo 404", &hub.HTTPError{Status: 404, Code: "RepoNotFound", URL: ep + "/api/models/a/b"}, false}, // fixable (issue 7 §2)
		{"storage 403 (expired URL)", &hub.HTTPError{Status: 403, URL: "http://storage.test/obj"}, false},
		{"api 500", &hub.HTTPError{Status: 500, URL: ep + "/api/x"}, false},
		{"api 409", &hub.HTTPError{Status: 409, URL: ep + "/api/x"}, false},
		{"429", &hub.RateLimitError{RetryAfter: time.Second, Err: &hub.HTTPError{Status: 429, URL: ep}}, false},
		{"network", errors.New("dial tcp: connection refused"), false},
		{"wrapped permanent", fmt.Errorf("x: %w", permanent(errors.New("tag clash"))), true},
	}
	for _, tc := range tests {
		if got := IsPermanent(tc.err, ep); got != tc.want {
			t.Errorf("%s: IsPermanent = %v, want %v", tc.name, got, tc.want)
		}
	}
	if IsPermanent(nil, ep) {
		t.Error("nil is permanent")
	}
}

func TestStepOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format, name string
		step         int64
		ok           bool
	}{
		{"step-{step}", "step-500", 500, true},
		{"step-{step}", "step-x", 0, false},
		{"step-{step}", "v1", 0, false},
		{"{checkpoint}", "checkpoint-20", 20, true},
		{"run.a-{step}-{checkpoint}", "run.a-7-checkpoint-7", 7, true},
		{"run.a-{step}-{checkpoint}", "run.a-7-checkpoint-8", 0, false},
		{"run.a-{step}", "runXa-7", 0, false},
	}
	for _, tc := range tests {
		re, err := formatPattern(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		step, ok := stepOf(re, tc.name)
		if step != tc.step || ok != tc.ok {
			t.Errorf("stepOf(%q, %q) = %d, %v; want %d, %v", tc.format, tc.name, step, ok, tc.step, tc.ok)
		}
	}
	if _, err := formatPattern("fixed"); err == nil {
		t.Error("a format without a step was accepted")
	}
}

// FuzzStepOf: for any format, a name made from it parses back to its step; stepOf never accepts a name the
// format cannot make.
func FuzzStepOf(f *testing.F) {
	f.Add("step-{step}", uint32(500), "step-12")
	f.Add("{checkpoint}", uint32(0), "checkpoint-")
	f.Add("a{step}b{checkpoint}c", uint32(7), "a7bcheckpoint-7c")
	f.Add("{step}0", uint32(50), "500")
	f.Add("[.*]{step}", uint32(3), "[.*]3")
	f.Fuzz(func(t *testing.T, format string, step uint32, name string) {
		re, err := formatPattern(format)
		if err != nil {
			return
		}
		made := config.Expand(format, int64(step))
		got, ok := stepOf(re, made)
		if strings.Count(format, "{step}")+strings.Count(format, "{checkpoint}") == 1 && (!ok || got != int64(step)) {
			t.Errorf("format %q: %q parsed as %d, %v; want %d", format, made, got, ok, step)
		}
		if ok && config.Expand(format, got) != made {
			t.Errorf("format %q: %q parsed as step %d, which makes %q", format, made, got, config.Expand(format, got))
		}
		if s, ok := stepOf(re, name); ok && config.Expand(format, s) != name {
			t.Errorf("format %q: %q accepted as step %d, which makes %q", format, name, s, config.Expand(format, s))
		}
	})
}

// freeLoopbackAddr returns a loopback address with a port that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReadStatus reads the jobs from the journal when no daemon holds it, from the daemon's snapshot while one
// runs, and reports an empty status when there is no journal yet.
func TestReadStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rep, err := ReadStatus(ctx, filepath.Join(t.TempDir(), "none", "journal.db"), 50*time.Millisecond)
	if err != nil || rep.Source != SourceNone || len(rep.Jobs) != 0 {
		t.Fatalf("no journal: %+v %v", rep, err)
	}
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	addr := freeLoopbackAddr(t)
	cfg := testConfig(t, s.URL(), func(c *config.Config) { c.MetricsAddr = addr }, outputs)
	env := openTestEnv(t, cfg, testToken)
	r := startDaemon(t, cfg, env, testOptions(nil))
	r.waitFinished(t, 1)
	// The metrics are served on the loopback address while the daemon runs.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"hubsync_checkpoints_published_total 1", "hubsync_checkpoints_seen_total 1", "hubsync_queue_length 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	rep, err = ReadStatus(ctx, cfg.JournalPath(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Source != SourceSnapshot || stages(rep.Jobs) != "10:committed" || rep.Written.IsZero() {
		t.Errorf("while running: source %s, jobs %s", rep.Source, stages(rep.Jobs))
	}
	r.stop(t)
	env.Close()
	rep, err = ReadStatus(ctx, cfg.JournalPath(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Source != SourceJournal || stages(rep.Jobs) != "10:committed" || rep.Jobs[0].Commit == nil {
		t.Errorf("after stop: source %s, jobs %s", rep.Source, stages(rep.Jobs))
	}
	_ = journal.Committed
}
