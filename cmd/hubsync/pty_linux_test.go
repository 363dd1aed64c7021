//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubsync/hubsync/hub"
)

// openPTY returns a pseudo-terminal's two ends (Linux /dev/ptmx), sized 160×40; the master's output is
// collected by the returned function, which waits for the slave to be closed.
func openPTY(t *testing.T) (slave *os.File, output func() string) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open slave: %v", err)
	}
	_ = unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 160})
	var buf bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(&buf, master) // ends with EIO once the slave is closed
	}()
	t.Cleanup(func() { master.Close() })
	return slave, func() string {
		slave.Close()
		wg.Wait()
		return buf.String()
	}
}

// TestProgressBarsOnTerminal: on a terminal, upload/download bars have separated labels and a total bar with an
// ETA; the merge bar shows tensors, bytes, rate and ETA; HF_HUB_DISABLE_PROGRESS_BARS turns them off.
func TestProgressBarsOnTerminal(t *testing.T) {
	t.Setenv("HF_HUB_DISABLE_PROGRESS_BARS", "")
	t.Setenv("NO_COLOR", "")
	slave, output := openPTY(t)
	if !isTerminal(slave) {
		t.Skip("the pty is not a terminal")
	}
	g, _, _ := hubcliGlobals("", "")
	g.stderr = slave
	r := newProgressReporter(context.Background(), g, time.Hour)
	r.event(hub.ProgressEvent{Phase: hub.PhaseDownloading, File: "README.md", Done: 10, Total: 100})
	r.event(hub.ProgressEvent{Phase: hub.PhaseDownloading, File: "model.safetensors", Done: 50, Total: 1000})
	r.event(hub.ProgressEvent{Phase: hub.PhaseCommitting, Done: 0, Total: 1})
	r.close()
	mp := newMergeProgress(g, time.Hour, true)
	mp.tensorsDone(3, 7)
	mp.bytesDone(300, 700)
	mp.close()
	out := output()
	for _, want := range []string{"downloading README.md", "(total)", "ETA", "committing  (commit)", "merging", "3/7 tensors"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "downloadingREADME.md") || strings.Contains(out, "committingcommit") {
		t.Errorf("labels run together:\n%s", out)
	}

	t.Setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
	slave, output = openPTY(t)
	g.stderr = slave
	r = newProgressReporter(context.Background(), g, time.Hour)
	r.event(hub.ProgressEvent{Phase: hub.PhaseDownloading, File: "README.md", Done: 10, Total: 100})
	r.close()
	if out := output(); strings.Contains(out, "README.md") {
		t.Errorf("a bar was drawn with HF_HUB_DISABLE_PROGRESS_BARS=1:\n%s", out)
	}
}

// TestColorOnTerminal: colour on a terminal unless NO_COLOR is set.
func TestColorOnTerminal(t *testing.T) {
	slave, output := openPTY(t)
	defer output()
	t.Setenv("NO_COLOR", "")
	if !colorEnabled(slave) {
		t.Error("no colour on a terminal")
	}
	t.Setenv("NO_COLOR", "1")
	if colorEnabled(slave) {
		t.Error("colour with NO_COLOR=1")
	}
}
