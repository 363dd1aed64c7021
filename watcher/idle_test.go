//go:build unix

package watcher

import (
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWatcherIdleCPU reports the CPU a running watcher uses while nothing happens: one checkpoint already sent
// (by marker), one complete checkpoint waiting out a long settle period (its examinations read its files, which
// must not wake the watcher again), one incomplete checkpoint, and one watched directory that does not exist.
func TestWatcherIdleCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("idle measurement")
	}
	for _, m := range []struct {
		name string
		poll time.Duration
	}{{"fsnotify", 0}, {"poll-1s", time.Second}, {"poll-50ms", 50 * time.Millisecond}} {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			writeInstant(t, out, 1)
			writeFile(t, filepath.Join(out, "checkpoint-2", "optimizer.pt"), []byte("partial"))
			writeFile(t, filepath.Join(out, "checkpoint-3", DefaultMarker), nil)
			w, _ := runWatcher(t, Options{Dirs: []string{out, filepath.Join(t.TempDir(), "missing", "outputs")},
				Poll: m.poll, Settle: time.Hour})
			if ev := waitEvent(t, w, 10*time.Second); ev.Step != 3 {
				t.Fatalf("event %+v", ev)
			}
			if p := w.Status().Pending; len(p) != 2 || !strings.Contains(p[0].Reason, "waiting until it is unchanged") {
				t.Fatalf("pending %+v", p)
			}
			time.Sleep(100 * time.Millisecond)
			runtime.GC()
			const idle = 1500 * time.Millisecond
			c0, t0 := cpuTime(t), time.Now()
			time.Sleep(idle)
			cpu, wall := cpuTime(t)-c0, time.Since(t0)
			pct := 100 * cpu.Seconds() / wall.Seconds()
			t.Logf("%s: idle CPU %s over %s wall (%.3f%%)", m.name, cpu, wall.Round(time.Millisecond), pct)
			if pct > 20 {
				t.Errorf("idle watcher used %.1f%% of a CPU", pct)
			}
		})
	}
}
