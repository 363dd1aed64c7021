package pipeline

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/journal"
)

// notifyListener is a fake systemd notify socket: it records every datagram with its arrival time.
type notifyListener struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
	done chan struct{}
}

type notifyMsg struct {
	at    time.Time
	state string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	l := &notifyListener{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, notifyMsg{time.Now(), string(buf[:n])})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-l.done })
	t.Setenv("NOTIFY_SOCKET", path)
	return l
}

func (l *notifyListener) all() []notifyMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]notifyMsg(nil), l.msgs...)
}

// TestDaemonSystemdNotify checks the sd_notify protocol through a fake NOTIFY_SOCKET: READY=1 once watching,
// STATUS= lines that say what the daemon does, WATCHDOG=1 pings from the main loop only while it is responsive,
// STOPPING=1 at the end.
func TestDaemonSystemdNotify(t *testing.T) {
	l := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100ms: pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	n := NewSystemdNotifier()
	if n.WatchdogInterval() != 100*time.Millisecond {
		t.Fatalf("watchdog interval %v", n.WatchdogInterval())
	}
	env.Notify = n
	// The detected hook runs on the main loop: holding it wedges the loop, which must stop the pings.
	var wedgeStart, wedgeEnd time.Time
	r := startDaemon(t, cfg, env, testOptions(func(o *Options) {
		o.Hook = func(ev StageEvent) {
			switch ev.Point {
			case string(journal.Detected):
				wedgeStart = time.Now()
				time.Sleep(400 * time.Millisecond)
				wedgeEnd = time.Now()
			case string(journal.Pinned), string(journal.Uploading):
				// Hold the worker so that the STATUS line of this stage is sent for certain.
				time.Sleep(150 * time.Millisecond)
			}
		}
	}))
	r.waitFinished(t, 1)
	time.Sleep(150 * time.Millisecond) // a few pings while idle
	r.stop(t)
	time.Sleep(50 * time.Millisecond)
	msgs := l.all()
	if len(msgs) == 0 || msgs[0].state != "READY=1" {
		t.Fatalf("first message %v, want READY=1", msgs)
	}
	var statuses []string
	pings, pingsWedged := 0, 0
	for _, m := range msgs {
		switch {
		case strings.HasPrefix(m.state, "STATUS="):
			statuses = append(statuses, strings.TrimPrefix(m.state, "STATUS="))
		case m.state == "WATCHDOG=1":
			pings++
			// Allow one ping sent just as the wedge began.
			if m.at.After(wedgeStart.Add(60*time.Millisecond)) && m.at.Before(wedgeEnd) {
				pingsWedged++
			}
		}
	}
	if pings < 3 {
		t.Errorf("%d watchdog pings", pings)
	}
	if pingsWedged > 0 {
		t.Errorf("%d watchdog pings while the main loop was wedged", pingsWedged)
	}
	all := strings.Join(statuses, "\n")
	for _, want := range []string{"watching 1 dir(s), idle", "merging checkpoint-10", "uploading checkpoint-10 to w/model-a",
		"1 published, 0 failed, 0 skipped", "stopping"} {
		if !strings.Contains(all, want) {
			t.Errorf("no STATUS line with %q in:\n%s", want, all)
		}
	}
	last := msgs[len(msgs)-1].state
	stopping := false
	for _, m := range msgs[len(msgs)-3:] {
		stopping = stopping || m.state == "STOPPING=1"
	}
	if !stopping {
		t.Errorf("no STOPPING=1 at the end (last %q)", last)
	}
}
