package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/metrics"
	"github.com/hubsync/hubsync/merge"
)

// Env is what the pipeline runs against. Build it with OpenEnv, or by hand (tests, `hubsync demo`): only
// Client is required for PublishCheckpoint; a Daemon also needs Journal.
type Env struct {
	// Client talks to the Hub. For resumable uploads across restarts, its Options.Journal should be a
	// hub.NewBoltJournal on Journal.DB() (OpenEnv does that).
	Client *hub.Client
	// Journal is the daemon's job journal (nil for a one-shot publish).
	Journal *journal.Journal
	// Metrics receives the daemon's counters (nil: none).
	Metrics *metrics.Metrics
	// Log receives progress and problems (zero value: disabled). It never sees the token.
	Log zerolog.Logger
	// Notify receives systemd notifications (nil: none). See SystemdNotifier.
	Notify Notifier
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Getenv reads the environment for the HF cache location (nil: os.Getenv). The merge itself looks the
	// base up in $HF_HUB_CACHE / $HF_HOME/hub of the process environment, so keep the two consistent.
	Getenv func(string) string
	// Backends are the non-CPU merge backends of this build (the CUDA backend in a -tags cuda build).
	Backends []merge.BackendProvider
	// MergeThreads is the number of merge tile workers (0: GOMAXPROCS).
	MergeThreads int
	// AvailableBytes reports the free space of the file system holding a directory, for staging auto (nil:
	// fsutil.AvailableBytes).
	AvailableBytes func(dir string) (int64, error)

	// closers are run by Close (OpenEnv's resources).
	closers []func() error
}

// Close releases what OpenEnv opened (the journal database); it is a no-op for a hand-built Env.
func (e *Env) Close() error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		errs = append(errs, e.closers[i]())
	}
	e.closers = nil
	return errors.Join(errs...)
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Env) getenv(k string) string {
	if e.Getenv != nil {
		return e.Getenv(k)
	}
	return os.Getenv(k)
}

// cacheDir is the HF hub cache bases are looked up in and downloaded into.
func (e *Env) cacheDir() string { return hub.HubCacheDir(e.getenv) }

// EnvOptions configure OpenEnv.
type EnvOptions struct {
	// Token is the Hub token (found by the caller with hub.FindToken); it goes to the client only.
	Token string
	// Version is hubsync's version for the User-Agent.
	Version string
	// Log is the logger for the pipeline and the client.
	Log zerolog.Logger
	// Notify receives systemd notifications (nil: none).
	Notify Notifier
	// HTTPClient replaces the client's default transport (tests).
	HTTPClient *http.Client
	// Retry replaces the retry policy derived from the configuration (tests: hub.TestFastRetries()).
	Retry *hub.RetryPolicy
	// Backends are the non-CPU merge backends of this build.
	Backends []merge.BackendProvider
	// NoMetrics leaves Env.Metrics nil.
	NoMetrics bool
}

// OpenEnv opens the journal at cfg.JournalPath() (which also maintains the status snapshot next to it), puts
// the Hub client's multipart part journal in the same database (bucket hub.DefaultJournalBucket), and builds
// the client for cfg.Endpoint with cfg.Upload's parallelism and retries. cfg must be resolved
// (config.Config.Resolve). Close the Env when done.
func OpenEnv(cfg *config.Config, o EnvOptions) (*Env, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("pipeline: the configuration has no state directory (call Resolve first)")
	}
	j, err := journal.Open(cfg.JournalPath())
	if err != nil {
		return nil, err
	}
	env := &Env{Journal: j, Log: o.Log, Notify: o.Notify, Backends: o.Backends}
	env.closers = append(env.closers, j.Close)
	parts, err := hub.NewBoltJournal(j.DB(), hub.DefaultJournalBucket)
	if err != nil {
		env.Close()
		return nil, fmt.Errorf("pipeline: part journal: %w", err)
	}
	retry := hub.RetryPolicy{MaxAttempts: cfg.Upload.Retries + 1}
	if o.Retry != nil {
		retry = *o.Retry
	}
	xetMode, err := hub.ParseXetMode(cfg.Upload.Xet)
	if cfg.Upload.Xet == "" {
		xetMode, err = hub.XetAuto, nil
	}
	if err != nil {
		env.Close()
		return nil, fmt.Errorf("pipeline: upload.xet: %w", err)
	}
	c, err := hub.New(hub.Options{
		Endpoint: cfg.Endpoint, Token: o.Token, Version: o.Version, Logger: o.Log, HTTPClient: o.HTTPClient,
		Retry: retry, ParallelFiles: cfg.Upload.ParallelFiles, ParallelParts: cfg.Upload.ParallelParts,
		Journal: parts, StallTimeout: cfg.Upload.StallTimeout,
		Xet: hub.XetModeFromEnv(env.getenv, xetMode), XetCacheDir: hub.XetCacheDir(env.getenv),
	})
	if err != nil {
		env.Close()
		return nil, err
	}
	env.Client = c
	env.closers = append(env.closers, func() error { c.CloseIdleConnections(); return nil })
	if !o.NoMetrics {
		env.Metrics = metrics.New()
	}
	return env, nil
}

// fetchBase returns the merge's FetchBase: a base repo that is not in the HF cache is downloaded into it through
// the Hub client (main revision).
func (e *Env) fetchBase(log zerolog.Logger) func(ctx context.Context, repoID string) (string, error) {
	return func(ctx context.Context, spec string) (string, error) {
		log.Info().Str("base", spec).Str("cache", e.cacheDir()).Msg("downloading the base model into the HF cache")
		repoID, rev := hub.SplitRepoRevision(spec)
		return e.Client.Download(ctx, repoID, rev, hub.DownloadOptions{CacheDir: e.cacheDir(), Offline: hub.OfflineFromEnv(e.getenv), DisableXet: hub.XetDisabledFromEnv(e.getenv)})
	}
}
