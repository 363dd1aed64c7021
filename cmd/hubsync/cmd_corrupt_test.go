package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/journal"
)

// writeSoundJournal writes a journal with a few hundred jobs (several pages).
func writeSoundJournal(t *testing.T, p string) {
	t.Helper()
	j, err := journal.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	_ = j.SetSnapshot("")
	for i := 0; i < 300; i++ {
		job := &journal.Job{WatchDir: "/out", Step: int64(i), Dir: fmt.Sprintf("/out/checkpoint-%d", i), Reason: strings.Repeat("r", 200)}
		job.SetStage(journal.Failed, time.Now())
		if err := j.Put(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
}

// damaged writes a journal-sized file of random bytes, or a sound journal cut in half.
func damaged(t *testing.T, p string, half bool) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64<<10)
	rand.New(rand.NewSource(7)).Read(b)
	if half {
		// A sound journal, then cut short.
		sound := filepath.Join(t.TempDir(), "journal.db")
		writeSoundJournal(t, sound)
		data, err := os.ReadFile(sound)
		if err != nil {
			t.Fatal(err)
		}
		b = data[:len(data)/2]
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptJournal: a journal.db of random bytes or cut in half makes watch and status exit 1 naming the file
// and what to do, never panic (exit 2); push with a damaged uploads.db warns and publishes without resume.
func TestCorruptJournal(t *testing.T) {
	for _, half := range []bool{false, true} {
		name := "random"
		if half {
			name = "half"
		}
		t.Run(name, func(t *testing.T) {
			hubcliIsolate(t)
			s := hubcliServer(t)
			f := newCkptFixture(t, 10)
			state := filepath.Join(t.TempDir(), "state")
			jp := filepath.Join(state, "journal.db")
			damaged(t, jp, half)
			t.Setenv("HF_TOKEN", hubcliToken)
			t.Setenv("HF_ENDPOINT", s.URL())
			t.Setenv("STATE_DIRECTORY", state)
			code, out, errb := hubcliRun(t, "status")
			if code != 1 || !strings.Contains(errb, jp) || !strings.Contains(errb, "move it aside") {
				t.Errorf("status: exit %d\nstdout %s\nstderr %s", code, out, errb)
			}
			code, out, errb = hubcliRun(t, "--log-format", "json", "watch", f.outputs, "--repo", "w/c", "--merged",
				"--base", f.base, "--settle", "100ms", "--stop-after", "1")
			if code != 1 || !strings.Contains(errb, jp) || !strings.Contains(errb, "move it aside") {
				t.Errorf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
			}
		})
	}
	t.Run("push uploads.db", func(t *testing.T) {
		home := hubcliIsolate(t)
		s := hubcliServer(t)
		up := filepath.Join(home, "state", "hubsync", "uploads.db")
		damaged(t, up, false)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":1}`), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errb := hubcliRun(t, "--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json",
			"push", dir, "--repo", "w/corrupt")
		if code != 0 || !strings.Contains(errb, "upload journal unavailable") || !strings.Contains(errb, "uploads.db") {
			t.Errorf("push: exit %d\nstdout %s\nstderr %s", code, out, errb)
		}
	})
}
