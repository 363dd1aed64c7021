package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/timing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/metrics"
	"github.com/hubsync/hubsync/merge"
)

// errOutputsGone reports that a merged job's staged outputs are missing; the job is merged again.
var errOutputsGone = errors.New("staged outputs missing")

// mergeWorker pins and merges queued jobs one at a time, keeping at most one merged job waiting for the upload
// worker (so the upload of one checkpoint overlaps the merge of the next, and disk use stays bounded).
func (d *Daemon) mergeWorker(ctx context.Context) {
	for {
		t := d.nextMerge(ctx)
		if t == nil {
			return
		}
		ok := d.runStage(ctx, t, d.mergeJob)
		d.mu.Lock()
		d.merging = nil
		if ok {
			d.uploadQ = append(d.uploadQ, t)
		}
		d.mu.Unlock()
		d.queueChanged()
	}
}

// uploadWorker uploads and commits merged jobs in order.
func (d *Daemon) uploadWorker(ctx context.Context) {
	for {
		t := d.nextUpload(ctx)
		if t == nil {
			return
		}
		d.runStage(ctx, t, d.uploadJob)
		d.mu.Lock()
		d.uploading = nil
		d.upProg = nil
		d.mu.Unlock()
		d.queueChanged()
	}
}

// nextMerge waits for a job to merge; with policy latest it skips queued jobs that a newer queued checkpoint of
// the same directory supersedes. nil when ctx ends.
func (d *Daemon) nextMerge(ctx context.Context) *task {
	for {
		d.mu.Lock()
		if len(d.mergeQ) > 0 && len(d.uploadQ) == 0 {
			t := d.mergeQ[0]
			d.mergeQ = d.mergeQ[1:]
			var newer int64 = -1
			if d.cfg.Policy == config.PolicyLatest {
				for _, o := range d.mergeQ {
					if o.watch == t.watch && o.step > t.step && o.step > newer {
						newer = o.step
					}
				}
			}
			if newer < 0 {
				d.merging = t
			}
			d.mu.Unlock()
			if newer >= 0 {
				d.skip(ctx, t, newer)
				continue
			}
			d.queueChanged()
			return t
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-d.wakeMerge:
		}
	}
}

// nextUpload waits for a merged job. nil when ctx ends.
func (d *Daemon) nextUpload(ctx context.Context) *task {
	for {
		d.mu.Lock()
		if len(d.uploadQ) > 0 {
			t := d.uploadQ[0]
			d.uploadQ = d.uploadQ[1:]
			d.uploading = t
			d.mu.Unlock()
			d.queueChanged()
			return t
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-d.wakeUpload:
		}
	}
}

// skip records a job as superseded (policy latest).
func (d *Daemon) skip(ctx context.Context, t *task, newer int64) {
	why := fmt.Sprintf("superseded by step %d (policy latest)", newer)
	job, err := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
		if j.Stage.Final() {
			return nil
		}
		j.Skip(why, d.env.now())
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Str("job", t.id).Msg("cannot record a skipped checkpoint")
		}
		return
	}
	d.removeStaging(t)
	d.log.Warn().Str("job", t.id).Int64("step", t.step).Int64("newer", newer).Msg("skipping checkpoint: " + why)
	if m := d.env.Metrics; m != nil {
		m.CheckpointsSkipped.Inc()
	}
	d.hook(journal.Skipped, job, nil)
	d.jobFinished(journal.Skipped)
}

// runStage runs fn for the job until it succeeds, fails permanently, or runs out of attempts, recording
// transient errors in the journal and backing off between attempts. It returns true when fn succeeded and the
// job goes on to the next worker. A cancelled ctx parks the job as it is.
func (d *Daemon) runStage(ctx context.Context, t *task, fn func(context.Context, *task, *journal.Job) error) bool {
	for {
		job, err := d.env.Journal.Get(ctx, t.id)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error().Err(err).Str("job", t.id).Msg("reading the job")
			}
			return false
		}
		if job.Stage.Final() {
			return false
		}
		err = fn(ctx, t, job)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			d.log.Info().Str("job", t.id).Msg("stopping: the job is parked and resumes at the next start")
			return false
		}
		err = diskFull(err, t.stagingDir()) // name the file system that is full
		if errors.Is(err, errOutputsGone) {
			// Merge again: back to the merge queue, first.
			d.log.Warn().Err(err).Str("job", t.id).Msg("merging again")
			d.enqueueMerge(t, true)
			return false
		}
		if IsPermanent(err, d.env.Client.Endpoint()) {
			d.fail(ctx, t, err.Error(), err)
			return false
		}
		var attempts int
		if cur, gerr := d.env.Journal.Get(ctx, t.id); gerr == nil {
			attempts = cur.Attempts + 1
		}
		if d.opts.MaxAttempts > 0 && attempts >= d.opts.MaxAttempts {
			if _, uerr := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error { j.Attempts = attempts; return nil }); uerr != nil && ctx.Err() != nil {
				return false
			}
			d.fail(ctx, t, fmt.Sprintf("gave up after %d attempts: %s", attempts, reason(err)), err)
			return false
		}
		wait := d.backoff(max(attempts, 1))
		var rl *hub.RateLimitError
		if errors.As(err, &rl) && rl.RetryAfter > wait {
			wait = min(rl.RetryAfter, d.opts.MaxBackoff)
		}
		next := d.env.now().Add(wait)
		job, uerr := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
			j.Attempts++
			j.LastError = reason(errors.New(t.unstage(err.Error(), j.Dir)))
			j.NextAttempt = next.UTC()
			return nil
		})
		if uerr != nil {
			if ctx.Err() != nil {
				return false
			}
			d.log.Error().Err(uerr).Str("job", t.id).Msg("cannot record the error in the journal")
			if serr := timing.Sleep(ctx, d.backoff(1)); serr != nil {
				return false
			}
			continue
		}
		d.log.Warn().Err(err).Str("job", t.id).Str("stage", string(job.Stage)).Int("attempt", job.Attempts).
			Str("retry_in", wait.String()).Time("next_attempt", next).Msg("fixable error; waiting, then trying again")
		d.hookPoint(PointRetry, job, err)
		if serr := timing.Sleep(ctx, wait); serr != nil {
			return false
		}
	}
}

// fail records a permanent failure.
func (d *Daemon) fail(ctx context.Context, t *task, why string, cause error) {
	job, err := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
		j.Fail(reason(errors.New(t.unstage(why, j.Dir))), d.env.now())
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Str("job", t.id).Msg("cannot record the failure in the journal")
		}
		return
	}
	d.removeStaging(t)
	d.log.Error().Str("job", t.id).Int64("step", t.step).Str("reason", job.Reason).Msg("checkpoint failed")
	if m := d.env.Metrics; m != nil {
		m.CheckpointsFailed.Inc()
	}
	d.hook(journal.Failed, job, cause)
	d.jobFinished(journal.Failed)
}

// stagingDir is a job's staging directory.
func (t *task) stagingDir() string {
	return filepath.Join(t.watch.staging, "checkpoint-"+strconv.FormatInt(t.step, 10))
}

// pinDir is where the checkpoint is pinned: named like the checkpoint, so cards name it.
func (t *task) pinDir() string {
	return filepath.Join(t.stagingDir(), "checkpoint-"+strconv.FormatInt(t.step, 10))
}

// unstage makes a message name the checkpoint's own path rather than its pinned copy in the staging directory.
func (t *task) unstage(msg, checkpointDir string) string {
	if checkpointDir == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, " into "+t.pinDir(), "")
	return strings.ReplaceAll(msg, t.pinDir(), checkpointDir)
}

func (d *Daemon) removeStaging(t *task) {
	dir := t.stagingDir()
	if err := os.RemoveAll(dir); err != nil {
		d.log.Warn().Err(err).Str("dir", dir).Msg("removing the staging directory")
	}
	_ = os.RemoveAll(dir + partialSuffix)
}

// update stores fn's change and reports the new stage to the hook.
func (d *Daemon) update(ctx context.Context, t *task, fn func(*journal.Job)) (*journal.Job, error) {
	job, err := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error { fn(j); return nil })
	if err != nil {
		return nil, err
	}
	d.hook(job.Stage, job, nil)
	return job, nil
}

// mergeJob takes a job from detected (pin) or pinned (merge) to merged.
func (d *Daemon) mergeJob(ctx context.Context, t *task, job *journal.Job) error {
	log := d.log.With().Str("job", t.id).Int64("step", t.step).Logger()
	if job.Stage == journal.Detected {
		// A fresh pin: whatever an interrupted attempt left is replaced.
		staging := t.stagingDir()
		if err := os.RemoveAll(staging); err != nil {
			return err
		}
		if err := os.MkdirAll(staging, 0o755); err != nil {
			return err
		}
		p, err := pin(ctx, job.Dir, t.pinDir(), t.files, log)
		if err != nil {
			return err
		}
		log.Info().Int("linked", p.Linked).Int("copied", p.Copied).Int64("bytes", p.Bytes).Msg("pinned")
		if job, err = d.update(ctx, t, func(j *journal.Job) {
			j.SetStage(journal.Pinned, d.env.now())
			j.StagingDir = staging
			j.Attempts = 0
		}); err != nil {
			return err
		}
	}
	if job.Stage != journal.Pinned {
		return fmt.Errorf("job %s: unexpected stage %s for merging", t.id, job.Stage)
	}
	// Merge again into a fresh directory: anything but the pin is an interrupted attempt's.
	ents, err := os.ReadDir(job.StagingDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return d.repin(ctx, t, "the pinned checkpoint is gone")
		}
		return err
	}
	pinName := filepath.Base(t.pinDir())
	hasPin := false
	for _, e := range ents {
		if e.Name() == pinName {
			hasPin = true
			continue
		}
		if err := os.RemoveAll(filepath.Join(job.StagingDir, e.Name())); err != nil {
			return err
		}
	}
	if !hasPin {
		return d.repin(ctx, t, "the pinned checkpoint is gone")
	}
	if _, err := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error { j.Activity = "merging"; return nil }); err != nil {
		return err
	}
	start := d.env.now()
	sets, err := prepare(ctx, &d.env, prepareOptions{
		Src: t.pinDir(), Name: filepath.Base(job.Dir), Step: t.step, Staging: job.StagingDir,
		Target: &t.watch.target, Log: log,
	})
	if err != nil {
		return err
	}
	// The upload stage re-opens what it needs from the journal (a produced shard's plan included).
	closeSets(sets)
	if m := d.env.Metrics; m != nil {
		m.MergeDuration.Observe(since(d.env.now, start))
	}
	outs := journalOutputs(sets)
	var total int64
	for _, o := range outs {
		total += o.Size
	}
	_, err = d.update(ctx, t, func(j *journal.Job) {
		j.SetStage(journal.Merged, d.env.now())
		j.Outputs = outs
		j.Progress = journal.Progress{BytesTotal: total, FilesTotal: len(outs)}
		j.Attempts = 0
	})
	if err == nil {
		log.Info().Int("files", len(outs)).Int64("bytes", total).Stringer("took", d.env.now().Sub(start).Round(time.Millisecond)).Msg("outputs ready")
	}
	return err
}

// repin sends a job whose pin vanished back to detected (pinned again from the checkpoint, if it still exists).
func (d *Daemon) repin(ctx context.Context, t *task, why string) error {
	d.log.Warn().Str("job", t.id).Msg(why + "; pinning again")
	if _, err := d.update(ctx, t, func(j *journal.Job) { j.SetStage(journal.Detected, d.env.now()) }); err != nil {
		return err
	}
	t.files = nil
	job, err := d.env.Journal.Get(ctx, t.id)
	if err != nil {
		return err
	}
	return d.mergeJob(ctx, t, job)
}

// uploadJob takes a job from merged (or uploading) to committed: every destination's commit (or, for a job that
// was uploading before, the commit found by its id), tags, pruning.
func (d *Daemon) uploadJob(ctx context.Context, t *task, job *journal.Job) error {
	log := d.log.With().Str("job", t.id).Int64("step", t.step).Logger()
	tg := &t.watch.target
	sets, produced, err := setsFromJournal(job, tg.kinds())
	for i := range sets {
		if err != nil || produced[sets[i].Kind] == nil {
			continue
		}
		// Staging none: pass one's digests are journaled; only the plan is opened again (no merge math).
		err = attachProducer(ctx, &d.env, prepareOptions{Src: t.pinDir(), Name: filepath.Base(job.Dir), Step: t.step,
			Staging: job.StagingDir, Target: tg, Log: log}, &sets[i], produced[sets[i].Kind])
	}
	defer closeSets(sets)
	if err != nil {
		log.Warn().Err(err).Msg("the merged outputs are not in the staging directory")
		if _, uerr := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
			j.SetStage(journal.Pinned, d.env.now())
			j.Outputs = nil
			return nil
		}); uerr != nil {
			return uerr
		}
		return fmt.Errorf("%w: %v", errOutputsGone, err)
	}
	// A job the journal does not show as committed may have committed all the same: in an earlier attempt or
	// process, or under a journal that was since lost (deleted, emptied, a new state directory). The commit id
	// is deterministic, so look for it on the Hub before committing; a hit is recorded and nothing is published.
	recover := true
	if job.Stage == journal.Merged {
		if job, err = d.update(ctx, t, func(j *journal.Job) {
			j.SetStage(journal.Uploading, d.env.now())
			j.Attempts = 0
		}); err != nil {
			return err
		}
	}
	prog := &progress{done: map[string]int64{}, total: map[string]int64{}}
	d.mu.Lock()
	d.upProg = prog
	d.mu.Unlock()
	stopProg := d.progressWriter(ctx, t, prog)
	defer stopProg()

	start := d.env.now()
	name := filepath.Base(job.Dir)
	dests := tg.dests(t.step, name)
	var commits []PublishedCommit
	for i, dst := range dests {
		kind := dst.Kind
		pc, err := publishSet(ctx, &d.env, tg, dst, sets[i], publishSetOptions{
			CommitID: commitID(dst, job.WatchDir, t.step, tg.layout()),
			Recover:  recover,
			Progress: func(ev hub.ProgressEvent) { prog.event(kind, ev, d.env.Metrics) },
			Landed:   func(string) { d.hookPoint(PointCommitLanded, job, nil) },
			Log:      log,
		})
		if errors.Is(err, merge.ErrOutputChanged) {
			// The merge no longer produces the bytes pass one digested (a base file changed): nothing was
			// committed; digest again.
			if _, uerr := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
				j.SetStage(journal.Pinned, d.env.now())
				j.Outputs = nil
				return nil
			}); uerr != nil {
				return uerr
			}
			return fmt.Errorf("%w: %v", errOutputsGone, err)
		}
		if err != nil {
			return err
		}
		commits = append(commits, *pc)
	}
	for _, dst := range dests {
		prune(ctx, &d.env, tg, dst, log)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stopProg()
	if m := d.env.Metrics; m != nil {
		m.UploadDuration.Observe(since(d.env.now, start))
	}
	var tags []string
	for _, c := range commits {
		if c.Tag != "" {
			tags = append(tags, c.Tag)
		}
	}
	job, err = d.update(ctx, t, func(j *journal.Job) {
		j.SetStage(journal.Committed, d.env.now())
		j.Commit = &journal.Commit{OID: commits[0].OID, URL: commits[0].URL, At: d.env.now().UTC()}
		j.Tags = tags
		j.Attempts = 0
		j.Progress.BytesDone = j.Progress.BytesTotal
		j.Progress.FilesDone = j.Progress.FilesTotal
	})
	if err != nil {
		return err
	}
	d.removeStaging(t)
	d.markPruned(ctx, t)
	for _, c := range commits {
		log.Info().Str("repo", c.Repo).Str("branch", c.Branch).Str("commit", c.OID).Str("tag", c.Tag).
			Bool("recovered", c.Recovered).Str("url", c.URL).Msg("published")
	}
	if m := d.env.Metrics; m != nil {
		m.CheckpointsPublished.Inc()
	}
	d.jobFinished(journal.Committed)
	return nil
}

// event records one client progress event; uploaded bytes go to the metrics.
func (p *progress) event(kind string, ev hub.ProgressEvent, m *metrics.Metrics) {
	if ev.Phase != hub.PhaseUploading {
		return
	}
	k := kind + "\x00" + ev.File
	p.mu.Lock()
	prev := p.done[k]
	p.done[k], p.total[k] = ev.Done, ev.Total
	p.mu.Unlock()
	if m != nil && ev.Done > prev {
		m.BytesUploaded.Add(float64(ev.Done - prev))
	}
}

// filesDone counts the files whose upload finished.
func (p *progress) filesDone() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, t := range p.total {
		if t > 0 && p.done[k] >= t {
			n++
		}
	}
	return n
}

// progressWriter writes the upload progress to the journal every ProgressInterval until stopped (idempotent).
func (d *Daemon) progressWriter(ctx context.Context, t *task, p *progress) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(d.opts.ProgressInterval)
		defer tk.Stop()
		var last int64 = -1
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tk.C:
				done, _ := p.sum()
				if done == last {
					continue
				}
				last = done
				files := p.filesDone()
				_, err := d.env.Journal.Update(ctx, t.id, func(j *journal.Job) error {
					if j.Stage != journal.Uploading {
						return errors.New("not uploading")
					}
					j.Progress.BytesDone = min(done, j.Progress.BytesTotal)
					j.Progress.FilesDone = files
					j.Activity = ""
					if j.Progress.BytesTotal > 0 && j.Progress.BytesDone >= j.Progress.BytesTotal {
						// Every byte is sent: what is left is the storage's multipart completion and the commit.
						j.Activity = "completing upload"
					}
					return nil
				})
				if err != nil && ctx.Err() == nil {
					d.log.Debug().Err(err).Str("job", t.id).Msg("progress not recorded")
				}
				d.queueChanged()
			}
		}
	}()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			close(stop)
			<-done
		}
	}
}

// markPruned records that pruning (Target.PruneKeep) removed the tags of the directory's older committed jobs,
// so status does not list them as live.
func (d *Daemon) markPruned(ctx context.Context, t *task) {
	keep := t.watch.target.PruneKeep
	if keep <= 0 || t.watch.target.CreatePR {
		return
	}
	jobs, err := d.env.Journal.List(ctx)
	if err != nil {
		return
	}
	var committed []*journal.Job
	for _, j := range jobs {
		if j.Stage == journal.Committed && filepath.Clean(j.WatchDir) == filepath.Clean(t.watch.w.Dir) {
			committed = append(committed, j)
		}
	}
	// List order is by step: the newest keep are the last ones.
	for i := 0; i < len(committed)-keep; i++ {
		j := committed[i]
		if len(j.Tags) == 0 {
			continue
		}
		if _, err := d.env.Journal.Update(ctx, j.ID(), func(r *journal.Job) error {
			r.PrunedTags = append(r.PrunedTags, r.Tags...)
			r.Tags = nil
			return nil
		}); err != nil && ctx.Err() == nil {
			d.log.Debug().Err(err).Str("job", j.ID()).Msg("recording pruned tags")
		}
	}
}
