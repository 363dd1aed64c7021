package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
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
	Include  []string
	Exclude  []string
	JSON     bool
}

// AddFlags registers the flags.
func (o *downloadOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Revision, "revision", "main", "branch, tag or commit to download")
	f.StringVar(&o.LocalDir, "local-dir", "", "write plain files into DIR instead of the HF cache")
	f.StringVar(&o.CacheDir, "cache-dir", "", "HF hub cache (default $HF_HUB_CACHE, else $HF_HOME/hub)")
	f.StringArrayVar(&o.Include, "include", nil, "glob of repo paths to download (repeatable; default: all)")
	f.StringArrayVar(&o.Exclude, "exclude", nil, "glob of repo paths to leave out (repeatable)")
	f.BoolVar(&o.JSON, "json", false, "print the result as one JSON object on stdout")
}

func newDownloadCommand(g *globalOptions) *cobra.Command {
	o := &downloadOptions{}
	cmd := &cobra.Command{
		Use:   "download REPO [FILES...]",
		Short: "Download a model repo into the HF cache (or a plain folder)",
		Long: `download fetches the files of REPO at --revision (all of them, the FILES named, or those --include
selects and --exclude does not) into the Hugging Face cache layout ($HF_HUB_CACHE, else $HF_HOME/hub:
models--OWNER--NAME/{blobs,snapshots,refs}), resuming partial files and checking every file's hash, and prints the
snapshot directory (one named file: its path). With --local-dir it writes plain files there and prints that
directory. A token is used when one is found (private repos), else the download is anonymous. A REPO without an
owner is in the token's own namespace. With HF_HUB_OFFLINE=1 the network is never used: a cached snapshot is
printed, anything else is an error at once. Files the Hub stores in Xet are reconstructed from its CAS
(verified chunk by chunk and by sha256), over plain HTTP when that fails or with HF_HUB_DISABLE_XET=1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDownload(cmd.Context(), g, o, args) },
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runDownload(ctx context.Context, g *globalOptions, o *downloadOptions, args []string) error {
	for _, p := range append(append([]string(nil), o.Include...), o.Exclude...) {
		if err := hub.ValidateGlob(p); err != nil {
			return usagef("--include/--exclude: %v", err)
		}
	}
	repo, files := args[0], args[1:]
	if len(files) > 0 && (len(o.Include) > 0 || len(o.Exclude) > 0) {
		return usagef("name FILES or use --include/--exclude, not both")
	}
	offline := hub.OfflineFromEnv(os.Getenv)
	a := defaultAuthEnv()
	var token string
	if !offline {
		tok, err := a.findToken(ctx, g)
		if err != nil {
			return err
		}
		token = tok.Value
	}
	c, err := newHubClient(g, token, nil)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	if repo, err = qualifyRepoID(ctx, c, repo, offline); err != nil {
		return err
	}
	prog := newProgressReporter(ctx, g, 5*time.Second)
	defer prog.close()
	dir, err := c.Download(ctx, repo, o.Revision, hub.DownloadOptions{
		CacheDir: o.CacheDir, LocalDir: o.LocalDir, Progress: prog.event, Offline: offline,
		Files: files, Include: o.Include, Exclude: o.Exclude, DisableXet: hub.XetDisabledFromEnv(os.Getenv),
	})
	prog.close()
	if err != nil {
		return err
	}
	path := dir
	if len(files) == 1 {
		path = dir + string(os.PathSeparator) + files[0]
	}
	if o.JSON {
		return json.NewEncoder(g.stdout).Encode(map[string]any{
			"repo": repo, "revision": o.Revision, "path": path, "dir": dir, "files": files, "offline": offline,
		})
	}
	fmt.Fprintln(g.stdout, path)
	return nil
}

// qualifyRepoID gives a repo id without an owner the token's own namespace (whoami), as `hf` does.
func qualifyRepoID(ctx context.Context, c *hub.Client, repo string, offline bool) (string, error) {
	if strings.Contains(repo, "/") {
		return repo, nil
	}
	if repo == "" {
		return "", usagef("empty repo id")
	}
	if offline {
		return "", usagef("%q has no owner, and in offline mode (HF_HUB_OFFLINE) the token's namespace cannot be looked up: write OWNER/%s", repo, repo)
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		return "", fmt.Errorf("%q has no owner; looking up the token's namespace: %w", repo, err)
	}
	return who.Name + "/" + repo, nil
}
