package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/pipeline"
)

// retryOptions are the flags of `hubsync retry`.
type retryOptions struct {
	AllFailed bool
	Config    string
	StateDir  string
}

func newRetryCommand(g *globalOptions) *cobra.Command {
	o := &retryOptions{}
	cmd := &cobra.Command{
		Use:   "retry [STEP... | --all-failed]",
		Short: "Queue failed checkpoints again",
		Long: `retry puts failed jobs of the watch daemon's journal back in the queue: each is pinned, merged and
published again from its checkpoint directory. STEP is a step number (N or checkpoint-N, in any watched
directory) or a job id DIR@STEP as "hubsync status --json" shows it; --all-failed takes every failed job.
Jobs that are not failed are left alone, so running retry twice does no harm.

Without a running daemon the journal is changed at once and the next "hubsync watch" resumes the jobs. While a
daemon holds the journal, the request is left in <state dir>/journal.db.retry.d/ and the daemon applies it
within seconds. The state directory is found like "hubsync status" finds it.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runRetry(cmd, g, o, args) },
	}
	f := cmd.Flags()
	f.BoolVar(&o.AllFailed, "all-failed", false, "queue every failed job again")
	f.StringVar(&o.Config, "config", "", "the daemon's configuration file (for its state_dir)")
	f.StringVar(&o.StateDir, "state-dir", "", "the daemon's state directory (default as for hubsync status)")
	return cmd
}

func runRetry(cmd *cobra.Command, g *globalOptions, o *retryOptions, args []string) error {
	req, err := pipeline.ParseRetryArgs(args, o.AllFailed)
	if err != nil {
		return usageError{err}
	}
	path, err := stateJournalPath(o.Config, o.StateDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no journal at %s (hubsync watch has not run with this state directory)", path)
	}
	j, err := journal.Open(path)
	if errors.Is(err, journal.ErrInUse) {
		p, serr := pipeline.SubmitRetry(path, req)
		if serr != nil {
			return serr
		}
		fmt.Fprintf(g.stdout, "a daemon holds the journal; the request is queued for it (%s)\n", p)
		return nil
	}
	if err != nil {
		return err
	}
	defer j.Close()
	ids, err := pipeline.RequeueFailed(cmd.Context(), j, req)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		fmt.Fprintln(g.stdout, "no failed job matched; nothing to retry")
		return nil
	}
	for _, id := range ids {
		fmt.Fprintf(g.stdout, "queued again: %s\n", id)
	}
	fmt.Fprintln(g.stdout, "the next hubsync watch publishes them")
	return nil
}

// systemStateDir is where the system unit deploy/hubsync.service keeps its state (StateDirectory=hubsync).
const systemStateDir = "/var/lib/hubsync"

// stateJournalPath finds the daemon's journal as `status` and `retry` do: --state-dir, else state_dir of
// --config, else the daemon's defaults ($STATE_DIRECTORY, $XDG_STATE_HOME/hubsync, ~/.local/state/hubsync); when
// none was named and the default has no journal, the system unit's /var/lib/hubsync is used if it has one.
func stateJournalPath(cfgFile, stateDir string) (string, error) {
	cfg := config.Default()
	if cfgFile != "" {
		c, err := config.Load(cfgFile)
		if err != nil {
			return "", usageError{err}
		}
		cfg = c
	}
	if stateDir != "" {
		cfg.StateDir = stateDir
	}
	named := cfg.StateDir != "" || os.Getenv("STATE_DIRECTORY") != ""
	if err := cfg.Resolve(os.Getenv); err != nil {
		return "", err
	}
	if named {
		return cfg.JournalPath(), nil
	}
	return firstJournal(cfg.JournalPath(), filepath.Join(systemStateDir, config.JournalFile)), nil
}

// firstJournal returns the first candidate that exists, else the first.
func firstJournal(candidates ...string) string {
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return candidates[0]
}
