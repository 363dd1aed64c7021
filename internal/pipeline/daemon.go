package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/watcher"
)

// Defaults for Options.
const (
	DefaultBackoff          = 10 * time.Second
	DefaultMaxBackoff       = 10 * time.Minute
	DefaultProgressInterval = 2 * time.Second
	DefaultStatusInterval   = 5 * time.Second
)

// Hook points that are not journal stages (StageEvent.Point).
const (
	// PointCommitLanded: a destination's commit exists on the Hub (made now, or found by its id), and the journal
	// does not say so yet. Stopping the daemon here is the "killed between commit and journal" case.
	PointCommitLanded = "commit-landed"
	// PointRetry: a transient error was recorded (StageEvent.Err); the job will be tried again after a backoff.
	PointRetry = "retry"
)

// StageEvent reports a job's progress to Options.Hook.
type StageEvent struct {
	// Point is the journal stage the job just entered (durably recorded: "detected", "pinned", "merged",
	// "uploading", "committed", "failed", "skipped") or PointCommitLanded / PointRetry.
	Point string
	// Job is a copy of the job's record.
	Job journal.Job
	// Err is the error of a retry or failure.
	Err error
}

// Options tune a Daemon. The zero value is the production behaviour.
type Options struct {
	// MaxAttempts, when > 0, bounds the attempts at one stage of a job after fixable errors; the job then fails
	// with the last error as its reason. 0 (the production behaviour): a fixable error is retried indefinitely,
	// so no checkpoint is lost to a bad token, the network or a full disk (requests retry inside the Hub
	// client; this layer only waits between attempts and decides permanent or fixable).
	MaxAttempts int
	// Backoff is the wait before the second attempt, doubled for each further one up to MaxBackoff
	// (0: DefaultBackoff, DefaultMaxBackoff).
	Backoff, MaxBackoff time.Duration
	// ProgressInterval is how often upload progress is written to the journal (0: DefaultProgressInterval).
	ProgressInterval time.Duration
	// StatusInterval is how often the systemd STATUS= line is refreshed with upload progress
	// (0: DefaultStatusInterval).
	StatusInterval time.Duration
	// Hook, when set, is called synchronously at every stage transition (tests; the demo's progress). A hook
	// that blocks holds that stage's worker.
	Hook func(StageEvent)
	// StopAfter > 0 makes Run return nil once the journal holds that many finished jobs (committed, failed or
	// skipped) of the watched directories, in this run or earlier ones, and nothing is queued or in progress.
	StopAfter int
	// Locks are directory locks the caller already holds (the CLI takes them before opening the journal so that
	// a second daemon reports the lock holder); Run takes the missing ones and releases only those.
	Locks []*watcher.DirLock
	// Debounce is the watcher's debounce (0: watcher.DefaultDebounce, never more than the settle period).
	Debounce time.Duration
}

// Daemon watches the configured directories and publishes every complete checkpoint (DESIGN.md, Daemon).
type Daemon struct {
	cfg     *config.Config
	env     Env
	opts    Options
	log     zerolog.Logger
	watches map[string]*watchEntry

	mu        sync.Mutex
	mergeQ    []*task
	uploadQ   []*task
	merging   *task
	uploading *task
	upProg    *progress
	finished  int
	counts    map[journal.Stage]int
	finishCh  chan struct{} // closed and replaced whenever a job finishes
	started   bool
	done      chan struct{} // closed when Run returns

	wakeMerge  chan struct{}
	wakeUpload chan struct{}
	changed    chan struct{}
}

// watchEntry is one watched directory.
type watchEntry struct {
	w       config.Watch
	target  Target
	staging string
}

// task is a job in a queue or a worker.
type task struct {
	id    string
	watch *watchEntry
	step  int64
	// files is the checkpoint's content when it was found complete (nil after a restart).
	files []watcher.FileInfo
}

// progress is the upload progress of the job being uploaded.
type progress struct {
	mu    sync.Mutex
	done  map[string]int64
	total map[string]int64
}

// ErrStopped is returned by WaitFinished when Run has returned.
var ErrStopped = errors.New("pipeline: the daemon stopped")

// NewDaemon prepares a daemon for cfg (resolved and validated: config.Config.Resolve, Validate). env needs
// Client and Journal. Nothing starts until Run.
func NewDaemon(cfg *config.Config, env Env, opts Options) (*Daemon, error) {
	if env.Client == nil || env.Journal == nil {
		return nil, errors.New("pipeline: the daemon needs a Hub client and a journal")
	}
	if len(cfg.Watch) == 0 {
		return nil, errors.New("pipeline: no watched directories")
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = opts.Backoff
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = DefaultProgressInterval
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	d := &Daemon{
		cfg: cfg, env: env, opts: opts, log: env.Log, watches: map[string]*watchEntry{},
		counts: map[journal.Stage]int{}, finishCh: make(chan struct{}), done: make(chan struct{}),
		wakeMerge: make(chan struct{}, 1), wakeUpload: make(chan struct{}, 1), changed: make(chan struct{}, 1),
	}
	for _, w := range cfg.Watch {
		if !filepath.IsAbs(w.Dir) {
			return nil, fmt.Errorf("pipeline: watch dir %q is not absolute (call config Resolve first)", w.Dir)
		}
		t, err := TargetFromWatch(w, cfg.Device)
		if err != nil {
			return nil, err
		}
		dir := filepath.Clean(w.Dir)
		d.watches[dir] = &watchEntry{w: w, target: t, staging: cfg.StagingFor(w)}
	}
	return d, nil
}

// Finished returns the number of jobs that finished (committed, failed or skipped) since Run started.
func (d *Daemon) Finished() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.finished
}

// WaitFinished blocks until at least n jobs have finished since Run started, Run returned (ErrStopped), or ctx
// ends.
func (d *Daemon) WaitFinished(ctx context.Context, n int) error {
	for {
		d.mu.Lock()
		f, ch := d.finished, d.finishCh
		d.mu.Unlock()
		if f >= n {
			return nil
		}
		select {
		case <-ch:
		case <-d.done:
			d.mu.Lock()
			f = d.finished
			d.mu.Unlock()
			if f >= n {
				return nil
			}
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Idle reports whether no job is queued or in progress.
func (d *Daemon) Idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idleLocked()
}

func (d *Daemon) idleLocked() bool {
	return len(d.mergeQ) == 0 && len(d.uploadQ) == 0 && d.merging == nil && d.uploading == nil
}

// Run locks the watched directories, resumes the journal's unfinished jobs, then watches for new checkpoints
// and publishes them, until ctx is cancelled (it then parks the work in progress: the journal and the Hub
// client's part journal keep what is done, and returns nil) or Options.StopAfter jobs have finished. It fails
// when a directory is locked by another daemon (an error matching watcher.ErrLocked, naming the holder), or a
// lock is lost to another host. Run may be called once.
func (d *Daemon) Run(ctx context.Context) (err error) {
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return errors.New("pipeline: Run called twice")
	}
	d.started = true
	d.mu.Unlock()
	defer close(d.done)

	locks, release, err := d.lockAll()
	if err != nil {
		return err
	}
	defer release()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if err := d.cleanStaging(rctx); err != nil {
		d.log.Warn().Err(err).Msg("cleaning old staging directories")
	}
	d.applyRetries(rctx, false) // requests that arrived as the last daemon stopped; resume queues them
	if err := d.resume(rctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	dirs := make([]string, 0, len(d.watches))
	for dir := range d.watches {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	w, err := watcher.New(watcher.Options{
		Dirs: dirs, Poll: d.cfg.Poll, Settle: d.cfg.Settle, Marker: d.cfg.Marker, Debounce: d.opts.Debounce,
		Seen: d.seen, Log: d.log.With().Str("component", "watcher").Logger(),
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	watchErr := make(chan error, 1)
	wg.Add(3)
	go func() { defer wg.Done(); watchErr <- w.Run(rctx) }()
	go func() { defer wg.Done(); d.mergeWorker(rctx) }()
	go func() { defer wg.Done(); d.uploadWorker(rctx) }()
	if d.cfg.MetricsAddr != "" && d.env.Metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.env.Metrics.Serve(rctx, d.cfg.MetricsAddr, d.cfg.MetricsAllowRemote); err != nil {
				d.log.Error().Err(err).Msg("metrics server")
			}
		}()
	}
	defer func() {
		d.notify(notifyStopping)
		d.notify("STATUS=stopping: parking the work in progress")
		cancel()
		wg.Wait()
		d.log.Info().Msg("stopped")
	}()

	d.log.Info().Strs("dirs", dirs).Str("policy", d.cfg.Policy).Str("journal", d.cfg.JournalPath()).Msg("watching")
	d.notify(notifyReady)
	lastStatus := ""
	sendStatus := func() {
		d.publishSettling(w)
		if s := d.statusLine(w); s != lastStatus {
			lastStatus = s
			d.notify("STATUS=" + s)
		}
	}
	sendStatus()

	var wdC <-chan time.Time
	if d.env.Notify != nil {
		if iv := d.env.Notify.WatchdogInterval(); iv > 0 {
			t := time.NewTicker(iv / 2)
			defer t.Stop()
			wdC = t.C
		}
	}
	statusT := time.NewTicker(d.opts.StatusInterval)
	defer statusT.Stop()
	var lost <-chan struct{}
	lostAny := make(chan struct{})
	for _, l := range locks {
		go func(l *watcher.DirLock) {
			select {
			case <-l.Lost():
				select {
				case lostAny <- struct{}{}:
				case <-rctx.Done():
				}
			case <-rctx.Done():
			}
		}(l)
	}
	lost = lostAny
	events := w.Events()
	for {
		select {
		case <-rctx.Done():
			return nil
		case err := <-watchErr:
			if err != nil {
				return fmt.Errorf("watcher: %w", err)
			}
			return nil
		case <-lost:
			return errors.New("pipeline: a directory lock was taken over by another daemon; stopping")
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			d.detected(rctx, ev)
			sendStatus()
		case <-d.changed:
			sendStatus()
			if d.opts.StopAfter > 0 {
				d.mu.Lock()
				idle := d.idleLocked()
				d.mu.Unlock()
				if idle && d.finishedInJournal(rctx) >= d.opts.StopAfter {
					d.log.Info().Int("finished", d.opts.StopAfter).Msg("stop-after reached")
					return nil
				}
			}
		case <-statusT.C:
			d.applyRetries(rctx, true)
			sendStatus()
		case <-wdC:
			// This loop is the daemon's heartbeat: a wedged loop stops pinging and systemd restarts us.
			d.notify(notifyWatchdog)
		}
	}
}

// finishedInJournal counts the journal's finished jobs of the watched directories (-1 when unreadable).
func (d *Daemon) finishedInJournal(ctx context.Context) int {
	jobs, err := d.env.Journal.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("reading the journal")
		}
		return -1
	}
	n := 0
	for _, j := range jobs {
		if _, ok := d.watches[filepath.Clean(j.WatchDir)]; ok && j.Stage.Final() {
			n++
		}
	}
	return n
}

// lockAll takes the lock of every watched directory not already locked by the caller.
func (d *Daemon) lockAll() ([]*watcher.DirLock, func(), error) {
	held := map[string]*watcher.DirLock{}
	for _, l := range d.opts.Locks {
		held[filepath.Dir(l.Path())] = l
	}
	var all, mine []*watcher.DirLock
	release := func() {
		for _, l := range mine {
			if err := l.Unlock(); err != nil {
				d.log.Warn().Err(err).Str("lock", l.Path()).Msg("unlock")
			}
		}
	}
	for _, dir := range sortedKeys(d.watches) {
		if l, ok := held[dir]; ok {
			all = append(all, l)
			continue
		}
		l, err := LockDir(dir, d.cfg, d.log)
		if err != nil {
			release()
			return nil, nil, err
		}
		mine = append(mine, l)
		all = append(all, l)
	}
	return all, release, nil
}

// LockDir takes the one-daemon-per-directory lock of a watched directory (creating the directory), with the
// configuration's heartbeat and stale timeout. A live holder makes it fail with an error naming the holder
// (errors.Is(err, watcher.ErrLocked)).
func LockDir(dir string, cfg *config.Config, log zerolog.Logger) (*watcher.DirLock, error) {
	l, err := watcher.Lock(dir, watcher.LockOptions{Heartbeat: cfg.Lock.Heartbeat, StaleAfter: cfg.Lock.StaleAfter,
		CreateDir: true, Log: log})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return l, nil
}

// seen tells the watcher which checkpoints the journal already has (never examined nor sent again).
// A journal read error counts as seen: the checkpoint is left alone rather than taken for a new one.
func (d *Daemon) seen(ev watcher.Event) bool {
	_, err := d.env.Journal.Get(context.Background(), journal.JobID(ev.WatchDir, ev.Step))
	if err != nil && !errors.Is(err, journal.ErrNotFound) {
		d.log.Error().Err(err).Str("job", journal.JobID(ev.WatchDir, ev.Step)).
			Msg("cannot read the job from the journal; the checkpoint is left alone")
	}
	return !errors.Is(err, journal.ErrNotFound)
}

// detected records a new complete checkpoint and queues it.
func (d *Daemon) detected(ctx context.Context, ev watcher.Event) {
	we := d.watches[filepath.Clean(ev.WatchDir)]
	if we == nil {
		d.log.Warn().Str("dir", ev.Dir).Msg("checkpoint in a directory that is not watched; ignored")
		return
	}
	id := journal.JobID(ev.WatchDir, ev.Step)
	if _, err := d.env.Journal.Get(ctx, id); !errors.Is(err, journal.ErrNotFound) {
		if err != nil && ctx.Err() == nil {
			d.log.Error().Err(err).Str("job", id).Msg("cannot read the job from the journal; the checkpoint is left alone")
		}
		return
	}
	job := &journal.Job{WatchDir: ev.WatchDir, Step: ev.Step, Dir: ev.Dir, Target: we.target.journalTarget()}
	job.SetStage(journal.Detected, d.env.now())
	if err := d.env.Journal.Put(ctx, job); err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Str("job", id).Msg("cannot record the checkpoint in the journal; it will be found again after a restart")
		}
		return
	}
	if m := d.env.Metrics; m != nil {
		m.CheckpointsSeen.Inc()
	}
	d.log.Info().Str("checkpoint", ev.Dir).Int64("step", ev.Step).Bool("marker", ev.ByMarker).Msg("checkpoint complete")
	d.hook(journal.Detected, job, nil)
	d.enqueueMerge(&task{id: id, watch: we, step: ev.Step, files: ev.Files}, false)
}

// resume queues the journal's unfinished jobs, in step order per directory, before anything new.
func (d *Daemon) resume(ctx context.Context) error {
	jobs, err := d.env.Journal.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	for _, job := range jobs {
		we := d.watches[filepath.Clean(job.WatchDir)]
		if we == nil {
			d.log.Warn().Str("job", job.ID()).Str("stage", string(job.Stage)).
				Msg("unfinished job of a directory that is no longer watched; left as it is")
			continue
		}
		t := &task{id: job.ID(), watch: we, step: job.Step}
		d.log.Info().Str("job", job.ID()).Str("stage", string(job.Stage)).Msg("resuming an unfinished job")
		switch job.Stage {
		case journal.Merged, journal.Uploading:
			d.mu.Lock()
			d.uploadQ = append(d.uploadQ, t)
			d.mu.Unlock()
		default:
			d.enqueueMerge(t, false)
		}
	}
	d.queueChanged()
	return nil
}

// cleanStaging removes the staging directories of jobs that are finished (or unknown) from every watched
// directory's staging area; those of unfinished jobs are kept for resuming.
func (d *Daemon) cleanStaging(ctx context.Context) error {
	var errs []error
	for dir, we := range d.watches {
		ents, err := os.ReadDir(we.staging)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range ents {
			name := strings.TrimSuffix(e.Name(), partialSuffix)
			step, ok := watcher.ParseStep(name)
			if !ok {
				continue
			}
			job, err := d.env.Journal.Get(ctx, journal.JobID(dir, step))
			switch {
			case err != nil && !errors.Is(err, journal.ErrNotFound):
				// Unreadable (say, a record of a newer hubsync): its staging may be pinned; keep it.
				errs = append(errs, fmt.Errorf("keeping %s: %w", filepath.Join(we.staging, e.Name()), err))
				continue
			case err == nil && !job.Stage.Final() && e.Name() == name:
				continue
			}
			p := filepath.Join(we.staging, e.Name())
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			} else {
				d.log.Debug().Str("dir", p).Msg("removed a finished job's staging directory")
			}
		}
	}
	return errors.Join(errs...)
}

// enqueueMerge appends t to the merge queue (front: first).
func (d *Daemon) enqueueMerge(t *task, front bool) {
	d.mu.Lock()
	if front {
		d.mergeQ = append([]*task{t}, d.mergeQ...)
	} else {
		d.mergeQ = append(d.mergeQ, t)
	}
	d.mu.Unlock()
	d.queueChanged()
}

// queueChanged wakes the workers and the main loop, and updates the queue gauge.
func (d *Daemon) queueChanged() {
	d.mu.Lock()
	n := len(d.mergeQ) + len(d.uploadQ)
	if d.merging != nil {
		n++
	}
	if d.uploading != nil {
		n++
	}
	d.mu.Unlock()
	if m := d.env.Metrics; m != nil {
		m.QueueLength.Set(float64(n))
	}
	for _, ch := range []chan struct{}{d.wakeMerge, d.wakeUpload, d.changed} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// jobFinished counts a finished job and wakes WaitFinished callers.
func (d *Daemon) jobFinished(stage journal.Stage) {
	d.mu.Lock()
	d.finished++
	d.counts[stage]++
	close(d.finishCh)
	d.finishCh = make(chan struct{})
	d.mu.Unlock()
	d.queueChanged()
}

// hook calls Options.Hook.
func (d *Daemon) hook(point journal.Stage, job *journal.Job, err error) {
	d.hookPoint(string(point), job, err)
}

func (d *Daemon) hookPoint(point string, job *journal.Job, err error) {
	if d.opts.Hook != nil && job != nil {
		d.opts.Hook(StageEvent{Point: point, Job: *job, Err: err})
	}
}

func (d *Daemon) notify(state string) {
	if d.env.Notify == nil {
		return
	}
	if err := d.env.Notify.Notify(state); err != nil {
		d.log.Debug().Err(err).Msg("sd_notify")
	}
}

// publishSettling puts the watcher's checkpoints in their settle period into the status snapshot.
func (d *Daemon) publishSettling(w *watcher.Watcher) {
	if w == nil {
		return
	}
	var out []journal.Settling
	for _, p := range w.Status().Pending {
		if p.Since.IsZero() || !strings.HasPrefix(p.Reason, "content complete") {
			continue // not complete yet: still being written
		}
		out = append(out, journal.Settling{WatchDir: p.WatchDir, Step: p.Step, Dir: p.Dir,
			Complete: p.Since.Add(d.cfg.Settle).UTC()})
	}
	d.env.Journal.SetSettling(out)
}

// statusLine says what the daemon is doing, for systemd's STATUS=.
func (d *Daemon) statusLine(w *watcher.Watcher) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var parts []string
	if d.merging != nil {
		parts = append(parts, fmt.Sprintf("merging checkpoint-%d of %s", d.merging.step, d.merging.watch.w.Dir))
	}
	if d.uploading != nil {
		s := fmt.Sprintf("uploading checkpoint-%d to %s", d.uploading.step, d.uploading.watch.target.Repo)
		if p := d.upProg; p != nil {
			done, total := p.sum()
			switch {
			case total > 0 && done >= total:
				s += " (completing upload)"
			case total > 0:
				s += fmt.Sprintf(" (%d%%)", done*100/total)
			}
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		pending := 0
		if w != nil {
			pending = len(w.Status().Pending)
		}
		s := fmt.Sprintf("watching %d dir(s), idle", len(d.watches))
		if pending > 0 {
			s = fmt.Sprintf("watching %d dir(s), %d checkpoint(s) being written", len(d.watches), pending)
		}
		parts = append(parts, s)
	}
	if q := len(d.mergeQ) + len(d.uploadQ); q > 0 {
		parts = append(parts, strconv.Itoa(q)+" queued")
	}
	parts = append(parts, fmt.Sprintf("%d published, %d failed, %d skipped", d.counts[journal.Committed],
		d.counts[journal.Failed], d.counts[journal.Skipped]))
	return strings.Join(parts, "; ")
}

func (p *progress) sum() (done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.done {
		done += v
	}
	for _, v := range p.total {
		total += v
	}
	return done, total
}

// backoff is the wait before attempt n+1 (n ≥ 1 attempts made).
func (d *Daemon) backoff(n int) time.Duration {
	b := d.opts.Backoff
	for i := 1; i < n && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.opts.MaxBackoff)
}
