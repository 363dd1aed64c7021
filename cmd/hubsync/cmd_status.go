package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/pipeline"
)

// statusOptions are the flags of `hubsync status`.
type statusOptions struct {
	JSON     bool
	Config   string
	StateDir string
	Timeout  time.Duration
}

// AddFlags registers the flags.
func (o *statusOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.JSON, "json", false, "print one JSON document (summary and every job) instead of the table")
	f.StringVar(&o.Config, "config", "", "the daemon's configuration file (for its state_dir)")
	f.StringVar(&o.StateDir, "state-dir", "", "the daemon's state directory (default: state_dir of --config, else $STATE_DIRECTORY, else $XDG_STATE_HOME/hubsync; if that has no journal, the systemd unit's /var/lib/hubsync)")
	f.DurationVar(&o.Timeout, "timeout", 300*time.Millisecond, "how long to wait for the journal before reading the running daemon's snapshot")
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show what the watch daemon has done and is doing",
		Long: `status reads the watch daemon's journal (<state dir>/journal.db) and shows every checkpoint job:
its directory and step, stage (detected, pinned, merged, uploading, committed, failed, skipped), upload
progress, attempts, when it last changed, and the commit and tags, the reason of a failure or skip, or the
error being retried. While a daemon runs it holds the journal; status then reads the snapshot the daemon
rewrites after every change (<state dir>/journal.db.status.json) and says so on stderr.

The table ends with a summary line ("5 jobs: 3 committed, 1 uploading, 1 skipped"). --json prints
{"v":1,"written":...,"summary":{...},"jobs":[...]}, each job as the journal records it. No journal yet is not
an error: an empty report.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, g, o) },
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runStatus(cmd *cobra.Command, g *globalOptions, o *statusOptions) error {
	path, err := stateJournalPath(o.Config, o.StateDir)
	if err != nil {
		return err
	}
	rep, err := pipeline.ReadStatus(cmd.Context(), path, o.Timeout)
	if err != nil {
		return err
	}
	now := time.Now()
	switch rep.Source {
	case pipeline.SourceSnapshot:
		fmt.Fprintf(g.stderr, "hubsync: a daemon holds the journal; showing its status snapshot %s (written %s ago)\n",
			rep.Path, now.Sub(rep.Written).Round(time.Second))
	case pipeline.SourceNone:
		fmt.Fprintf(g.stderr, "hubsync: no journal at %s (hubsync watch has not run with this state directory)\n", rep.Path)
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(g.stderr, "hubsync: %d older finished jobs not listed (stop the daemon to see every job)\n", rep.Omitted)
	}
	if o.JSON {
		return journal.WriteJSON(g.stdout, rep.Jobs, now)
	}
	return journal.WriteTableOpts(g.stdout, rep.Jobs, now, journal.TableOptions{DaemonRunning: rep.DaemonRunning,
		Settling: rep.Settling})
}
