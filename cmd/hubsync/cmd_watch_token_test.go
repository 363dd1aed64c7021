package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchWrongTokenThenFixed: watch with a token the Hub rejects exits 1 with a clear error before any merge
// (no staging, no journal job, no commit); after the token is fixed and watch restarted, it publishes the
// checkpoint with no manual step.
func TestWatchWrongTokenThenFixed(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", state)
	t.Setenv("NOTIFY_SOCKET", "")
	args := []string{"--log-format", "json", "watch", f.outputs, "--repo", "w/tok", "--merged", "--base", f.base,
		"--settle", "100ms", "--stop-after", "1", "--max-shard-size", "20kB"}
	t.Setenv("HF_TOKEN", "hf_wrong_token_value")
	code, out, errb := hubcliRun(t, args...)
	if code != 1 || !strings.Contains(errb, "wrong Hub token") || !strings.Contains(errb, "rejected") {
		t.Fatalf("wrong token: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	if strings.Contains(out+errb, "hf_wrong_token_value") {
		t.Error("token printed")
	}
	if _, err := os.Stat(filepath.Join(f.outputs, ".hubsync-staging", "checkpoint-10")); err == nil {
		t.Error("a merge started with a wrong token")
	}
	t.Setenv("HF_TOKEN", hubcliToken)
	code, out, errb = hubcliRun(t, args...)
	if code != 0 {
		t.Fatalf("fixed token: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	if got := hubDigests(t, s, "w/tok", "step-10"); len(got) == 0 {
		t.Error("step-10 not published")
	}
}

// TestWatchWrongTokenUnderSystemd: under systemd a wrong token does not exit (a restart loop cannot fix it): the
// daemon reports READY and a STATUS= line saying it waits for a valid token, until stopped (exit 0).
func TestWatchWrongTokenUnderSystemd(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 10)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unix datagram sockets: %v", err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
	t.Setenv("HF_TOKEN", "hf_wrong_token_value")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var outB, errB bytes.Buffer
	out, errb := &lockedBuffer{b: &outB}, &lockedBuffer{b: &errB}
	go func() {
		done <- run(ctx, []string{"--log-format", "json", "watch", f.outputs, "--repo", "w/tok", "--merged", "--base", f.base},
			strings.NewReader(""), out, errb)
	}()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no STATUS= about the token: %v; stderr %s", err, errString(errb))
		}
		if msg := string(buf[:n]); strings.HasPrefix(msg, "STATUS=") && strings.Contains(msg, "valid Hub token") {
			if strings.Contains(msg, "hf_wrong_token_value") {
				t.Error("token in STATUS=")
			}
			break
		}
	}
	select {
	case code := <-done:
		t.Fatalf("watch exited %d while waiting for a token", code)
	default:
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("stopped while waiting: exit %d: %s", code, errString(errb))
	}
}

func errString(l *lockedBuffer) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
