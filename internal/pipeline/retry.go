package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/journal"
)

// RetryRequest selects failed jobs to queue again (`hubsync retry`).
type RetryRequest struct {
	// AllFailed selects every failed job.
	AllFailed bool `json:"all_failed,omitempty"`
	// Steps select failed jobs by step (of any watched directory); IDs by job id (DIR@STEP).
	Steps []int64  `json:"steps,omitempty"`
	IDs   []string `json:"ids,omitempty"`
}

// ParseRetryArgs turns `hubsync retry` arguments (a step, checkpoint-N, or a job id DIR@STEP) into a request.
func ParseRetryArgs(args []string, allFailed bool) (RetryRequest, error) {
	r := RetryRequest{AllFailed: allFailed}
	for _, a := range args {
		if strings.Contains(a, "@") {
			if _, _, err := journal.ParseJobID(a); err != nil {
				return r, err
			}
			r.IDs = append(r.IDs, a)
			continue
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(a, "checkpoint-"), 10, 64)
		if err != nil || n < 0 {
			return r, fmt.Errorf("%q is not a step, checkpoint-N or DIR@STEP", a)
		}
		r.Steps = append(r.Steps, n)
	}
	if !r.AllFailed && len(r.Steps) == 0 && len(r.IDs) == 0 {
		return r, errors.New("name the steps to retry, or give --all-failed")
	}
	return r, nil
}

func (r RetryRequest) selects(j *journal.Job) bool {
	return r.AllFailed || slices.Contains(r.Steps, j.Step) || slices.Contains(r.IDs, j.ID())
}

// RequeueFailed puts the failed jobs r selects back to detected; it returns their ids. Jobs that are not failed
// are left alone, so running it twice does nothing the second time.
func RequeueFailed(ctx context.Context, j *journal.Journal, r RetryRequest) ([]string, error) {
	jobs, err := j.List(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, job := range jobs {
		if job.Stage != journal.Failed || !r.selects(job) {
			continue
		}
		ok, err := j.Requeue(ctx, job.ID())
		if err != nil {
			return ids, err
		}
		if ok {
			ids = append(ids, job.ID())
		}
	}
	return ids, nil
}

// RetryDir is where `hubsync retry` leaves requests for the daemon that holds the journal at journalPath.
func RetryDir(journalPath string) string { return journalPath + ".retry.d" }

// SubmitRetry leaves r for the running daemon, which applies it within its status interval.
func SubmitRetry(journalPath string, r RetryRequest) (string, error) {
	dir := RetryDir(journalPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".req-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	name := filepath.Join(dir, strconv.FormatInt(time.Now().UnixNano(), 10)+".json")
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("retry request: %w", err)
	}
	return name, nil
}

// applyRetries applies the retry requests left for this daemon: the jobs are requeued in the journal and
// (when enqueue) queued for merging.
func (d *Daemon) applyRetries(ctx context.Context, enqueue bool) {
	dir := RetryDir(d.cfg.JournalPath())
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		var r RetryRequest
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil {
			d.log.Warn().Err(err).Str("file", p).Msg("unreadable retry request; removed")
			os.Remove(p)
			continue
		}
		ids, err := RequeueFailed(ctx, d.env.Journal, r)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error().Err(err).Str("file", p).Msg("retry request")
			}
			continue // tried again at the next tick
		}
		os.Remove(p)
		for _, id := range ids {
			if !enqueue {
				break
			}
			dirName, step, _ := journal.ParseJobID(id)
			we := d.watches[filepath.Clean(dirName)]
			if we == nil {
				continue // resumed when its directory is watched again
			}
			d.log.Info().Str("job", id).Msg("failed job queued again (hubsync retry)")
			d.enqueueMerge(&task{id: id, watch: we, step: step}, false)
		}
	}
}
