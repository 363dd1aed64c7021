package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a hubsync process started by a test.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	logPath string // stderr (the logs)
	done    chan struct{}
	err     error // cmd.Wait's error, once done is closed
}

// startProc runs the hubsync binary with args and exactly the environment env (nothing of the test's own
// environment leaks in besides PATH). Its stderr goes to a file that is printed when the test fails.
func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, stdout: &syncBuffer{}, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(shared.bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	if raceEnabled {
		p.cmd.Env = append(p.cmd.Env, "GORACE=halt_on_error=1 exitcode=66")
	}
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	var token string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HF_TOKEN="); ok {
			token = v
		}
	}
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		// Never a token in the output or the logs.
		if token != "" && (strings.Contains(p.logs(), token) || strings.Contains(p.stdout.String(), token)) {
			t.Errorf("%s printed or logged the Hub token", name)
		}
		if t.Failed() {
			t.Logf("%s %s: stdout:\n%s\nlast log lines:\n%s", name, strings.Join(args, " "), tailString(p.stdout.String(), 2000), p.logTail(6000))
		}
	})
	return p
}

// run runs hubsync to completion and returns its exit code and standard output.
func run(t testing.TB, name string, env []string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	p := startProc(t, name, env, args...)
	code, ok := p.wait(timeout)
	if !ok {
		t.Fatalf("%s did not finish within %s", name, timeout)
	}
	return code, p.stdout.String()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to timeout for the process to exit and returns its exit code (-1 for a signal).
func (p *proc) wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// kill sends SIGKILL and waits for the process to die.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and returns the exit code and how long the process took to exit.
func (p *proc) terminate(t testing.TB, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	code, ok := p.wait(timeout)
	if !ok {
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
	return code, time.Since(start)
}

// logs returns the process's stderr so far.
func (p *proc) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) logTail(n int) string { return tailString(p.logs(), n) }

// waitLog waits until the process's logs contain s.
func (p *proc) waitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.logs(), s) {
		if !p.running() {
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s", p.name, s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// hubServer is the Hub a test runs against: `hubsync devhub` as a subprocess, or the same server in-process
// when a test needs deterministic fault rules (hubtest.Server.InjectFault) to aim at a window.
type hubServer interface {
	URL() string
	Token() string
	// Stats returns the server's counters (GET /_devhub/stats).
	Stats(t testing.TB) hubtest.Stats
}

// devhub is `hubsync devhub` running as a subprocess.
type devhub struct {
	url, token string
	proc       *proc
}

func (d *devhub) URL() string   { return d.url }
func (d *devhub) Token() string { return d.token }

func (d *devhub) Stats(t testing.TB) hubtest.Stats {
	t.Helper()
	resp, err := http.Get(d.url + "/_devhub/stats")
	if err != nil {
		t.Fatalf("devhub stats: %v", err)
	}
	defer resp.Body.Close()
	var st hubtest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("devhub stats: status %d, %v", resp.StatusCode, err)
	}
	return st
}

// devhubArgs are the transfer settings every test Hub uses: multipart from 256 KiB in 64 KiB parts, so the
// merged shards (~1.9 MB) go up in ~30 parts each.
var devhubArgs = []string{"--multipart-threshold", "256KiB", "--min-part-size", "64KiB", "--chunk-size", "64KiB"}

// newToken returns a fresh random write token value.
func newToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "hf_e2e_" + hex.EncodeToString(b)
}

// startDevhub starts `hubsync devhub` on a free port with its data in a temporary directory, the test's write
// token for namespace e2e, small multipart settings, faults (a --faults spec, "" for none) and extra flags.
func startDevhub(t testing.TB, faults string, extra ...string) *devhub {
	t.Helper()
	d := &devhub{token: newToken(t)}
	args := append([]string{"devhub", "--addr", "127.0.0.1:0", "--data", t.TempDir(),
		"--token", repoOwner + "=" + d.token + ":write", "--log-format", "json"}, devhubArgs...)
	args = append(args, extra...)
	if faults != "" {
		args = append(args, "--faults", faults)
	}
	d.proc = startProc(t, "devhub", []string{"HOME=" + t.TempDir()}, args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(d.proc.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "devhub: listening on "); ok {
				d.url = strings.TrimSpace(u)
			}
		}
		if d.url != "" {
			break
		}
		if !d.proc.running() || time.Now().After(deadline) {
			t.Fatalf("devhub did not start: %v\n%s", d.proc.err, d.proc.logTail(2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(d.proc.stdout.String(), d.token) {
		t.Errorf("devhub printed the token it was given")
	}
	return d
}

// localHub is the devhub server in-process (hubtest), for fault rules that fire on a precise request.
type localHub struct {
	srv   *hubtest.Server
	token string
}

func (l *localHub) URL() string                    { return l.srv.URL() }
func (l *localHub) Token() string                  { return l.token }
func (l *localHub) Stats(testing.TB) hubtest.Stats { return l.srv.Stats() }

// startLocalHub starts the Hub in-process with the same settings as startDevhub.
func startLocalHub(t testing.TB) *localHub {
	t.Helper()
	l := &localHub{token: newToken(t)}
	l.srv = hubtest.NewTestServer(t, hubtest.Options{
		Tokens:             []hubtest.Token{{Name: repoOwner, Value: l.token, Write: true}},
		MultipartThreshold: 256 << 10, MinPartSize: 64 << 10, ChunkSize: 64 << 10,
	})
	return l
}

// scenario is one trainer output directory watched by hubsync, publishing to one repo of a Hub.
type scenario struct {
	t      testing.TB
	hub    hubServer
	client *hub.Client
	repo   string
	// out is the trainer's output_dir; state the daemon's STATE_DIRECTORY; home its HOME and HF_HOME.
	out, state, home string
	// trainerState records when each checkpoint's trainer_state.json was completely written.
	mu           sync.Mutex
	trainerState map[int]time.Time
}

func newScenario(t testing.TB, h hubServer, repoName string) *scenario {
	t.Helper()
	root := t.TempDir()
	s := &scenario{t: t, hub: h, repo: repoOwner + "/" + repoName, out: filepath.Join(root, "outputs"),
		state: filepath.Join(root, "state"), home: filepath.Join(root, "home"), trainerState: map[int]time.Time{}}
	for _, d := range []string{s.out, s.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := hub.New(hub.Options{Endpoint: h.URL(), Token: h.Token(), Retry: hub.TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	s.client = c
	return s
}

// env is the environment hubsync runs in: the Hub endpoint and token the way a user sets them, the state
// directory as systemd's StateDirectory= gives it, and a private HOME/HF_HOME (no session bus: the keyring is
// skipped).
func (s *scenario) env() []string {
	return []string{
		"HOME=" + s.home, "HF_HOME=" + filepath.Join(s.home, "hf"), "XDG_CACHE_HOME=" + filepath.Join(s.home, "cache"),
		"HF_ENDPOINT=" + s.hub.URL(), "HF_TOKEN=" + s.hub.Token(), "STATE_DIRECTORY=" + s.state,
	}
}

// watchArgs is `hubsync watch OUT --repo R --merged --base BASE ...` with the tests' settle and shard size.
func (s *scenario) watchArgs(extra ...string) []string {
	args := []string{"watch", s.out, "--repo", s.repo, "--merged", "--base", shared.baseDir, "--settle", settle,
		"--policy", "all", "--max-shard-size", maxShard, "--log-format", "json"}
	return append(args, extra...)
}

// startWatch starts the daemon and waits until it watches.
func (s *scenario) startWatch(name string, extra ...string) *proc {
	s.t.Helper()
	p := startProc(s.t, name, s.env(), s.watchArgs(extra...)...)
	p.waitLog(s.t, `"message":"watching"`, 30*time.Second)
	return p
}

// writeCheckpoint writes checkpoint-<step> as the trainer does (weights, config, tokenizer, optimizer,
// trainer_state.json last), with half-written files visible when slow, and records when trainer_state.json was
// complete. opts.Base is filled in.
func (s *scenario) writeCheckpoint(ctx context.Context, step int, slow bool, opts testmodel.CheckpointOptions) error {
	opts.Base = shared.base
	if slow {
		opts.ChunkSize, opts.ChunkDelay, opts.FileDelay = 32<<10, 3*time.Millisecond, 30*time.Millisecond
	}
	after := opts.AfterFile
	opts.AfterFile = func(p string) {
		if filepath.Base(p) == "trainer_state.json" {
			s.mu.Lock()
			s.trainerState[step] = time.Now()
			s.mu.Unlock()
		}
		if after != nil {
			after(p)
		}
	}
	_, err := testmodel.WriteCheckpoint(ctx, s.out, step, adapterSpec(), opts)
	return err
}

// snapshotPath is the status snapshot the running daemon rewrites after every journal change.
func (s *scenario) snapshotPath() string {
	return filepath.Join(s.state, config.JournalFile+journal.SnapshotSuffix)
}

// snapshot reads the daemon's status snapshot (an empty report when there is none yet).
func (s *scenario) snapshot() *journal.Report {
	r, err := journal.ReadSnapshot(s.snapshotPath())
	if err != nil {
		return &journal.Report{}
	}
	return r
}

// job returns the job of step in r, or nil.
func job(r *journal.Report, step int) *journal.Job {
	for _, j := range r.Jobs {
		if j.Step == int64(step) {
			return j
		}
	}
	return nil
}

// stageOf returns the stage of step's job in r ("" when there is none).
func stageOf(r *journal.Report, step int) journal.Stage {
	if j := job(r, step); j != nil {
		return j.Stage
	}
	return ""
}

func finished(st journal.Stage) bool {
	return st == journal.Committed || st == journal.Failed || st == journal.Skipped
}

// waitFinished waits until every step's job is finished (committed, failed or skipped) in the daemon's snapshot.
func (s *scenario) waitFinished(p *proc, timeout time.Duration, steps ...int) *journal.Report {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := s.snapshot()
		all := true
		for _, st := range steps {
			all = all && finished(stageOf(r, st))
		}
		if all {
			return r
		}
		if !p.running() {
			s.t.Fatalf("%s exited (%v) before steps %v finished; snapshot: %s", p.name, p.err, steps, describe(r))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("steps %v not finished within %s; snapshot: %s", steps, timeout, describe(r))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStage waits until step's job reaches one of stages (or later: a finished job also ends the wait) and
// returns the snapshot.
func (s *scenario) waitStage(p *proc, step int, timeout time.Duration, stages ...journal.Stage) *journal.Report {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := s.snapshot()
		st := stageOf(r, step)
		for _, want := range stages {
			if st == want {
				return r
			}
		}
		if finished(st) {
			return r
		}
		if !p.running() {
			s.t.Fatalf("%s exited (%v) while waiting for step %d to reach %v", p.name, p.err, step, stages)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("step %d did not reach %v within %s; snapshot: %s", step, stages, timeout, describe(r))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe summarizes a report's jobs for messages.
func describe(r *journal.Report) string {
	var parts []string
	for _, j := range r.Jobs {
		s := fmt.Sprintf("%d:%s", j.Step, j.Stage)
		if j.Reason != "" {
			s += " (" + j.Reason + ")"
		}
		if j.LastError != "" {
			s += " [last error: " + j.LastError + "]"
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// status runs `hubsync status --json` and decodes its report.
func (s *scenario) status() *journal.Report {
	s.t.Helper()
	code, out := run(s.t, "status", s.env(), 30*time.Second, "status", "--json")
	if code != 0 {
		s.t.Fatalf("hubsync status --json: exit %d", code)
	}
	var r journal.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		s.t.Fatalf("hubsync status --json: %v\n%s", err, out)
	}
	return &r
}

// commitCount returns the number of commits on main (0 when the repo does not exist).
func (s *scenario) commitCount(ctx context.Context) int {
	s.t.Helper()
	cs, err := s.client.ListCommits(ctx, s.repo, "main", 0)
	if errors.Is(err, hub.ErrNotFound) {
		return 0
	}
	if err != nil {
		s.t.Fatalf("list commits: %v", err)
	}
	return len(cs)
}

// cpuTime reads a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces; fields 14 and 15 follow it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
