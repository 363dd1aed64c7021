//go:build unix

package watcher

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func writeLockFile(t *testing.T, dir string, info LockInfo, age time.Duration) {
	t.Helper()
	data, _ := json.Marshal(info)
	p := filepath.Join(dir, LockFileName)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-age)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestLockContention(t *testing.T) {
	dir := t.TempDir()
	l, err := Lock(dir, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if l.Info().PID != os.Getpid() || l.Info().Host != host || l.Path() != filepath.Join(dir, LockFileName) {
		t.Fatalf("info %+v path %s", l.Info(), l.Path())
	}
	// A second daemon on this host (flock held).
	_, err = Lock(dir, LockOptions{})
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, host) {
		t.Errorf("error does not name the holder: %s", msg)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lock file left after Unlock: %v", err)
	}
	l2, err := Lock(dir, LockOptions{})
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}

func TestLockStale(t *testing.T) {
	host, _ := os.Hostname()
	fresh, old := time.Second, 10*time.Minute
	for _, tc := range []struct {
		name     string
		info     *LockInfo // nil: write raw
		raw      string
		age      time.Duration
		takeover bool
		creating bool
	}{
		{name: "dead pid on this host", info: &LockInfo{V: 1, Host: host, PID: -1}, age: fresh, takeover: true},
		{name: "alive pid without flock, fresh heartbeat", info: &LockInfo{V: 1, Host: host, PID: os.Getppid()}, age: fresh},
		{name: "alive pid without flock, stale heartbeat", info: &LockInfo{V: 1, Host: host, PID: os.Getppid()}, age: old, takeover: true},
		{name: "other host, fresh heartbeat", info: &LockInfo{V: 1, Host: "gpu-node-7", PID: 4242}, age: fresh},
		{name: "other host, stale heartbeat", info: &LockInfo{V: 1, Host: "gpu-node-7", PID: 4242}, age: old, takeover: true},
		{name: "empty file, fresh", raw: "", age: fresh, creating: true},
		{name: "empty file, old", raw: "", age: old, takeover: true},
		{name: "garbage, old", raw: "{not json", age: old, takeover: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, LockFileName)
			if tc.info != nil {
				info := *tc.info
				if info.PID == -1 {
					info.PID = deadPID(t)
				}
				writeLockFile(t, dir, info, tc.age)
			} else {
				if err := os.WriteFile(p, []byte(tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
				at := time.Now().Add(-tc.age)
				os.Chtimes(p, at, at)
			}
			var logs syncBuffer
			l, err := Lock(dir, LockOptions{StaleAfter: time.Minute, Log: zerolog.New(&logs)})
			if !tc.takeover {
				var le *LockedError
				if !errors.As(err, &le) || le.Creating != tc.creating {
					t.Fatalf("err = %v, want LockedError (creating=%v)", err, tc.creating)
				}
				if tc.info != nil && !strings.Contains(err.Error(), tc.info.Host) {
					t.Errorf("error does not name the host: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("takeover failed: %v", err)
			}
			defer l.Unlock()
			if !strings.Contains(logs.String(), "taking over a stale lock") {
				t.Errorf("no warning logged: %s", logs.String())
			}
			data, _ := os.ReadFile(p)
			var got LockInfo
			if err := json.Unmarshal(data, &got); err != nil || got.PID != os.Getpid() || got.Nonce != l.Info().Nonce {
				t.Fatalf("lock file after takeover: %s (%v)", data, err)
			}
		})
	}
}

func TestLockHeartbeatAndLost(t *testing.T) {
	dir := t.TempDir()
	l, err := Lock(dir, LockOptions{Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(l.Path(), old, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.Stat(l.Path())
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(st.ModTime()) < time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("heartbeat did not refresh the lock file's mtime")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Someone else takes the lock over (as a daemon on another node would after a long stall).
	writeLockFile(t, dir, LockInfo{V: 1, Host: "other", PID: 1, Nonce: "theirs"}, 0)
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not signalled after a takeover")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(l.Path())
	if err != nil || !strings.Contains(string(data), "theirs") {
		t.Fatalf("Unlock removed or changed the new holder's file: %s %v", data, err)
	}
}

func TestLockDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	if _, err := Lock(dir, LockOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
	l, err := Lock(dir, LockOptions{CreateDir: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}

// TestLockOtherProcess holds the lock in a child process: the parent is refused while the child lives and takes
// the lock over once it was SIGKILLed (flock released by the kernel, pid dead).
func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "HUBSYNC_LOCK_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	_, err = Lock(dir, LockOptions{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("lock held by child: err = %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	l, err := Lock(dir, LockOptions{})
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Unlock()
}

func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("HUBSYNC_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestLockOtherProcess")
	}
	if _, err := Lock(dir, LockOptions{}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	os.Exit(0)
}
