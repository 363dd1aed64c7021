package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/hub"
)

// uploadFlags registers the flags of `hubsync upload`, named as `hf upload` names them.
func uploadFlags(o *pushOptions, quiet *bool, f *pflag.FlagSet) {
	f.StringArrayVar(&o.Include, "include", nil, "glob of local files to upload (repeatable; default: all)")
	f.StringArrayVar(&o.Exclude, "exclude", nil, "glob of local files to leave out (repeatable)")
	f.StringArrayVar(&o.Delete, "delete", nil, "glob of remote files under PATH_IN_REPO to delete in the same commit (repeatable)")
	f.StringVar(&o.Revision, "revision", "main", "branch to commit to (created from the default branch when missing)")
	f.BoolVar(&o.Private, "private", false, "create the repo private (when it does not exist yet)")
	f.StringVarP(&o.Message, "commit-message", "m", "", "commit title (default \"Upload folder using hubsync\" or \"Upload FILE with hubsync\")")
	f.StringVar(&o.Description, "commit-description", "", "commit description (body)")
	f.BoolVar(&o.CreatePR, "create-pr", false, "open a pull request instead of committing to the branch; its URL is printed")
	f.BoolVarP(quiet, "quiet", "q", false, "print only the URL: no progress bars, no logs below warnings")
	f.BoolVar(&o.JSON, "json", false, "print the result (repo, commit, URLs) as one JSON object on stdout")
	f.IntVar(&o.ParallelFiles, "parallel-files", hub.DefaultParallelFiles, "files uploaded at once")
	f.IntVar(&o.ParallelParts, "parallel-parts", hub.DefaultParallelParts, "parts of one file uploaded at once")
}

func newUploadCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	var quiet bool
	cmd := &cobra.Command{
		Use:   "upload REPO [LOCAL] [PATH_IN_REPO]",
		Short: "Upload a file or folder to a Hub model repo as one commit (like `hf upload`)",
		Long: `upload sends LOCAL (default: the current directory) to REPO as one commit, with the same engine as
push of a folder (skipping what the Hub has, resumable multipart uploads, .git/ and .cache/ never sent). A folder
goes under PATH_IN_REPO (default: the root); a single file goes to PATH_IN_REPO (default: its name). REPO without
an owner is in the token's own namespace; it is created when missing. --include/--exclude select local files
(globs on the path relative to LOCAL), --delete removes remote files under PATH_IN_REPO in the same commit.
The commit URL is printed on stdout (with --create-pr the pull request's URL; --json: one JSON object).`,
		Args: cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error { return runUpload(cmd.Context(), g, o, quiet, args) },
	}
	uploadFlags(o, &quiet, cmd.Flags())
	return cmd
}

func runUpload(ctx context.Context, g *globalOptions, o *pushOptions, quiet bool, args []string) error {
	o.Repo = args[0]
	local := "."
	if len(args) > 1 {
		local = args[1]
	}
	if len(args) > 2 {
		o.PathInRepo = args[2]
	}
	if err := o.validate(); err != nil {
		return err
	}
	if quiet {
		g.quiet = true
		g.log = g.log.Level(zerolog.WarnLevel)
	}
	st, err := os.Stat(local)
	if err != nil {
		return err
	}
	var files []hub.UploadFile
	summary := o.Message
	if st.IsDir() {
		if files, err = hub.ListFolder(local, hub.FolderOptions{PathInRepo: o.PathInRepo, Exclude: o.Exclude}); err != nil {
			return err
		}
		if len(o.Include) > 0 {
			files = includeOnly(files, o.Include, o.PathInRepo)
		}
		if summary == "" {
			summary = "Upload folder using hubsync"
		}
	} else {
		if len(o.Include) > 0 || len(o.Exclude) > 0 {
			return usagef("--include/--exclude apply to folders; %s is a file", local)
		}
		dst := strings.Trim(o.PathInRepo, "/")
		if dst == "" {
			dst = filepath.Base(local)
		}
		files = []hub.UploadFile{{PathInRepo: dst, LocalPath: local}}
		o.PathInRepo = ""
		if summary == "" {
			summary = "Upload " + dst + " with hubsync"
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("%s: no files to upload", local)
	}
	return pushFiles(ctx, g, o, files, summary, o.Description)
}

// includeOnly keeps the files whose folder-relative path (or path in the repo) matches an --include glob.
func includeOnly(files []hub.UploadFile, include []string, pathInRepo string) []hub.UploadFile {
	prefix := strings.Trim(pathInRepo, "/")
	var out []hub.UploadFile
	for _, f := range files {
		rel := f.PathInRepo
		if prefix != "" {
			rel = strings.TrimPrefix(rel, prefix+"/")
		}
		for _, p := range include {
			if hub.MatchGlob(p, rel) || hub.MatchGlob(p, f.PathInRepo) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}
