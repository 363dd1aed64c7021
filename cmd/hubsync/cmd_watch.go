package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/watcher"
)

// watchOptions are the flags of `hubsync watch`. Each has a configuration key; a flag given on the command line
// overrides the key.
type watchOptions struct {
	Config string

	// Daemon-wide keys.
	StateDir      string
	StagingDir    string
	MetricsAddr   string
	Poll          time.Duration
	Settle        time.Duration
	Marker        string
	Policy        string
	Device        string
	ParallelFiles int
	ParallelParts int
	Retries       int
	MaxBackoff    time.Duration
	StopAfter     int

	// Watch-entry keys (applied to the DIR arguments, else to every entry of the file).
	Repo            string
	Private         bool
	Revision        string
	Publish         string
	Merged          bool
	AdapterOnly     bool
	AdapterRepo     string
	Layout          string
	TagFormat       string
	BranchFormat    string
	SubfolderFormat string
	Base            string
	DType           string
	QuantRepo       string
	MaxShardSize    string
	ShardLayout     string
	KeepTied        bool
	Staging         string
	GGUF            []string
	GGUFPath        string
	GGUFPre         string
	PruneKeep       int
	CommitMessage   string
	Quant           quantFlags
}

// AddFlags registers the flags.
func (o *watchOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Config, "config", "", "YAML configuration file (see config.example.yaml); flags override its keys")
	f.StringVar(&o.StateDir, "state-dir", "", "journal directory [state_dir] (default $STATE_DIRECTORY, else $XDG_STATE_HOME/hubsync)")
	f.StringVar(&o.StagingDir, "staging-dir", "", "where checkpoints are pinned and merged [staging_dir] (default <DIR>/.hubsync-staging)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on this loopback address, e.g. 127.0.0.1:9109 [metrics_addr]")
	f.DurationVar(&o.Poll, "poll", 0, "rescan every interval instead of filesystem events, for NFS/Lustre (0: inotify) [poll]")
	f.DurationVar(&o.Settle, "settle", config.DefaultSettle, "unchanged time after which a checkpoint without a marker is complete [settle]")
	f.StringVar(&o.Marker, "marker", config.DefaultMarker, "completion marker file a trainer callback may write [marker]")
	f.StringVar(&o.Policy, "policy", config.PolicyLatest, "when checkpoints arrive faster than they upload: latest (skip queued older ones) or all [policy]")
	f.StringVar(&o.Device, "device", config.DeviceAuto, "merge device: auto, cpu or cuda [device]")
	f.IntVar(&o.ParallelFiles, "parallel-files", config.DefaultParallelFiles, "files uploaded at once [upload.parallel_files]")
	f.IntVar(&o.ParallelParts, "parallel-parts", config.DefaultParallelParts, "parts of one file uploaded at once [upload.parallel_parts]")
	f.IntVar(&o.Retries, "retries", config.DefaultRetries, "retries of a failed Hub request before the job records an error [upload.retries]")
	f.DurationVar(&o.MaxBackoff, "max-backoff", config.DefaultMaxBackoff, "longest wait between a job's tries after a fixable error (token, network, 5xx, full disk) [upload.max_backoff]")
	f.IntVar(&o.StopAfter, "stop-after", 0, "exit 0 once the journal holds this many finished checkpoints (published, failed or skipped; this run or earlier ones) and nothing is in progress (0: run until stopped)")

	f.StringVar(&o.Repo, "repo", "", "model repo OWNER/NAME to publish to [watch[].repo]")
	f.BoolVar(&o.Private, "private", false, "create the repo private [watch[].private]")
	f.StringVar(&o.Revision, "revision", config.DefaultRevision, "branch to publish to [watch[].revision]")
	f.StringVar(&o.Publish, "publish", config.PublishMerged, "what to publish: merged, adapter, both, or gguf (only the --gguf files and a card) [watch[].publish]")
	f.BoolVar(&o.Merged, "merged", false, "publish the adapter merged into its base (same as --publish merged)")
	f.BoolVar(&o.AdapterOnly, "adapter-only", false, "publish the PEFT adapter only (same as --publish adapter)")
	f.StringVar(&o.AdapterRepo, "adapter-repo", "", "repo for the adapter with --publish both (default <repo>-adapter) [watch[].adapter_repo]")
	f.StringVar(&o.Layout, "layout", config.LayoutTags, "tags (root of the revision, a tag per step), branches (a branch per step) or subfolders [watch[].layout]")
	f.StringVar(&o.TagFormat, "tag-format", config.DefaultTagFormat, "tag of each step ({step}, {checkpoint}) [watch[].tag_format]")
	f.StringVar(&o.BranchFormat, "branch-format", config.DefaultBranchFormat, "branch of each step [watch[].branch_format]")
	f.StringVar(&o.SubfolderFormat, "subfolder-format", config.DefaultSubfolderFormat, "folder of each step [watch[].subfolder_format]")
	f.StringVar(&o.Base, "base", "", "base model: local dir or Hub repo id (default: the adapter's base_model_name_or_path) [watch[].base]")
	f.StringVar(&o.DType, "dtype", "", "merged dtype: bf16, fp16 or fp32 (default: the base's), or nf4|fp4 for a merged bitsandbytes 4-bit model, "+
		"or a pair such as bf16,nf4 to publish both outputs of each checkpoint (the 4-bit one to --quant-repo) [watch[].dtype; 4-bit flags: watch[].quant.*]")
	f.StringVar(&o.QuantRepo, "quant-repo", "", "repo for the 4-bit output with a dtype pair such as --dtype bf16,nf4 (default <repo>-bnb-4bit) [watch[].quant_repo]")
	o.Quant.addFlags(f)
	f.StringVar(&o.MaxShardSize, "max-shard-size", "5GB", "largest output shard [watch[].max_shard_size]")
	f.StringVar(&o.ShardLayout, "shard-layout", "delta", shardLayoutHelp+" [watch[].shard_layout]")
	f.BoolVar(&o.KeepTied, "keep-tied", false, keepTiedHelp+" [watch[].keep_tied]")
	f.StringVar(&o.Staging, "staging", config.StagingAuto, stagingHelp+" [watch[].staging]")
	f.StringSliceVar(&o.GGUF, "gguf", nil, "also publish every merged checkpoint as GGUF, one <repo name>-<TYPE>.gguf per type in the merged model's commit: "+ggufTypesHelp+" (comma-separated) [watch[].gguf]")
	f.StringVar(&o.GGUFPath, "gguf-path", "", "repo folder of the GGUF files, relative to the merged model's (default: beside it) [watch[].gguf_path]")
	f.StringVar(&o.GGUFPre, "gguf-pre", "", ggufPreHelp+" [watch[].gguf_pre]")
	f.IntVar(&o.PruneKeep, "prune-keep", 0, "keep only the N newest per-step tags/branches/folders on the Hub (0: never delete) [watch[].prune.keep]")
	f.StringVar(&o.CommitMessage, "commit-message", config.DefaultCommitMessage, "commit summary ({step}, {checkpoint}) [watch[].commit_message]")
}

func newWatchCommand(g *globalOptions) *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch [DIR...] [--config FILE] [--repo OWNER/NAME] [--merged --base B] [--poll 10s]",
		Short: "Watch training output directories and publish every complete checkpoint",
		Long: `watch is the daemon: it watches each DIR (a trainer's output_dir) for checkpoint-N directories, decides
when one is complete (a .hubsync-complete marker, else trainer_state.json with global_step N, valid safetensors
headers and nothing changed for --settle), pins it (hard links into the staging directory) so rotation cannot
take it away, merges the adapter into its base (or takes the adapter), uploads and commits it as one commit,
tags it, and prunes old steps (--prune-keep). tmp-checkpoint-* is ignored. --dtype bf16,nf4 publishes two merges
of each checkpoint: bf16 to --repo and the bitsandbytes 4-bit model to --quant-repo (default <repo>-bnb-4bit),
each committed and tagged (docs/merged-4bit.md). --gguf q4_k_m,q8_0 also publishes each merge as GGUF files
(llama.cpp, Ollama) in the merged model's commit; --publish gguf publishes only them and their card (docs/gguf-cli.md).

Every stage is recorded in a journal ($STATE_DIRECTORY/journal.db, else $XDG_STATE_HOME/hubsync/journal.db):
after a crash or restart, unfinished jobs resume where they stopped (finished upload parts are not sent again,
a commit that landed is found by its id and not made twice) before new checkpoints are taken. "hubsync status"
shows the jobs. One daemon per directory: a second one exits 1 naming the holder of DIR/.hubsync.lock.

Checkpoints that arrive faster than they upload: --policy latest (default) skips queued older ones (recorded and
shown by status), --policy all publishes every one. Merges run one at a time; uploading one checkpoint overlaps
merging the next. A bad checkpoint (corrupt file, shape mismatch, unsupported adapter) fails alone with its
reason; fixable errors (token refused, network, DNS, 5xx, 429, disk full, base not downloadable yet) make the job
wait and retry with backoff capped at 10 minutes, indefinitely and across restarts ("hubsync status" says why and
when it tries next). The token is checked at start: a rejected or read-only token exits 1 before any merge
(under systemd, $NOTIFY_SOCKET set, it is logged, shown in STATUS= and checked again until it is right).

Configuration: --config FILE (config.example.yaml documents every key); each flag overrides the key named in
brackets. DIR arguments add watch entries built from the watch flags; without DIR arguments, watch flags that
are given override every entry of the file. Environment: HF_TOKEN (or --token, $CREDENTIALS_DIRECTORY/hf_token,
the keyring), HF_ENDPOINT, HF_HOME (base models are found in and downloaded to its hub cache),
STATE_DIRECTORY, HF_HUB_DISABLE_XET=1 (no Xet, whatever --xet or upload.xet say), HF_XET_CACHE (the Xet shard
cache that dedupes a checkpoint against the previous ones; default $HF_HOME/xet). Configuration errors exit 2.

As a systemd service (deploy/hubsync.service): Type=notify (READY=1 once watching, STATUS= lines, STOPPING=1),
WatchdogSec= pings from the live main loop. SIGTERM/SIGINT parks the current upload part and exits 0; the next
start resumes.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runWatch(cmd, g, o, args) },
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// buildConfig loads the file (or the defaults), applies the flags that were given and the DIR arguments,
// resolves the environment and validates.
func (o *watchOptions) buildConfig(flags *pflag.FlagSet, g *globalOptions, args []string, getenv func(string) string) (*config.Config, error) {
	var cfg *config.Config
	if o.Config != "" {
		c, err := config.Load(o.Config)
		if err != nil {
			return nil, usageError{err}
		}
		cfg = c
	} else {
		cfg = config.Default()
	}
	set := flags.Changed
	if set("endpoint") {
		cfg.Endpoint = g.Endpoint
	}
	if set("log-format") {
		cfg.LogFormat = g.LogFormat
	}
	if set("state-dir") {
		cfg.StateDir = o.StateDir
	}
	if set("staging-dir") {
		cfg.StagingDir = o.StagingDir
	}
	if set("metrics-addr") {
		cfg.MetricsAddr = o.MetricsAddr
	}
	if set("poll") {
		cfg.Poll = o.Poll
	}
	if set("settle") {
		cfg.Settle = o.Settle
	}
	if set("marker") {
		cfg.Marker = o.Marker
	}
	if set("policy") {
		cfg.Policy = o.Policy
	}
	if set("device") {
		cfg.Device = o.Device
	}
	if set("parallel-files") {
		cfg.Upload.ParallelFiles = o.ParallelFiles
	}
	if set("parallel-parts") {
		cfg.Upload.ParallelParts = o.ParallelParts
	}
	if set("retries") {
		cfg.Upload.Retries = o.Retries
	}
	if set("max-backoff") {
		cfg.Upload.MaxBackoff = o.MaxBackoff
	}
	if set("stall-timeout") {
		cfg.Upload.StallTimeout = g.StallTimeout
	}
	if set("xet") {
		cfg.Upload.Xet = g.Xet
	}
	if o.Merged && o.AdapterOnly {
		return nil, usagef("--merged and --adapter-only exclude each other")
	}
	publish, publishSet := o.Publish, set("publish")
	if o.Merged || o.AdapterOnly {
		if publishSet {
			return nil, usagef("give either --publish or --merged/--adapter-only")
		}
		publish, publishSet = config.PublishMerged, true
		if o.AdapterOnly {
			publish = config.PublishAdapter
		}
	}
	var shard config.ByteSize
	if set("max-shard-size") {
		s, err := config.ParseByteSize(o.MaxShardSize)
		if err != nil {
			return nil, usagef("--max-shard-size: %v", err)
		}
		shard = s
	}
	apply := func(w *config.Watch) {
		str := func(flag string, dst *string, v string) {
			if set(flag) {
				*dst = v
			}
		}
		str("repo", &w.Repo, o.Repo)
		str("revision", &w.Revision, o.Revision)
		str("adapter-repo", &w.AdapterRepo, o.AdapterRepo)
		str("layout", &w.Layout, o.Layout)
		str("tag-format", &w.TagFormat, o.TagFormat)
		str("branch-format", &w.BranchFormat, o.BranchFormat)
		str("subfolder-format", &w.SubfolderFormat, o.SubfolderFormat)
		str("base", &w.Base, o.Base)
		str("dtype", &w.DType, o.DType)
		str("quant-repo", &w.QuantRepo, o.QuantRepo)
		str("shard-layout", &w.ShardLayout, o.ShardLayout)
		str("commit-message", &w.CommitMessage, o.CommitMessage)
		str("staging", &w.Staging, o.Staging)
		str("gguf-path", &w.GGUFPath, o.GGUFPath)
		str("gguf-pre", &w.GGUFPre, o.GGUFPre)
		if set("gguf") {
			w.GGUF = append([]string(nil), o.GGUF...)
		}
		if publishSet {
			w.Publish = publish
		}
		if set("private") {
			w.Private = o.Private
		}
		if set("max-shard-size") {
			w.MaxShardSize = shard
		}
		if set("prune-keep") {
			w.Prune.Keep = o.PruneKeep
		}
		if set("keep-tied") {
			w.KeepTied = o.KeepTied
		}
		o.Quant.applyWatch(&w.Quant)
	}
	if len(args) > 0 {
		if o.Config != "" && len(cfg.Watch) > 0 {
			return nil, usagef("give directories either as arguments or in the configuration file's watch list, not both")
		}
		cfg.Watch = nil
		for _, dir := range args {
			w := config.DefaultWatch()
			w.Dir = dir
			apply(&w)
			cfg.Watch = append(cfg.Watch, w)
		}
	} else {
		for i := range cfg.Watch {
			apply(&cfg.Watch[i])
		}
	}
	if err := cfg.Resolve(getenv); err != nil {
		return nil, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

func runWatch(cmd *cobra.Command, g *globalOptions, o *watchOptions, args []string) error {
	ctx := cmd.Context()
	if o.StopAfter < 0 {
		return usagef("--stop-after must not be negative")
	}
	cfg, err := o.buildConfig(cmd.Flags(), g, args, os.Getenv)
	if err != nil {
		return err
	}
	if cfg.LogFormat != g.LogFormat {
		g.LogFormat = cfg.LogFormat
		if err := g.setup(); err != nil {
			return err
		}
	}
	if err := syncStderr(g); err != nil {
		return err
	}
	g.Endpoint = cfg.Endpoint
	log := g.log.With().Str("component", "watch").Logger()

	// Locks first: a second daemon on the same directory names the holder rather than the busy journal.
	var locks []*watcher.DirLock
	defer func() {
		for _, l := range locks {
			l.Unlock()
		}
	}()
	for _, w := range cfg.Watch {
		l, err := pipeline.LockDir(w.Dir, cfg, log)
		if err != nil {
			return err
		}
		locks = append(locks, l)
	}

	tok, err := defaultAuthEnv().findToken(ctx, g)
	if err != nil {
		return err
	}
	if !tok.Found() {
		return errors.New("no Hub token: set $HF_TOKEN, use $CREDENTIALS_DIRECTORY/hf_token (systemd LoadCredential=), run `hubsync login`, or pass --token")
	}
	log.Info().Str("token_source", tok.String()).Str("endpoint", cfg.Endpoint).Msg("using token")
	notifier := pipeline.NewSystemdNotifier()
	// Before any merge: a wrong token is said now, not after the first checkpoint's merge.
	tok, err = waitForToken(ctx, g, cfg, tok, log, os.Getenv, notifier, func() (hub.Token, error) {
		return defaultAuthEnv().findToken(ctx, g)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	env, err := pipeline.OpenEnv(cfg, pipeline.EnvOptions{
		Token: tok.Value, Version: hubsyncVersion(), Log: g.log, Notify: notifier,
		Backends: mergeBackends,
	})
	if err != nil {
		return err
	}
	defer env.Close()
	d, err := pipeline.NewDaemon(cfg, *env, pipeline.Options{Locks: locks, StopAfter: o.StopAfter,
		MaxBackoff: cfg.Upload.MaxBackoff})
	if err != nil {
		return err
	}
	if err := d.Run(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Fprintln(g.stderr, "hubsync: stopped; unfinished jobs resume at the next start")
	}
	return nil
}

// lockedWriter serialises writes to a writer that is not safe for concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// syncStderr makes the logger safe for the pipeline's goroutines when stderr is not a file (an *os.File is:
// every log line is one write); the logger is rebuilt on the wrapped writer.
func syncStderr(g *globalOptions) error {
	if _, ok := g.stderr.(*os.File); ok {
		return nil
	}
	if _, ok := g.stderr.(*lockedWriter); ok {
		return nil
	}
	g.stderr = &lockedWriter{w: g.stderr}
	return g.setup()
}
