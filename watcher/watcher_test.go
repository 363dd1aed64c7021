package watcher

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// modes runs a test in fsnotify mode and in polling mode.
var modes = []struct {
	name string
	poll time.Duration
}{{"fsnotify", 0}, {"poll", 20 * time.Millisecond}}

const testSettle = 150 * time.Millisecond

// runWatcher starts a watcher and returns it with a function that stops it and checks Run's result.
func runWatcher(t *testing.T, opts Options) (*Watcher, func()) {
	t.Helper()
	if opts.Settle == 0 {
		opts.Settle = testSettle
	}
	if opts.Debounce == 0 {
		opts.Debounce = 10 * time.Millisecond
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func waitEvent(t *testing.T, w *Watcher, timeout time.Duration) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("Events closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s; status %+v", timeout, w.Status())
	}
	return Event{}
}

func expectNoEvent(t *testing.T, w *Watcher, d time.Duration) {
	t.Helper()
	select {
	case ev := <-w.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}

func TestWatcherSimulatedTrainer(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll})
			tr := newSimTrainer(t, 42)
			tr.chunk, tr.pause = 1024, 2*time.Millisecond

			// A leftover atomic-save temp dir (transformers 4.36–4.38) with complete content: never a checkpoint.
			writeInstant(t, out, 0)
			if err := os.Rename(filepath.Join(out, "checkpoint-0"), filepath.Join(out, "tmp-checkpoint-30")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, "tmp-checkpoint-30", TrainerStateFile), trainerStateJSON(30), 0o644); err != nil {
				t.Fatal(err)
			}

			for _, step := range []int64{10, 20} {
				// Record every completeness verdict the trainer's partial files would give.
				dir := tr.writeCheckpoint(out, "", step)
				done := tr.lastStart // the final write began here: nothing can be complete before
				ev := waitEvent(t, w, 10*time.Second)
				if ev.Step != step || ev.Dir != dir || ev.WatchDir != out || ev.ByMarker {
					t.Fatalf("event %+v, want step %d in %s", ev, step, dir)
				}
				if ev.At.Before(done.Add(testSettle)) {
					t.Errorf("event at %s, only %s after the last file was written (settle %s)", ev.At, ev.At.Sub(done), testSettle)
				}
				files := tr.files(step)
				if len(ev.Files) != len(files) {
					t.Fatalf("event lists %d files, want %d", len(ev.Files), len(files))
				}
				for _, f := range ev.Files {
					st, err := os.Stat(filepath.Join(dir, f.Rel))
					if err != nil || st.Size() != f.Size {
						t.Errorf("event file %+v vs disk %v", f, err)
					}
				}
				t.Logf("%s: step %d complete %s after its last write", m.name, step, ev.At.Sub(done).Round(time.Millisecond))
			}
			expectNoEvent(t, w, 3*testSettle)
			if st := w.Status(); st.Emitted != 2 || len(st.Pending) != 0 {
				t.Errorf("status %+v", st)
			}
		})
	}
}

// TestWatcherNeverEarly replays the Trainer's write sequence file by file and cut by cut: every state before the
// last byte of trainer_state.json must be incomplete for Check.
func TestWatcherNeverEarly(t *testing.T) {
	tr := newSimTrainer(t, 3)
	files := tr.files(7)
	replay := filepath.Join(t.TempDir(), "checkpoint-7")
	if err := os.Mkdir(replay, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		p := filepath.Join(replay, f.name)
		for _, cut := range []int{0, 1, len(f.data) / 3, len(bytes.TrimRight(f.data, "\n")) - 1} {
			if err := os.WriteFile(p, f.data[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			if c, err := Check(replay, CheckOptions{}); err != nil || c.Complete {
				t.Fatalf("after %d files and %d/%d bytes of %s: complete=%v err=%v", i, cut, len(f.data), f.name, c.Complete, err)
			}
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if c, err := Check(replay, CheckOptions{}); err != nil || c.Complete != (i == len(files)-1) {
			t.Fatalf("after %d whole files: complete=%v (%s) err=%v", i+1, c.Complete, c.Reason, err)
		}
	}
}

func TestWatcherExistingCheckpointsInOrder(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			for _, s := range []int64{30, 10, 20} {
				writeInstant(t, out, s)
			}
			writeFile(t, filepath.Join(out, "checkpoint-40", "optimizer.pt"), []byte("partial"))
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll})
			for _, want := range []int64{10, 20, 30} {
				if ev := waitEvent(t, w, 10*time.Second); ev.Step != want {
					t.Fatalf("got step %d, want %d", ev.Step, want)
				}
			}
			expectNoEvent(t, w, 2*testSettle)
			st := w.Status()
			if len(st.Pending) != 1 || st.Pending[0].Step != 40 || !strings.Contains(st.Pending[0].Reason, "trainer_state.json missing") {
				t.Fatalf("pending = %+v", st.Pending)
			}
		})
	}
}

func TestWatcherMarker(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll, Settle: time.Hour})
			dir := filepath.Join(out, "checkpoint-5")
			writeFile(t, filepath.Join(dir, "adapter_model.safetensors"), []byte("not even valid"))
			expectNoEvent(t, w, 100*time.Millisecond)
			writeFile(t, filepath.Join(dir, DefaultMarker), nil)
			ev := waitEvent(t, w, 10*time.Second)
			if ev.Step != 5 || !ev.ByMarker {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// settledBefore checks the settle rule on an event: the latest write that had finished when the event was sent
// began at least settle earlier. (A write's start is a lower bound of when the watcher can have seen it, so a
// stalled test goroutine cannot make this fail; a watcher that emits too early always does.)
func settledBefore(t *testing.T, ev Event, starts, ends []time.Time, settle time.Duration) {
	t.Helper()
	var last time.Time
	for i := range ends {
		if !ends[i].After(ev.At) {
			last = starts[i]
		}
	}
	if ev.At.Sub(last) < settle {
		t.Fatalf("event %s after a change, settle is %s", ev.At.Sub(last), settle)
	}
}

func TestWatcherSettleWhileChanging(t *testing.T) {
	const settle = 400 * time.Millisecond // long against the 25 ms between writes
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll, Settle: settle})
			dir := writeInstant(t, out, 50)
			var starts, ends []time.Time
			// Content is complete, but another rank keeps writing its RNG state for a while.
			f, err := os.Create(filepath.Join(dir, "rng_state_1.pth"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for range 30 {
				starts = append(starts, time.Now())
				if _, err := f.Write(bytes.Repeat([]byte{1}, 100)); err != nil {
					t.Fatal(err)
				}
				ends = append(ends, time.Now())
				select {
				case ev := <-w.Events():
					// Only legitimate if this machine stalled the writer for a whole settle period.
					settledBefore(t, ev, starts, ends, settle)
					t.Logf("writer stalled for over %s (loaded machine); the event respected the settle rule", settle)
					return
				case <-time.After(25 * time.Millisecond):
				}
			}
			ev := waitEvent(t, w, 10*time.Second)
			if ev.Step != 50 {
				t.Fatalf("event %+v", ev)
			}
			settledBefore(t, ev, starts, ends, settle)
		})
	}
}

func TestWatcherDirAppearsLater(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(root, "a", "b", "outputs")
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll})
			for deadline := time.Now().Add(5 * time.Second); len(w.Status().Missing) == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if st := w.Status(); len(st.Missing) != 1 || st.Missing[0] != out || len(st.Watching) != 0 {
				t.Fatalf("status %+v", st)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			writeInstant(t, out, 3)
			if ev := waitEvent(t, w, 10*time.Second); ev.Step != 3 || ev.WatchDir != out {
				t.Fatalf("event %+v", ev)
			}
			// Removed and created again: watched again.
			if err := os.RemoveAll(out); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			writeInstant(t, out, 4)
			if ev := waitEvent(t, w, 10*time.Second); ev.Step != 4 {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestWatcherRotatedBeforeComplete(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := t.TempDir()
			w, _ := runWatcher(t, Options{Dirs: []string{out}, Poll: m.poll})
			dir := filepath.Join(out, "checkpoint-9")
			writeFile(t, filepath.Join(dir, "optimizer.pt"), []byte("x"))
			deadline := time.Now().Add(5 * time.Second)
			for len(w.Status().Pending) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			for len(w.Status().Pending) != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if p := w.Status().Pending; len(p) != 0 {
				t.Fatalf("pending after removal: %+v", p)
			}
			expectNoEvent(t, w, 2*testSettle)
		})
	}
}

func TestWatcherSeen(t *testing.T) {
	out := t.TempDir()
	writeInstant(t, out, 1)
	writeInstant(t, out, 2)
	var mu sync.Mutex
	var asked []int64
	w, _ := runWatcher(t, Options{Dirs: []string{out}, Seen: func(e Event) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, e.Step)
		return e.Step == 1
	}})
	if ev := waitEvent(t, w, 10*time.Second); ev.Step != 2 {
		t.Fatalf("event %+v", ev)
	}
	expectNoEvent(t, w, 2*testSettle)
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 {
		t.Fatalf("Seen asked for %v", asked)
	}
}

func TestWatcherSlowReader(t *testing.T) {
	out := t.TempDir()
	w, _ := runWatcher(t, Options{Dirs: []string{out}})
	for s := int64(1); s <= 4; s++ {
		writeInstant(t, out, s)
	}
	time.Sleep(4 * testSettle) // nobody reads; the watcher must keep going
	writeInstant(t, out, 5)
	var got []int64
	for range 5 {
		got = append(got, waitEvent(t, w, 10*time.Second).Step)
	}
	if got[0] != 1 || got[3] != 4 || got[4] != 5 {
		t.Fatalf("steps %v", got)
	}
}

func TestWatcherOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dirs", Options{}, "no directories"},
		{"negative", Options{Dirs: []string{"x"}, Poll: -1}, "negative"},
		{"marker path", Options{Dirs: []string{"x"}, Marker: "a/b"}, "plain file name"},
		{"empty dir", Options{Dirs: []string{""}}, "empty directory"},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	w, err := New(Options{Dirs: []string{"rel", "rel/../rel"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := w.Dirs(); len(d) != 1 || !filepath.IsAbs(d[0]) {
		t.Fatalf("Dirs = %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("Events not closed")
	}
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestWatcherLogs(t *testing.T) {
	var buf syncBuffer
	out := t.TempDir()
	w, stop := runWatcher(t, Options{Dirs: []string{out}, Log: zerolog.New(&buf)})
	writeInstant(t, out, 8)
	waitEvent(t, w, 10*time.Second)
	stop()
	for _, want := range []string{"found checkpoint", "checkpoint complete", `"step":8`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

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

// TestOverflowRescans drives the loop directly: after an event-queue overflow, a checkpoint that raised no event
// is found by the rescan.
func TestOverflowRescans(t *testing.T) {
	out := t.TempDir()
	w, err := New(Options{Dirs: []string{out}, Settle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{w: w, watched: map[string]bool{}, present: map[string]bool{}, isWatch: map[string]bool{out: true},
		cands: map[string]*candidate{}, emitted: map[string]bool{}}
	now := time.Now()
	l.rescan(now, true)
	writeInstant(t, out, 12) // no fsnotify here: nothing tells the loop
	l.runDue(now.Add(time.Second))
	if len(l.cands) != 0 || len(l.queue) != 0 {
		t.Fatalf("found without a rescan: %d %d", len(l.cands), len(l.queue))
	}
	l.onError(fsnotify.ErrEventOverflow, now.Add(2*time.Second))
	l.runDue(now.Add(2 * time.Second))
	if len(l.cands) != 1 {
		t.Fatalf("rescan after overflow did not find the checkpoint")
	}
	l.runDue(now.Add(3 * time.Second)) // settle passed, content unchanged
	if len(l.queue) != 1 || l.queue[0].Step != 12 {
		t.Fatalf("queue %+v", l.queue)
	}
}
