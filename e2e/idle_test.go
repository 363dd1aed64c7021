package e2e

import (
	"testing"
	"time"
)

// TestIdleCPU runs `hubsync watch` with nothing to do and reads its CPU time from /proc/<pid>/stat: no busy
// loops, with filesystem events and with polling. The figure is reported; the bound (a third of one core) only
// catches a spinning loop, which would use a whole core.
func TestIdleCPU(t *testing.T) {
	t.Parallel()
	dh := startDevhub(t, "")
	const window = 3 * time.Second
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fsnotify", nil},
		{"poll-100ms", []string{"--poll", "100ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, dh, "idle-"+tc.name)
			w := s.startWatch("watch", tc.args...)
			time.Sleep(500 * time.Millisecond) // start-up work is not idling
			pid := w.cmd.Process.Pid
			c0, err := cpuTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(window)
			c1, err := cpuTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			used := c1 - c0
			t.Logf("idle %s: %s of CPU in %s (%.2f%% of one core)", tc.name, used, window,
				100*used.Seconds()/window.Seconds())
			if used > window/3 {
				t.Errorf("idle daemon used %s of CPU in %s: a busy loop?", used, window)
			}
			if code, _ := w.terminate(t, 20*time.Second); code != 0 {
				t.Errorf("SIGTERM: exit %d", code)
			}
		})
	}
}
