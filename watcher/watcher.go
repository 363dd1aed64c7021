// Package watcher finds the checkpoints a trainer writes, decides when each one is complete without any change to
// the trainer, pins complete checkpoints against rotation, and keeps one daemon per output directory.
//
// A Watcher looks for checkpoint-N directories directly under each watched directory (DESIGN.md, Daemon). It
// learns about changes from fsnotify (inotify on Linux) or, for network filesystems whose other hosts' writes
// raise no local events, by rescanning every Poll interval. Either way it scans once at start, so checkpoints
// written before the daemon started are found too, and it waits for watched directories that do not exist yet.
//
// A checkpoint is complete when it holds the marker file, or when Check finds its content complete and nothing in
// it (names, sizes, modification times) changed for the settle period. That rule needs no successor checkpoint,
// so the last checkpoint of a run completes too. Each complete checkpoint is sent once on Events.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Defaults for Options.
const (
	DefaultSettle       = 30 * time.Second
	DefaultDebounce     = 200 * time.Millisecond
	DefaultFallbackPoll = 10 * time.Second
	minRecheck          = 5 * time.Second
)

// Event announces a complete checkpoint.
type Event struct {
	// WatchDir is the watched directory the checkpoint was found in (absolute, cleaned).
	WatchDir string
	// Dir is the checkpoint directory, WatchDir/checkpoint-N.
	Dir string
	// Step is N.
	Step int64
	// ByMarker reports that the completion marker decided completeness.
	ByMarker bool
	// Files is the checkpoint's content when it was found complete; pass it to Pin (WithExpected) so that the
	// pinned copy is verified against what was checked.
	Files []FileInfo
	// At is when the checkpoint was found complete.
	At time.Time
}

// Options configure a Watcher.
type Options struct {
	// Dirs are the directories to watch (trainer output dirs); they need not exist yet. Relative paths are made
	// absolute against the working directory.
	Dirs []string
	// Poll > 0 rescans every Poll instead of using fsnotify (for NFS, Lustre and other filesystems where writes
	// from other hosts raise no local events). 0 uses fsnotify.
	Poll time.Duration
	// Settle is how long a checkpoint's content must stay unchanged before it counts as complete when there is
	// no marker (0: DefaultSettle).
	Settle time.Duration
	// Marker is the completion marker's file name (default DefaultMarker).
	Marker string
	// Debounce is how long after a filesystem event a checkpoint is re-examined, so that a burst of writes costs
	// one examination (0: DefaultDebounce; never more than Settle).
	Debounce time.Duration
	// Recheck is how often, in fsnotify mode, an incomplete checkpoint is re-examined without any event, in case
	// an event was lost (0: the larger of Settle and 5s).
	Recheck time.Duration
	// FallbackPoll is how often the watcher rescans when fsnotify cannot watch a directory (for example when
	// fs.inotify.max_user_watches is exhausted) (0: DefaultFallbackPoll).
	FallbackPoll time.Duration
	// Seen, when set, filters checkpoints already handled (the daemon asks its journal). A checkpoint for which
	// it returns true is never examined nor sent. It is called from Run's goroutine with Files unset.
	Seen func(Event) bool
	// Log receives progress and problems (zero value: disabled).
	Log zerolog.Logger
}

// Pending describes a checkpoint that is not complete yet, for status output.
type Pending struct {
	WatchDir string    `json:"watch_dir"`
	Dir      string    `json:"dir"`
	Step     int64     `json:"step"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"` // when the content last changed
}

// Status is a Watcher's state, for status output and logs.
type Status struct {
	// Watching lists the watched directories that exist; Missing those that do not (yet).
	Watching []string `json:"watching"`
	Missing  []string `json:"missing,omitempty"`
	// Pending lists the checkpoints seen but not complete yet, ordered by directory and step.
	Pending []Pending `json:"pending,omitempty"`
	// Emitted counts the checkpoints sent on Events.
	Emitted int `json:"emitted"`
	// Degraded reports that fsnotify could not watch some directory and the watcher fell back to rescans.
	Degraded bool `json:"degraded,omitempty"`
}

// Watcher finds complete checkpoints. Create it with New, start Run in a goroutine and read Events until it is
// closed (Run closes it when it returns). Events are queued inside the watcher, so a slow reader never stalls the
// filesystem watch.
type Watcher struct {
	opts    Options
	dirs    []string
	events  chan Event
	started atomic.Bool

	mu     sync.Mutex
	status Status
}

// New validates opts and returns a Watcher. Nothing is watched until Run.
func New(opts Options) (*Watcher, error) {
	if len(opts.Dirs) == 0 {
		return nil, errors.New("watcher: no directories to watch")
	}
	if opts.Poll < 0 || opts.Settle < 0 || opts.Debounce < 0 || opts.Recheck < 0 || opts.FallbackPoll < 0 {
		return nil, errors.New("watcher: durations must not be negative")
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	opts.Debounce = min(opts.Debounce, opts.Settle)
	if opts.Recheck == 0 {
		opts.Recheck = max(opts.Settle, minRecheck)
	}
	if opts.FallbackPoll == 0 {
		opts.FallbackPoll = DefaultFallbackPoll
	}
	if opts.Marker == "" {
		opts.Marker = DefaultMarker
	}
	if opts.Marker != filepath.Base(opts.Marker) || opts.Marker == "." || opts.Marker == ".." {
		return nil, fmt.Errorf("watcher: marker %q must be a plain file name", opts.Marker)
	}
	seen := map[string]bool{}
	var dirs []string
	for _, d := range opts.Dirs {
		if d == "" {
			return nil, errors.New("watcher: empty directory name")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("watcher: %s: %w", d, err)
		}
		if !seen[abs] {
			seen[abs] = true
			dirs = append(dirs, abs)
		}
	}
	return &Watcher{opts: opts, dirs: dirs, events: make(chan Event)}, nil
}

// Events delivers each complete checkpoint once, per watched directory in step order when several complete
// together. It is closed when Run returns.
func (w *Watcher) Events() <-chan Event { return w.events }

// Dirs returns the watched directories (absolute).
func (w *Watcher) Dirs() []string { return append([]string(nil), w.dirs...) }

// Status returns a copy of the watcher's current state. It is safe to call from any goroutine.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Watching = append([]string(nil), s.Watching...)
	s.Missing = append([]string(nil), s.Missing...)
	s.Pending = append([]Pending(nil), s.Pending...)
	return s
}

// Run watches until ctx is cancelled, then closes Events and returns nil. It fails at once when fsnotify is
// unavailable (use Poll then). Run may be called only once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice")
	}
	defer close(w.events)
	l := &loop{
		w:       w,
		log:     w.opts.Log,
		watched: map[string]bool{},
		present: map[string]bool{},
		isWatch: map[string]bool{},
		cands:   map[string]*candidate{},
		emitted: map[string]bool{},
	}
	for _, d := range w.dirs {
		l.isWatch[d] = true
	}
	var fsEvents <-chan fsnotify.Event
	var fsErrors <-chan error
	if w.opts.Poll == 0 {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("watcher: fsnotify unavailable (%w); use polling instead", err)
		}
		defer fw.Close()
		l.fw = fw
		fsEvents, fsErrors = fw.Events, fw.Errors
		l.log.Info().Strs("dirs", w.dirs).Stringer("settle", w.opts.Settle).Msg("watching checkpoints (fsnotify)")
	} else {
		l.log.Info().Strs("dirs", w.dirs).Stringer("poll", w.opts.Poll).Stringer("settle", w.opts.Settle).
			Msg("watching checkpoints (polling)")
	}

	l.rescan(time.Now(), true)
	l.runDue(time.Now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.publishStatus()
		if next, ok := l.nextDue(); ok {
			timer.Reset(max(time.Until(next), 0))
		} else {
			timer.Stop()
		}
		var out chan<- Event
		var head Event
		if len(l.queue) > 0 {
			out, head = w.events, l.queue[0]
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsEvents:
			if !ok {
				return errors.New("watcher: fsnotify stopped")
			}
			l.onEvent(ev, time.Now())
		case err, ok := <-fsErrors:
			if !ok {
				return errors.New("watcher: fsnotify stopped")
			}
			l.onError(err, time.Now())
		case <-timer.C:
			l.runDue(time.Now())
		case out <- head:
			l.queue[0] = Event{}
			l.queue = l.queue[1:]
		}
	}
}

// candidate is a checkpoint directory seen but not yet complete.
type candidate struct {
	watchDir, dir string
	step          int64
	files         []FileInfo
	checked       bool
	stableSince   time.Time
	due           time.Time // zero: no examination scheduled
	reason        string
}

func (c *candidate) schedule(t time.Time) {
	if c.due.IsZero() || t.Before(c.due) {
		c.due = t
	}
}

// loop is the state Run's goroutine owns.
type loop struct {
	w   *Watcher
	log zerolog.Logger
	fw  *fsnotify.Watcher // nil when polling

	watched map[string]bool // paths with an fsnotify watch
	present map[string]bool // watched dir → exists
	isWatch map[string]bool
	cands   map[string]*candidate
	emitted map[string]bool // checkpoint dirs sent (or filtered by Seen): never again in this process
	queue   []Event
	sent    int

	rescanAt  time.Time // zero: none scheduled
	rescanAll bool      // the scheduled rescan re-examines every pending checkpoint
	degraded  bool
}

func (l *loop) scheduleRescan(t time.Time, all bool) {
	if l.rescanAt.IsZero() || t.Before(l.rescanAt) {
		l.rescanAt = t
	}
	l.rescanAll = l.rescanAll || all
}

func (l *loop) nextDue() (time.Time, bool) {
	next := l.rescanAt
	for _, c := range l.cands {
		if !c.due.IsZero() && (next.IsZero() || c.due.Before(next)) {
			next = c.due
		}
	}
	return next, !next.IsZero()
}

// runDue performs the rescan and examinations whose time has come.
func (l *loop) runDue(now time.Time) {
	if !l.rescanAt.IsZero() && !now.Before(l.rescanAt) {
		all := l.rescanAll
		l.rescanAt, l.rescanAll = time.Time{}, false
		l.rescan(now, all)
	}
	var due []*candidate
	for _, c := range l.cands {
		if !c.due.IsZero() && !now.Before(c.due) {
			c.due = time.Time{}
			due = append(due, c)
		}
	}
	sort.Slice(due, func(i, j int) bool { return lessDirStep(due[i].watchDir, due[i].step, due[j].watchDir, due[j].step) })
	var batch []Event
	for _, c := range due {
		if ev, ok := l.examine(c, now); ok {
			batch = append(batch, ev)
		}
	}
	l.queue = append(l.queue, batch...)
	l.reconcileWatches(now)
}

func lessDirStep(d1 string, s1 int64, d2 string, s2 int64) bool {
	if d1 != d2 {
		return d1 < d2
	}
	return s1 < s2
}

// onEvent maps a filesystem event to the examination or rescan it calls for.
func (l *loop) onEvent(ev fsnotify.Event, now time.Time) {
	p := filepath.Clean(ev.Name)
	debounced := now.Add(l.w.opts.Debounce)
	parent := filepath.Dir(p)
	if l.watched[p] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		// The kernel dropped the watch (removed) or it now follows the inode to another name (renamed): forget
		// it, so that a directory created again under this name gets a fresh watch.
		_ = l.fw.Remove(p)
		delete(l.watched, p)
	}
	switch {
	case l.cands[p] != nil: // the checkpoint dir itself: removed, renamed, attributes
		l.cands[p].schedule(debounced)
		l.scheduleRescan(debounced, false)
	case l.cands[parent] != nil: // a file inside a pending checkpoint
		l.cands[parent].schedule(debounced)
	case l.emitted[p] || l.emitted[parent]:
		// Late events for a checkpoint already sent.
	case l.isWatch[parent]:
		if _, ok := ParseStep(filepath.Base(p)); ok {
			l.scheduleRescan(debounced, false)
		}
	case l.isWatch[p] || l.anyMissing():
		// A watched dir was removed or renamed, or something changed above a dir that does not exist yet.
		l.scheduleRescan(debounced, false)
	}
}

func (l *loop) onError(err error, now time.Time) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		l.log.Warn().Err(err).Msg("filesystem event queue overflowed; rescanning")
	} else {
		l.log.Warn().Err(err).Msg("filesystem watch error; rescanning")
	}
	l.scheduleRescan(now, true)
}

func (l *loop) anyMissing() bool {
	for _, d := range l.w.dirs {
		if !l.present[d] {
			return true
		}
	}
	return false
}

// rescan lists every watched directory, adds new checkpoint dirs and forgets vanished ones. With all, every
// pending checkpoint is examined now.
func (l *loop) rescan(now time.Time, all bool) {
	for _, wd := range l.w.dirs {
		st, err := os.Stat(wd)
		if err != nil || !st.IsDir() {
			if l.present[wd] {
				l.log.Warn().Str("dir", wd).Msg("watched directory is gone; waiting for it to reappear")
			} else if _, known := l.present[wd]; !known {
				l.log.Info().Str("dir", wd).Msg("watched directory does not exist yet; waiting for it")
			}
			l.present[wd] = false
			l.forgetCandidates(wd, nil)
			continue
		}
		if !l.present[wd] {
			if _, known := l.present[wd]; known {
				l.log.Info().Str("dir", wd).Msg("watched directory appeared")
			}
		}
		l.present[wd] = true
		l.addWatch(wd, now) // before listing, so nothing created after the listing is missed
		entries, err := os.ReadDir(wd)
		if err != nil {
			l.log.Warn().Err(err).Str("dir", wd).Msg("cannot list watched directory")
			continue
		}
		found := map[string]bool{}
		for _, e := range entries {
			step, ok := ParseStep(e.Name())
			if !ok {
				continue
			}
			dir := filepath.Join(wd, e.Name())
			if !e.IsDir() {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() { // a symlink to a dir is fine
					continue
				}
			}
			found[dir] = true
			if l.emitted[dir] {
				continue
			}
			if c := l.cands[dir]; c != nil {
				if all {
					c.schedule(now)
				}
				continue
			}
			if seen := l.w.opts.Seen; seen != nil && seen(Event{WatchDir: wd, Dir: dir, Step: step}) {
				l.emitted[dir] = true
				l.log.Debug().Str("checkpoint", dir).Msg("checkpoint already handled; ignoring it")
				continue
			}
			l.log.Info().Str("checkpoint", dir).Int64("step", step).Msg("found checkpoint")
			c := &candidate{watchDir: wd, dir: dir, step: step, reason: "not examined yet"}
			c.schedule(now)
			l.cands[dir] = c
		}
		l.forgetCandidates(wd, found)
	}
	if l.w.opts.Poll > 0 {
		l.scheduleRescan(now.Add(l.w.opts.Poll), true)
	} else if l.degraded {
		l.scheduleRescan(now.Add(l.w.opts.FallbackPoll), true)
	}
	l.reconcileWatches(now)
}

// forgetCandidates drops the pending checkpoints of wd that are not in keep (nil: all of them).
func (l *loop) forgetCandidates(wd string, keep map[string]bool) {
	for dir, c := range l.cands {
		if c.watchDir == wd && !keep[dir] {
			l.log.Info().Str("checkpoint", dir).Msg("checkpoint disappeared before it was complete (rotated or renamed)")
			delete(l.cands, dir)
		}
	}
}

// examine checks one pending checkpoint and returns its event when it is complete.
func (l *loop) examine(c *candidate, now time.Time) (Event, bool) {
	opts := &l.w.opts
	comp, err := Check(c.dir, CheckOptions{Marker: opts.Marker})
	if err != nil {
		if isNotExist(err) {
			l.log.Info().Str("checkpoint", c.dir).Msg("checkpoint disappeared before it was complete (rotated or renamed)")
			delete(l.cands, c.dir)
			return Event{}, false
		}
		l.setReason(c, err.Error())
		c.schedule(now.Add(opts.Recheck))
		return Event{}, false
	}
	if comp.ByMarker {
		return l.emit(c, comp, now)
	}
	changed := !c.checked || !sameFiles(c.files, comp.Files)
	if changed {
		// The content is known to be this from the end of the check on: a write that landed while Check ran
		// (after now was taken) must not count towards the settle period.
		c.files, c.stableSince, c.checked = comp.Files, time.Now(), true
	}
	if !comp.Complete {
		l.setReason(c, comp.Reason)
		if opts.Poll == 0 {
			c.schedule(now.Add(opts.Recheck))
		}
		return Event{}, false
	}
	if !changed && now.Sub(c.stableSince) >= opts.Settle {
		return l.emit(c, comp, now)
	}
	l.setReason(c, fmt.Sprintf("content complete; waiting until it is unchanged for %s", opts.Settle))
	c.schedule(c.stableSince.Add(opts.Settle))
	return Event{}, false
}

func (l *loop) setReason(c *candidate, reason string) {
	if reason != c.reason {
		l.log.Debug().Str("checkpoint", c.dir).Str("reason", reason).Msg("checkpoint not complete yet")
		c.reason = reason
	}
}

func (l *loop) emit(c *candidate, comp Completeness, now time.Time) (Event, bool) {
	delete(l.cands, c.dir)
	l.emitted[c.dir] = true
	ev := Event{WatchDir: c.watchDir, Dir: c.dir, Step: c.step, ByMarker: comp.ByMarker, Files: comp.Files, At: now}
	if seen := l.w.opts.Seen; seen != nil && seen(Event{WatchDir: c.watchDir, Dir: c.dir, Step: c.step}) {
		l.log.Debug().Str("checkpoint", c.dir).Msg("checkpoint handled meanwhile; not sending it")
		return Event{}, false
	}
	how := "content checks and settle period"
	if comp.ByMarker {
		how = "marker"
	}
	l.log.Info().Str("checkpoint", c.dir).Int64("step", c.step).Int("files", len(comp.Files)).
		Int64("bytes", totalSize(comp.Files)).Str("by", how).Msg("checkpoint complete")
	l.sent++
	return ev, true
}

// reconcileWatches makes the fsnotify watch set equal to what is needed: the existing watched dirs, the pending
// checkpoint dirs and, for each watched dir that does not exist, its nearest existing ancestor.
func (l *loop) reconcileWatches(now time.Time) {
	if l.fw == nil {
		return
	}
	want := map[string]bool{}
	for _, d := range l.w.dirs {
		if l.present[d] {
			want[d] = true
		} else if a, ok := existingAncestor(d); ok {
			want[a] = true
		}
	}
	for d := range l.cands {
		want[d] = true
	}
	for p := range l.watched {
		if !want[p] {
			_ = l.fw.Remove(p) // fails harmlessly when the kernel already dropped the watch of a deleted dir
			delete(l.watched, p)
		}
	}
	added := false
	for p := range want {
		if !l.watched[p] {
			if l.addWatch(p, now) && !l.isWatch[p] && l.cands[p] == nil {
				added = true
			}
		}
	}
	if added {
		// A new ancestor watch: whatever was created below it before the watch existed raised no event.
		l.scheduleRescan(now, false)
	}
}

// addWatch adds an fsnotify watch on p if it has none; it reports whether one was added.
func (l *loop) addWatch(p string, now time.Time) bool {
	if l.fw == nil || l.watched[p] {
		return false
	}
	if err := l.fw.Add(p); err != nil {
		if isNotExist(err) {
			l.scheduleRescan(now.Add(l.w.opts.Debounce), false)
			return false
		}
		if !l.degraded {
			l.log.Warn().Err(err).Str("dir", p).Stringer("every", l.w.opts.FallbackPoll).
				Msg("cannot watch directory (raise fs.inotify.max_user_watches or use polling); rescanning periodically")
			l.degraded = true
			l.scheduleRescan(now.Add(l.w.opts.FallbackPoll), true)
		}
		return false
	}
	l.watched[p] = true
	return true
}

// existingAncestor returns the nearest existing directory above p.
func existingAncestor(p string) (string, bool) {
	for {
		parent := filepath.Dir(p)
		if parent == p {
			return "", false
		}
		p = parent
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, true
		}
	}
}

// publishStatus copies the loop's state for Status.
func (l *loop) publishStatus() {
	s := Status{Emitted: l.sent, Degraded: l.degraded}
	for _, d := range l.w.dirs {
		if l.present[d] {
			s.Watching = append(s.Watching, d)
		} else {
			s.Missing = append(s.Missing, d)
		}
	}
	for _, c := range l.cands {
		s.Pending = append(s.Pending, Pending{WatchDir: c.watchDir, Dir: c.dir, Step: c.step, Reason: c.reason, Since: c.stableSince})
	}
	sort.Slice(s.Pending, func(i, j int) bool {
		return lessDirStep(s.Pending[i].WatchDir, s.Pending[i].Step, s.Pending[j].WatchDir, s.Pending[j].Step)
	})
	l.w.mu.Lock()
	l.w.status = s
	l.w.mu.Unlock()
}
