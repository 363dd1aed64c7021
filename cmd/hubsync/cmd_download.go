package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/hub"
)

// downloadOptions are the flags of `hubsync download`.
type downloadOptions struct {
	Revision string
	LocalDir string
	CacheDir string
}

// AddFlags registers the flags.
func (o *downloadOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Revision, "revision", "main", "branch, tag or commit to download")
	f.StringVar(&o.LocalDir, "local-dir", "", "write plain files into DIR instead of the HF cache")
	f.StringVar(&o.CacheDir, "cache-dir", "", "HF hub cache (default $HF_HUB_CACHE, else $HF_HOME/hub)")
}

func newDownloadCommand(g *globalOptions) *cobra.Command {
	o := &downloadOptions{}
	cmd := &cobra.Command{
		Use:   "download REPO",
		Short: "Download a model repo into the HF cache (or a plain folder)",
		Long: `download fetches every file of REPO at --revision into the Hugging Face cache layout
($HF_HUB_CACHE, else $HF_HOME/hub: models--OWNER--NAME/{blobs,snapshots,refs}), resuming partial files and
checking every file's hash, and prints the snapshot directory. With --local-dir it writes plain files there
and prints that directory. A token is used when one is found (private repos), else the download is anonymous.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDownload(cmd.Context(), g, o, args) },
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runDownload(ctx context.Context, g *globalOptions, o *downloadOptions, args []string) error {
	repo := args[0]
	a := defaultAuthEnv()
	tok, err := a.findToken(ctx, g)
	if err != nil {
		return err
	}
	c, err := newHubClient(g, tok.Value, nil)
	if err != nil {
		return err
	}
	prog := newProgressReporter(ctx, g, 5*time.Second)
	defer prog.close()
	dir, err := c.Download(ctx, repo, o.Revision, hub.DownloadOptions{
		CacheDir: o.CacheDir, LocalDir: o.LocalDir, Progress: prog.event,
	})
	prog.close()
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, dir)
	return nil
}
