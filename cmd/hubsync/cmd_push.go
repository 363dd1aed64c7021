package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/internal/termsafe"
	"github.com/hubsync/hubsync/internal/units"
	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/watcher"
)

// pushOptions are the flags of `hubsync push`.
type pushOptions struct {
	Repo          string
	Revision      string
	PathInRepo    string
	Private       bool
	Message       string
	Tag           string
	CreatePR      bool
	Exclude       []string
	ParallelFiles int
	ParallelParts int
	Description   string   // --commit-description
	JSON          bool     // --json: one JSON object on stdout instead of the URL
	Include       []string // upload --include: only files matching one of these globs
	Delete        []string // upload --delete: remote files (globs under PathInRepo) deleted in the same commit

	// The checkpoint flow (pipeline.PublishCheckpoint).
	Merged       bool
	AdapterOnly  bool
	Raw          bool
	Base         string
	DType        string
	MaxShardSize string
	ShardLayout  string
	Device       string
	StagingDir   string
	KeepTied     bool
	Quant        quantFlags
	Staging      string
	GGUF         string // --gguf: GGUF types of the merge to publish
	GGUFPath     string // --gguf-path: their folder
	GGUFPre      string // --gguf-pre: pre-tokenizer override

	// changed reports whether a flag was given on the command line (cobra's Flags().Changed).
	changed func(name string) bool
}

// stagingHelp documents --staging (push --merged and watch).
const stagingHelp = "merged shards: disk (written to the staging dir, then uploaded), none (never written: merged once for the digests, again while uploading) or auto (none when the staging file system has less than twice the output size free)"

// AddFlags registers the flags.
func (o *pushOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Repo, "repo", "", "target model repo OWNER/NAME (created when missing)")
	f.StringVar(&o.Revision, "revision", "main", "branch to commit to (created from the default branch when missing)")
	f.StringVar(&o.PathInRepo, "path-in-repo", "", "folder in the repo to upload into (default: the root)")
	f.BoolVar(&o.Private, "private", false, "create the repo private (when it does not exist yet)")
	f.StringVarP(&o.Message, "commit-message", "m", "", "commit title (default \"Upload folder using hubsync\")")
	f.StringVar(&o.Message, "message", "", "old name of --commit-message")
	_ = f.MarkHidden("message") // deprecated: runPush's caller says so on stderr
	f.StringVar(&o.Description, "commit-description", "", "commit description (body)")
	f.BoolVar(&o.JSON, "json", false, "print the result (repo, commit, URLs) as one JSON object on stdout")
	f.StringVar(&o.Tag, "tag", "", "tag the new commit with this name")
	f.BoolVar(&o.CreatePR, "create-pr", false, "open a pull request instead of committing to the branch")
	f.StringArrayVar(&o.Exclude, "exclude", nil, "glob of files to leave out, on the folder- or repo-relative path; ** matches any depth (repeatable)")
	f.IntVar(&o.ParallelFiles, "parallel-files", hub.DefaultParallelFiles, "files uploaded at once")
	f.IntVar(&o.ParallelParts, "parallel-parts", hub.DefaultParallelParts, "parts of one file uploaded at once")

	f.BoolVar(&o.Merged, "merged", false, "DIR is a LoRA checkpoint: merge it into its base and publish the merged model")
	f.BoolVar(&o.AdapterOnly, "adapter-only", false, "DIR is a LoRA checkpoint: publish the adapter, its tokenizer and a card (the default when DIR has adapter_config.json)")
	f.BoolVar(&o.Raw, "raw", false, "upload DIR as it is, even when it holds adapter_config.json")
	f.StringVar(&o.Base, "base", "", "with --merged: base model, a local dir or Hub repo id (default: the adapter's base_model_name_or_path; found in the HF cache, else downloaded into it)")
	f.StringVar(&o.DType, "dtype", "", "with --merged: output dtype bf16, fp16 or fp32 (default: the base's), or nf4|fp4 for a merged bitsandbytes 4-bit model")
	o.Quant.addFlags(f)
	f.StringVar(&o.MaxShardSize, "max-shard-size", "5GB", "with --merged: largest output shard")
	f.StringVar(&o.ShardLayout, "shard-layout", "delta", "with --merged: "+shardLayoutHelp)
	f.StringVar(&o.Device, "device", "auto", "with --merged: merge device auto, cpu or cuda")
	f.BoolVar(&o.KeepTied, "keep-tied", false, "with --merged: "+keepTiedHelp)
	f.StringVar(&o.Staging, "staging", config.StagingAuto, "with --merged: "+stagingHelp)
	f.StringVar(&o.GGUF, "gguf", "", "DIR is a LoRA checkpoint: also publish the merge as GGUF, one <repo name>-<TYPE>.gguf per type ("+ggufTypesHelp+", comma-separated); without --merged only the GGUF files and a card")
	f.StringVar(&o.GGUFPath, "gguf-path", "", "with --gguf: repo folder of the GGUF files, relative to --path-in-repo (default: beside the merged model)")
	f.StringVar(&o.GGUFPre, "gguf-pre", "", "with --gguf: "+ggufPreHelp)
	f.StringVar(&o.StagingDir, "staging-dir", "", "with --merged/--adapter-only: where outputs are written before the upload (default <DIR's parent>/.hubsync-staging/push-*; removed afterwards)")
}

// validate checks the flags that do not need the network.
func (o *pushOptions) validate() error {
	if o.Repo == "" {
		return usagef("--repo OWNER/NAME is required")
	}
	// NAME alone is in the token's own namespace (qualifyRepoID).
	if owner, name, ok := strings.Cut(o.Repo, "/"); ok && (owner == "" || name == "" || strings.Contains(name, "/")) {
		return usagef("--repo must be OWNER/NAME or NAME, not %q", o.Repo)
	}
	if o.ParallelFiles < 1 || o.ParallelParts < 1 {
		return usagef("--parallel-files and --parallel-parts must be at least 1")
	}
	if o.Revision == "" {
		o.Revision = "main"
	}
	for _, p := range append(append(append([]string(nil), o.Exclude...), o.Include...), o.Delete...) {
		if err := hub.ValidateGlob(p); err != nil {
			return usagef("--include/--exclude/--delete: %v", err)
		}
	}
	return nil
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [DIR] --repo OWNER/NAME",
		Short: "Upload a folder to a Hub model repo as one commit",
		Long: `push uploads DIR (default: the current directory) to a model repo as one commit: files the Hub
already has are skipped, large files go through parallel, resumable multipart uploads (finished parts are
journaled in $STATE_DIRECTORY/uploads.db, else $XDG_STATE_HOME/hubsync/uploads.db, else
~/.local/state/hubsync/uploads.db, so a rerun after a crash sends only the missing parts), .git/ and .cache/
are never uploaded. The repo is created when missing, the branch too; --tag tags the new commit.
On success the commit URL is printed on standard output (with --create-pr the pull request's; --json: one JSON
object); a commit with nothing to change says so. --repo NAME without an owner is the token's own namespace.

Checkpoints (DIR holds adapter_config.json, e.g. outputs/checkpoint-500):
  --merged        the whole pipeline once: resolve the base (--base, else the adapter's base_model_name_or_path:
                  a local dir, the HF cache, else downloaded into the HF cache), merge, shard (--max-shard-size,
                  --dtype), upload, one commit, optional --tag. Published: the shards, their index, config.json
                  (no quantization_config), generation_config.json, the tokenizer files and a model card.
  --gguf TYPES    also the merge as GGUF files (llama.cpp, Ollama), one <repo name>-<TYPE>.gguf per type, in
                  the same commit as --merged's model (its card gains a GGUF section), or alone with a GGUF card
                  without --merged; --gguf-path puts them in a folder. --staging applies to them too.
  --adapter-only  (the default for such a DIR unless --raw) the PEFT adapter: adapter_config.json,
                  adapter_model.safetensors, the tokenizer files and a model card. Optimizer, scheduler and RNG
                  state, trainer_state.json and training_args.bin (a pickle) are not published.
Outputs are staged in <DIR's parent>/.hubsync-staging/ (--staging-dir), checked for free space against the merge
plan before any byte is written, and removed afterwards. Model files of an earlier upload at the same place that
the new one lacks (e.g. shards of another shard count) are deleted in the same commit. --commit-message may use
{step} and {checkpoint}.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("message") {
				fmt.Fprintln(g.stderr, "note: --message is deprecated; use --commit-message (-m)")
			}
			o.changed = cmd.Flags().Changed
			return runPush(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// uploadJournalPath is where the CLI keeps multipart upload state.
func uploadJournalPath(getenv hub.Getenv) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		// systemd passes a colon-separated list when several state directories are configured.
		first, _, _ := strings.Cut(d, ":")
		return filepath.Join(first, "uploads.db")
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "hubsync", "uploads.db")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "state", "hubsync", "uploads.db")
}

func runPush(ctx context.Context, g *globalOptions, o *pushOptions, args []string) error {
	if err := o.validate(); err != nil {
		return err
	}
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	}
	if checkpoint, err := o.checkpointMode(dir); err != nil {
		return err
	} else if checkpoint {
		return runPushCheckpoint(ctx, g, o, dir)
	}
	files, err := hub.ListFolder(dir, hub.FolderOptions{PathInRepo: o.PathInRepo, Exclude: o.Exclude})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s: no files to upload", dir)
	}
	summary := o.Message
	if summary == "" {
		summary = "Upload folder using hubsync"
	}
	return pushFiles(ctx, g, o, files, summary, o.Description)
}

// pushFiles ensures the repo and branch exist, commits files as one commit, tags it and prints the commit URL.
// It is the part of push shared with the merged-model flow (which passes files with known digests).
func pushFiles(ctx context.Context, g *globalOptions, o *pushOptions, files []hub.UploadFile, summary, description string) error {
	a := defaultAuthEnv()
	tok, err := a.findToken(ctx, g)
	if err != nil {
		return err
	}
	if !tok.Found() {
		return errors.New("no Hub token: run `hubsync login`, or set $HF_TOKEN, or pass --token")
	}
	g.log.Debug().Str("token_source", tok.String()).Msg("using token")

	var journal hub.Journal
	jpath := uploadJournalPath(a.getenv)
	if bj, err := hub.OpenBoltJournal(jpath); err != nil {
		g.log.Warn().Err(err).Msg("upload journal unavailable: an interrupted upload will restart its files from zero")
	} else {
		defer bj.Close()
		journal = bj
	}
	prog := newProgressReporter(ctx, g, 5*time.Second)
	defer prog.close()
	c, err := newHubClient(g, tok.Value, func(ho *hub.Options) {
		ho.Journal = journal
		ho.ParallelFiles = o.ParallelFiles
		ho.ParallelParts = o.ParallelParts
	})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	if o.Repo, err = qualifyRepoID(ctx, c, o.Repo, false); err != nil {
		return err
	}
	env := &pipeline.Env{Client: c, Log: g.log, Backends: mergeBackends}
	res, err := pipeline.PublishFiles(ctx, env, pipeline.FilesCommit{
		Repo: o.Repo, Branch: o.Revision, Private: o.Private, Summary: summary, Description: description,
		CreatePR: o.CreatePR, Tag: o.Tag, Files: files,
	}, pipeline.PublishFilesOptions{Progress: prog.event, Log: g.log,
		Delete: func(ctx context.Context) ([]string, error) { return remoteDeletes(ctx, c, o, files) }})
	prog.close()
	if err != nil {
		return err
	}
	if len(res.Ignored) > 0 {
		g.log.Warn().Strs("paths", res.Ignored).Msg("the repo's .gitignore excluded these files")
	}
	return printPublished(g, o, []publishedURL{{Commit: res.OID, URL: res.URL, PR: res.PullRequestURL, NoOp: res.NoOp}})
}

// publishedURL is one commit a publication made (or found, NoOp), for printPublished.
type publishedURL struct {
	Commit, URL, PR string
	NoOp            bool
}

// printPublished prints what a push or upload made: with --json one object, else each commit's URL (the PR's
// with --create-pr) on its own line.
func printPublished(g *globalOptions, o *pushOptions, commits []publishedURL) error {
	if !o.JSON {
		for _, pc := range commits {
			if pc.NoOp {
				fmt.Fprintln(g.stderr, "No files have changed since the last commit: nothing committed.")
			}
			printResultURL(g, pc.URL, pc.PR)
		}
		return nil
	}
	type jsonCommit struct {
		Commit    string `json:"commit"`
		CommitURL string `json:"commit_url"`
		PRURL     string `json:"pr_url,omitempty"`
		NoOp      bool   `json:"no_op"`
	}
	out := struct {
		Repo     string       `json:"repo"`
		Revision string       `json:"revision"`
		Tag      string       `json:"tag,omitempty"`
		Commits  []jsonCommit `json:"commits"`
	}{Repo: o.Repo, Revision: o.Revision, Tag: o.Tag, Commits: []jsonCommit{}}
	for _, pc := range commits {
		out.Commits = append(out.Commits, jsonCommit{Commit: pc.Commit, CommitURL: termsafe.String(pc.URL),
			PRURL: termsafe.String(pc.PR), NoOp: pc.NoOp})
	}
	return json.NewEncoder(g.stdout).Encode(out)
}

// remoteDeletes lists the files of the target revision that upload --delete selects (globs relative to
// PathInRepo, as `hf upload --delete` reads them), leaving out the paths being uploaded.
func remoteDeletes(ctx context.Context, c *hub.Client, o *pushOptions, files []hub.UploadFile) ([]string, error) {
	if len(o.Delete) == 0 {
		return nil, nil
	}
	entries, err := c.ListTree(ctx, o.Repo, o.Revision, "", true)
	if err != nil {
		if errors.Is(err, hub.ErrNotFound) {
			return nil, nil // a new repo or branch has nothing to delete
		}
		return nil, fmt.Errorf("--delete: listing %s@%s: %w", o.Repo, o.Revision, err)
	}
	uploading := map[string]bool{}
	for _, f := range files {
		uploading[f.PathInRepo] = true
	}
	prefix := strings.Trim(o.PathInRepo, "/")
	var out []string
	for _, e := range entries {
		if e.Type != "file" || uploading[e.Path] {
			continue
		}
		rel := e.Path
		if prefix != "" {
			var ok bool
			if rel, ok = strings.CutPrefix(e.Path, prefix+"/"); !ok {
				continue
			}
		}
		for _, p := range o.Delete {
			if hub.MatchGlob(p, rel) {
				out = append(out, e.Path)
				break
			}
		}
	}
	return out, nil
}

// printResultURL prints the URL of what a publication made on stdout: the pull request's with --create-pr (as
// `hf upload` does), else the commit's. Both come from the server, so control characters are escaped.
func printResultURL(g *globalOptions, commitURL, prURL string) {
	commitURL, prURL = termsafe.String(commitURL), termsafe.String(prURL)
	if prURL != "" {
		g.log.Info().Str("commit_url", commitURL).Str("pr_url", prURL).Msg("opened a pull request")
		fmt.Fprintln(g.stdout, prURL)
		return
	}
	fmt.Fprintln(g.stdout, commitURL)
}

// progressReporter shows hub.ProgressEvents: mpb bars when stderr is a terminal, else a structured log line
// every interval.
type progressReporter struct {
	mu       sync.Mutex
	log      zerolog.Logger
	bars     *mpb.Progress
	bar      map[string]*mpb.Bar
	totals   map[hub.Phase]*mpb.Bar // one "total" bar per byte phase, with ETA
	state    map[string]hub.ProgressEvent
	stop     chan struct{}
	stopped  chan struct{}
	closed   bool
	lastSum  int64
	lastTime time.Time
}

func progressKey(ev hub.ProgressEvent) string { return string(ev.Phase) + "\x00" + ev.File }

func newProgressReporter(ctx context.Context, g *globalOptions, interval time.Duration) *progressReporter {
	r := &progressReporter{log: g.log, bar: map[string]*mpb.Bar{}, totals: map[hub.Phase]*mpb.Bar{}, state: map[string]hub.ProgressEvent{},
		stop: make(chan struct{}), stopped: make(chan struct{}), lastTime: time.Now()}
	if !g.quiet && progressBarsEnabled(g.stderr) {
		r.bars = mpb.NewWithContext(ctx, mpb.WithOutput(g.stderr), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
		close(r.stopped)
		return r
	}
	go func() {
		defer close(r.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.logLine("progress")
			case <-r.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return r
}

// event records one progress event (hub serialises the calls; the ticker reads concurrently).
func (r *progressReporter) event(ev hub.ProgressEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	k := progressKey(ev)
	r.state[k] = ev
	if r.bars == nil || ev.Total <= 0 {
		return
	}
	b, ok := r.bar[k]
	if !ok {
		b = r.bars.AddBar(ev.Total,
			mpb.PrependDecorators(decor.Name(progressLabel(ev.Phase, ev.File))),
			mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Name("  "),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
		r.bar[k] = b
	}
	b.SetCurrent(ev.Done)
	if ev.Phase == hub.PhaseUploading || ev.Phase == hub.PhaseDownloading {
		r.updateTotal(ev.Phase)
	}
}

// progressLabelWidth fits the longest phase name ("downloading") plus a space, and a 40-column name.
const progressLabelWidth = len(hub.PhaseDownloading) + 1

// progressLabel is a bar's fixed-width label: the phase padded to progressLabelWidth, then the file (the last
// 40 characters of a longer path; "(total)" and "(commit)" for the summary and commit bars), padded to 41.
func progressLabel(phase hub.Phase, file string) string {
	if file == "" {
		file = "(commit)"
	}
	file = termsafe.String(file) // a repo path comes from the server's listing
	if r := []rune(file); len(r) > 40 {
		file = "…" + string(r[len(r)-39:])
	}
	return fmt.Sprintf("%-*s%-41s", progressLabelWidth, phase, file)
}

// updateTotal keeps phase's total bar (sum over its files, with ETA) in step; r.mu held.
func (r *progressReporter) updateTotal(phase hub.Phase) {
	var done, total int64
	for _, ev := range r.state {
		if ev.Phase == phase {
			done += ev.Done
			total += ev.Total
		}
	}
	tb := r.totals[phase]
	if tb == nil {
		tb = r.bars.AddBar(total, mpb.BarPriority(1<<30),
			mpb.PrependDecorators(decor.Name(progressLabel(phase, "(total)"))),
			mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Name("  "),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)))
		r.totals[phase] = tb
	}
	tb.SetTotal(total, false)
	tb.SetCurrent(done)
}

// logLine writes the aggregate state as one structured line.
func (r *progressReporter) logLine(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	type agg struct {
		files, done int
		bytes, tot  int64
	}
	phases := map[hub.Phase]*agg{}
	for _, ev := range r.state {
		a := phases[ev.Phase]
		if a == nil {
			a = &agg{}
			phases[ev.Phase] = a
		}
		a.files++
		a.bytes += ev.Done
		a.tot += ev.Total
		if ev.Done >= ev.Total {
			a.done++
		}
	}
	if len(phases) == 0 {
		return
	}
	names := make([]string, 0, len(phases))
	for p := range phases {
		names = append(names, string(p))
	}
	sort.Strings(names)
	now := time.Now()
	e := r.log.Info()
	for _, n := range names {
		a := phases[hub.Phase(n)]
		e = e.Dict(n, zerolog.Dict().Int("files", a.files).Int("files_done", a.done).Int64("bytes", a.bytes).Int64("total", a.tot))
	}
	if up := phases[hub.PhaseUploading]; up != nil {
		if dt := now.Sub(r.lastTime).Seconds(); dt > 0 {
			rate := float64(up.bytes-r.lastSum) / dt
			e = e.Str("upload_rate", mergeHumanSize(int64(max(rate, 0)))+"/s")
			if left := up.tot - up.bytes; left > 0 && rate > 0 {
				e = e.Str("upload_eta", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String())
			}
		}
		r.lastSum = up.bytes
	}
	r.lastTime = now
	e.Msg(msg)
}

// close stops the display (idempotent): bars are finished or dropped, the periodic logger stops.
func (r *progressReporter) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	bars := r.bars
	for _, b := range r.bar {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	for _, b := range r.totals {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	r.mu.Unlock()
	if bars != nil {
		bars.Wait()
		return
	}
	close(r.stop)
	<-r.stopped
}

// checkpointMode decides whether push publishes DIR as a checkpoint (--merged, --adapter-only, or a DIR holding
// adapter_config.json without --raw) and checks the flags that only make sense in one of the two modes.
func (o *pushOptions) checkpointMode(dir string) (bool, error) {
	if o.Merged && o.AdapterOnly {
		return false, usagef("--merged and --adapter-only exclude each other")
	}
	if o.Raw && (o.Merged || o.AdapterOnly) {
		return false, usagef("--raw uploads the folder as it is; it excludes --merged and --adapter-only")
	}
	if o.GGUF != "" && (o.AdapterOnly || o.Raw) {
		return false, usagef("--gguf publishes the merge; it excludes --adapter-only and --raw")
	}
	if o.GGUF == "" && o.GGUFPre != "" {
		return false, usagef("--gguf-pre applies to --gguf")
	}
	if o.GGUF == "" && o.GGUFPath != "" {
		return false, usagef("--gguf-path applies to --gguf")
	}
	if !o.Merged && o.GGUF == "" && o.changed != nil {
		for _, name := range []string{"base", "dtype", "max-shard-size", "shard-layout", "device", "keep-tied", "staging"} {
			if o.changed(name) {
				return false, usagef("--%s applies to --merged and --gguf", name)
			}
		}
	}
	checkpoint := o.Merged || o.GGUF != "" || o.AdapterOnly || (!o.Raw && pipeline.IsAdapterDir(dir))
	if checkpoint && len(o.Exclude) > 0 {
		return false, usagef("--exclude applies to folder uploads; a checkpoint publishes a fixed set of files (use --raw)")
	}
	if !checkpoint && o.StagingDir != "" {
		return false, usagef("--staging-dir applies to --merged and --adapter-only")
	}
	return checkpoint, nil
}

// runPushCheckpoint publishes a LoRA checkpoint: merged into its base (--merged) or as an adapter.
func runPushCheckpoint(ctx context.Context, g *globalOptions, o *pushOptions, dir string) error {
	if err := syncStderr(g); err != nil {
		return err
	}
	dt, quant, err := o.Quant.outputDType(o.DType)
	if err != nil {
		return err
	}
	shard, err := units.ParseBytes(o.MaxShardSize)
	if err == nil && shard <= 0 {
		err = errors.New("must be positive")
	}
	if err != nil {
		return usagef("--max-shard-size: %v", err)
	}
	layout, err := parseShardLayoutFlag(o.ShardLayout)
	if err != nil {
		return err
	}
	switch o.Device {
	case merge.DeviceAuto, merge.DeviceCPU, merge.DeviceCUDA:
	default:
		return usagef("--device must be auto, cpu or cuda, not %q", o.Device)
	}
	staging, err := pipeline.ParseStaging(o.Staging)
	if err != nil {
		return usagef("--staging: %v", err)
	}
	if st, err := os.Stat(dir); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if !pipeline.IsAdapterDir(dir) {
		return fmt.Errorf("%s: no adapter_config.json: not a PEFT adapter or trainer checkpoint", filepath.Join(dir, "adapter_config.json"))
	}
	publish, what := config.PublishAdapter, "adapter"
	var ggufTypes []gguf.FileType
	if o.GGUF != "" {
		if ggufTypes, err = gguf.ParseFileTypes(o.GGUF); err != nil {
			return usagef("--gguf: %v", err)
		}
		if quant != nil {
			return usagef("--gguf is made from a 16/32-bit merge, not with --dtype %s", o.DType)
		}
		if o.GGUFPath != "" && (strings.HasPrefix(o.GGUFPath, "/") || path.Clean(o.GGUFPath) != o.GGUFPath || strings.HasPrefix(o.GGUFPath, "..")) {
			return usagef("--gguf-path %q is not a clean relative folder path", o.GGUFPath)
		}
		publish, what = config.PublishGGUF, "GGUF files"
	}
	if o.Merged {
		publish, what = config.PublishMerged, "merged model"
		if len(ggufTypes) > 0 {
			what = "merged model and GGUF files"
		}
	}
	msg := o.Message
	if msg == "" {
		msg = "Upload " + what + " of {checkpoint}"
		if abs, err := filepath.Abs(dir); err == nil {
			if _, ok := watcher.ParseStep(filepath.Base(abs)); ok {
				msg += " (step {step})"
			}
		}
	}
	t := pipeline.Target{
		Repo: o.Repo, Private: o.Private, Revision: o.Revision, PathInRepo: o.PathInRepo, Publish: publish,
		Layout: config.LayoutTags, Tag: o.Tag, Message: msg, CreatePR: o.CreatePR,
		Base: o.Base, DType: dt, MaxShardSize: shard, ShardLayout: layout, Device: o.Device, KeepTied: o.KeepTied,
		Quant: quant, Staging: staging, GGUF: ggufTypes, GGUFPath: o.GGUFPath, GGUFPre: o.GGUFPre,
	}

	a := defaultAuthEnv()
	tok, err := a.findToken(ctx, g)
	if err != nil {
		return err
	}
	if !tok.Found() {
		return errors.New("no Hub token: run `hubsync login`, or set $HF_TOKEN, or pass --token")
	}
	g.log.Debug().Str("token_source", tok.String()).Msg("using token")
	var journal hub.Journal
	if bj, err := hub.OpenBoltJournal(uploadJournalPath(a.getenv)); err != nil {
		g.log.Warn().Err(err).Msg("upload journal unavailable: an interrupted upload will restart its files from zero")
	} else {
		defer bj.Close()
		journal = bj
	}
	c, err := newHubClient(g, tok.Value, func(ho *hub.Options) {
		ho.Journal = journal
		ho.ParallelFiles = o.ParallelFiles
		ho.ParallelParts = o.ParallelParts
	})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	if o.Repo, err = qualifyRepoID(ctx, c, o.Repo, false); err != nil {
		return err
	}
	t.Repo = o.Repo
	prog := newProgressReporter(ctx, g, 5*time.Second)
	defer prog.close()
	env := &pipeline.Env{Client: c, Log: g.log, Backends: mergeBackends}
	res, err := pipeline.PublishCheckpoint(ctx, env, t, dir, pipeline.PublishOptions{
		Staging: o.StagingDir, Progress: prog.event, MergeProgress: mergeProgressLogger(g, 10*time.Second),
	})
	prog.close()
	if err != nil {
		return err
	}
	var commits []publishedURL
	for _, pc := range res.Commits {
		commits = append(commits, publishedURL{Commit: pc.OID, URL: pc.URL, PR: pc.PullRequestURL, NoOp: pc.NoOp})
	}
	return printPublished(g, o, commits)
}
