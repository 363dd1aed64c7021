package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// The demo's fixed setup.
const (
	demoRepo      = "demo/tiny-llama"
	demoUser      = "demo"
	demoFirstStep = 10
	// demoShardSize makes the merged model two shards, so the demo shows sharding and an index.
	demoShardSize = 1_000_000
	// demoMultipart makes the Hub hand out multipart uploads for the shards (parts of demoPartSize).
	demoMultipart = 256 << 10
	demoPartSize  = 64 << 10
	// demoSettle is the watch settle period (the trainer's files are complete once unchanged this long).
	demoSettle = 400 * time.Millisecond
)

// demoOptions are the flags of `hubsync demo`.
type demoOptions struct {
	Dir         string
	Keep        bool
	Checkpoints int
	Interval    time.Duration
	Timeout     time.Duration
}

func newDemoCommand(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole product locally on a tiny model and check what lands on the (local) Hub",
		Long: `demo runs hubsync end to end on this machine, with no network and no token:

  1. starts a local Hub (the server behind "hubsync devhub") on 127.0.0.1 with a throwaway token;
  2. generates a tiny Llama-shaped base model stored 4-bit (bitsandbytes NF4, double quantization);
  3. runs a simulated trainer that saves --checkpoints LoRA checkpoints, one every --interval, in the
     Trainer's order (adapter weights, config, tokenizer, optimizer state, trainer_state.json last), with
     half-written files visible along the way;
  4. runs the watch daemon in this process, configured as
       hubsync watch OUTPUTS --repo demo/tiny-llama --merged --base BASE --policy all --settle 400ms \
         --max-shard-size 1MB
     until every checkpoint is merged, sharded, uploaded (multipart for the shards), committed and tagged;
  5. prints what landed (commits, tags, files with sizes), downloads every tag into a temporary HF cache and
     checks the merged weights: byte for byte against a local merge of the same checkpoint, and against an
     independent float64 reference merge within the merge tests' tolerance (1 ulp of the output dtype plus
     2^-17 of the tensor's largest value), printing the largest error.

The report goes to standard output, logs (info level) to standard error. Exit 0 only when every check passes.
Everything lives in a temporary directory that is removed at the end (--keep keeps it; --dir chooses it: it
must be empty or absent). Your Hub token, --endpoint and HF_* variables are not used: the demo talks only to its
own local Hub.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "working directory (must be empty or absent; default: a new temporary directory)")
	f.BoolVar(&o.Keep, "keep", false, "keep the working directory (base, checkpoints, Hub data, downloads) at the end")
	f.IntVar(&o.Checkpoints, "checkpoints", 3, "number of checkpoints the simulated trainer saves")
	f.DurationVar(&o.Interval, "interval", time.Second, "time between two checkpoint saves")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up when the daemon has not published everything by then")
	return cmd
}

// demoLayout names the working directory's parts.
type demoLayout struct {
	Root, Hub, Base, Outputs, State, Cache, Reference, HFHome string
}

func newDemoLayout(root string) demoLayout {
	j := func(n string) string { return filepath.Join(root, n) }
	return demoLayout{Root: root, Hub: j("hub"), Base: j("base"), Outputs: j("outputs"), State: j("state"),
		Cache: j("downloads"), Reference: j("reference"), HFHome: j("hf-home")}
}

// demoBaseSpec is the tiny 4-bit base: Llama-shaped, 4 layers, hidden 128, NF4 with double quantization.
func demoBaseSpec() testmodel.BaseSpec {
	return testmodel.BaseSpec{
		Arch: testmodel.ArchLlama, Hidden: 128, Intermediate: 344, Layers: 4, Heads: 4, KVHeads: 2, Vocab: 515,
		DType: tensor.BF16, Quant: testmodel.QuantNF4, DoubleQuant: true, Blocksize: 64, Seed: 2024,
	}
}

// demoAdapterSpec is the LoRA the trainer trains: every linear layer, r 8, alpha 16.
func demoAdapterSpec() testmodel.AdapterSpec {
	return testmodel.AdapterSpec{R: 8, Alpha: 16, TargetModules: testmodel.AllLinear(), Seed: 7}
}

// demoSteps are the trainer's save steps.
func demoSteps(n int) []int {
	steps := make([]int, n)
	for i := range steps {
		steps[i] = demoFirstStep * (i + 1)
	}
	return steps
}

func runDemo(ctx context.Context, g *globalOptions, o *demoOptions) (err error) {
	if o.Checkpoints < 1 || o.Checkpoints > 20 {
		return usagef("--checkpoints must be between 1 and 20")
	}
	if o.Interval < 0 || o.Timeout <= 0 {
		return usagef("--interval must not be negative and --timeout must be positive")
	}
	root, cleanup, err := demoDir(o.Dir)
	if err != nil {
		return err
	}
	defer func() {
		if o.Keep {
			fmt.Fprintf(g.stdout, "\nkept the working directory %s\n", root)
			return
		}
		if cerr := cleanup(); cerr != nil && err == nil {
			err = fmt.Errorf("demo: removing %s: %w", root, cerr)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d := &demo{g: g, o: o, l: newDemoLayout(root), out: g.stdout}
	return d.run(ctx)
}

// demoDir makes the working directory and returns the function that removes what the demo put there.
func demoDir(dir string) (string, func() error, error) {
	if dir == "" {
		root, err := os.MkdirTemp("", "hubsync-demo-")
		if err != nil {
			return "", nil, fmt.Errorf("demo: %w", err)
		}
		return root, func() error { return os.RemoveAll(root) }, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("demo: --dir %s: %w", dir, err)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return "", nil, fmt.Errorf("demo: --dir: %w", err)
		}
		return abs, func() error { return os.RemoveAll(abs) }, nil
	case err != nil:
		return "", nil, fmt.Errorf("demo: --dir %s: %w", abs, err)
	case len(entries) > 0:
		return "", nil, usagef("--dir %s is not empty", abs)
	}
	// An existing empty directory: remove only what the demo created inside it.
	return abs, func() error {
		entries, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		var errs []error
		for _, e := range entries {
			errs = append(errs, os.RemoveAll(filepath.Join(abs, e.Name())))
		}
		return errors.Join(errs...)
	}, nil
}

// demo is one run of `hubsync demo`.
type demo struct {
	g   *globalOptions
	o   *demoOptions
	l   demoLayout
	out io.Writer

	srv    *hubtest.Server
	token  string
	client *hub.Client
	base   *testmodel.BaseInfo
	ckpts  map[int64]string // step → checkpoint directory
	failed int              // failed checks
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	log := d.g.log.With().Str("component", "demo").Logger()
	if err := d.startHub(); err != nil {
		return err
	}
	defer d.srv.Close()
	d.printf("hubsync demo: everything runs on this machine (no network, no real token)\n\n")
	d.printf("  working dir  %s\n", d.l.Root)
	d.printf("  local Hub    %s (data in %s)\n", d.srv.URL(), d.l.Hub)

	spec := demoBaseSpec()
	base, err := testmodel.GenerateBase(ctx, d.l.Base, spec)
	if err != nil {
		return fmt.Errorf("demo: generating the base model: %w", err)
	}
	d.base = base
	d.printf("  base model   %s: %s, %d layers, hidden %d, bitsandbytes NF4 + double quant, %s\n",
		d.l.Base, spec.Arch, spec.Layers, spec.Hidden, journal.HumanBytes(demoDirSize(d.l.Base)))
	steps := demoSteps(d.o.Checkpoints)
	d.printf("  trainer      %s: LoRA r=8 on every linear layer, %d checkpoints (steps %s), one every %s\n",
		d.l.Outputs, len(steps), demoJoinInts(steps), d.o.Interval)
	d.printf("  daemon       hubsync watch %s --repo %s --merged --base %s --policy all --settle %s --max-shard-size 1MB\n\n",
		d.l.Outputs, demoRepo, d.l.Base, demoSettle)

	cfg, err := d.config()
	if err != nil {
		return err
	}
	env, err := pipeline.OpenEnv(cfg, pipeline.EnvOptions{
		Token: d.token, Version: hubsyncVersion(), Log: d.g.log, Backends: mergeBackends, NoMetrics: true,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer env.Close()
	env.Getenv = d.getenv
	if d.client, err = hub.New(hub.Options{Endpoint: d.srv.URL(), Token: d.token, Version: hubsyncVersion(), Logger: d.g.log}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer d.client.CloseIdleConnections()

	var mu sync.Mutex
	var failures []string
	daemon, err := pipeline.NewDaemon(cfg, *env, pipeline.Options{
		StopAfter: len(steps), Backoff: time.Second, MaxBackoff: 5 * time.Second,
		Hook: func(ev pipeline.StageEvent) {
			e := log.Info().Str("checkpoint", filepath.Base(ev.Job.Dir)).Int64("step", ev.Job.Step).Str("stage", ev.Point)
			if ev.Err != nil {
				e = e.Err(ev.Err)
			}
			e.Msg("daemon")
			if ev.Point == string(journal.Failed) || ev.Point == string(journal.Skipped) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("step %d %s: %s", ev.Job.Step, ev.Point, ev.Job.Reason))
				mu.Unlock()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	// The trainer and the daemon run side by side until every checkpoint is published.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	trainerErr := make(chan error, 1)
	go func() {
		dirs, err := testmodel.SimulateTrainer(runCtx, d.l.Outputs, steps, d.o.Interval, demoAdapterSpec(),
			testmodel.CheckpointOptions{Base: base, ChunkSize: 16 << 10, ChunkDelay: 2 * time.Millisecond,
				FileDelay: 20 * time.Millisecond})
		if err == nil {
			log.Info().Int("checkpoints", len(dirs)).Msg("trainer finished")
		}
		trainerErr <- err
	}()
	if err := daemon.Run(runCtx); err != nil {
		return fmt.Errorf("demo: the daemon failed: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("demo: not everything was published within --timeout %s: %w", d.o.Timeout, err)
	}
	if err := <-trainerErr; err != nil {
		return fmt.Errorf("demo: the simulated trainer failed: %w", err)
	}
	elapsed := time.Since(start)
	for _, f := range failures {
		d.printf("FAILED  %s\n", f)
		d.failed++
	}
	d.ckpts = map[int64]string{}
	for _, s := range steps {
		d.ckpts[int64(s)] = filepath.Join(d.l.Outputs, fmt.Sprintf("checkpoint-%d", s))
	}
	if err := d.report(ctx, cfg.Watch[0], steps, elapsed); err != nil {
		return err
	}
	if d.failed > 0 {
		return fmt.Errorf("demo: %d check(s) failed", d.failed)
	}
	d.printf("\nall checks passed in %s\n", time.Since(start).Round(10*time.Millisecond))
	return nil
}

// startHub starts the local Hub with a throwaway write token (never printed).
func (d *demo) startHub() error {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	d.token = "hf_demo_" + hex.EncodeToString(b)
	srv, err := hubtest.NewServer(hubtest.Options{
		DataDir: d.l.Hub, Tokens: []hubtest.Token{{Name: demoUser, Value: d.token, Write: true}},
		MultipartThreshold: demoMultipart, MinPartSize: demoPartSize,
		Logger: d.g.log.With().Str("component", "devhub").Logger(),
	})
	if err != nil {
		return fmt.Errorf("demo: local Hub: %w", err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		srv.Close()
		return fmt.Errorf("demo: local Hub: %w", err)
	}
	d.srv = srv
	return nil
}

// getenv is the environment the demo's daemon sees: only what the demo sets, nothing of the user's (their
// HF_ENDPOINT, HF_HOME or state directory must not leak in).
func (d *demo) getenv(k string) string {
	switch k {
	case "HF_HOME":
		return d.l.HFHome
	case "HF_HUB_CACHE":
		return filepath.Join(d.l.HFHome, "hub")
	case "STATE_DIRECTORY":
		return d.l.State
	}
	return ""
}

// config is the configuration `hubsync watch OUTPUTS --repo demo/tiny-llama --merged --base BASE --policy all
// --settle 400ms --max-shard-size 1MB` would build, with the demo's state directory and Hub.
func (d *demo) config() (*config.Config, error) {
	cfg := config.Default()
	cfg.Endpoint = d.srv.URL()
	cfg.StateDir = d.l.State
	cfg.Settle = demoSettle
	cfg.Policy = config.PolicyAll
	cfg.Device = config.DeviceAuto
	w := config.DefaultWatch()
	w.Dir = d.l.Outputs
	w.Repo = demoRepo
	w.Publish = config.PublishMerged
	w.Base = d.l.Base
	w.MaxShardSize = demoShardSize
	cfg.Watch = []config.Watch{w}
	if err := os.MkdirAll(d.l.Outputs, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := cfg.Resolve(d.getenv); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return cfg, nil
}

// report prints what landed on the Hub and checks it.
func (d *demo) report(ctx context.Context, w config.Watch, steps []int, elapsed time.Duration) error {
	c := d.client
	d.printf("published %d checkpoints in %s\n\n", len(steps), elapsed.Round(10*time.Millisecond))
	d.printf("repo %s/%s\n", c.Endpoint(), demoRepo)
	commits, err := c.ListCommits(ctx, demoRepo, w.Revision, 0)
	if err != nil {
		return fmt.Errorf("demo: listing commits: %w", err)
	}
	d.printf("\ncommits on %s (newest first):\n", w.Revision)
	for _, cm := range commits {
		d.printf("  %s  %s\n", demoShortID(cm.ID), cm.Title)
	}
	// Every checkpoint is one commit, on top of the repo's initial commit.
	if want := len(steps) + 1; len(commits) != want {
		d.check(false, "%d commits on %s, want %d (one per checkpoint, plus the initial commit)", len(commits), w.Revision, want)
	}
	refs, err := c.ListRefs(ctx, demoRepo)
	if err != nil {
		return fmt.Errorf("demo: listing refs: %w", err)
	}
	tags := map[string]string{}
	for _, t := range refs.Tags {
		tags[t.Name] = t.TargetCommit
	}
	byID := map[string]hub.CommitInfo{}
	for _, cm := range commits {
		byID[cm.ID] = cm
	}
	d.printf("\ntags:\n")
	for _, s := range steps {
		name := w.TagName(int64(s))
		oid, ok := tags[name]
		if !ok {
			d.check(false, "tag %s is missing", name)
			continue
		}
		cm, ok := byID[oid]
		title := cm.Title
		if !ok {
			title = "(not on " + w.Revision + ")"
		}
		d.printf("  %-10s → %s  %s\n", name, demoShortID(oid), title)
		d.check(ok && strings.Contains(cm.Title, fmt.Sprintf("checkpoint-%d", s)),
			"tag %s points at the commit of checkpoint-%d", name, s)
	}

	last := w.TagName(int64(steps[len(steps)-1]))
	tree, err := c.ListTree(ctx, demoRepo, last, "", true)
	if err != nil {
		return fmt.Errorf("demo: listing files: %w", err)
	}
	d.printf("\nfiles at %s:\n", last)
	for _, e := range tree {
		if e.Type != "file" {
			continue
		}
		kind := ""
		if e.IsLFS() {
			kind = "  (LFS)"
		}
		d.printf("  %-36s %10s%s\n", e.Path, journal.HumanBytes(e.Size), kind)
	}

	st := d.srv.Stats()
	var parts int64
	for _, n := range st.PartsStored {
		parts += n
	}
	d.printf("\ntransfers: %d LFS objects stored, %d multipart uploads (%d parts), %s received by storage\n",
		st.ObjectsStored, st.UploadsStarted, parts, journal.HumanBytes(st.BytesReceived))
	d.check(st.TokenLeaks == 0, "%d requests sent the token to a storage URL", st.TokenLeaks)

	d.printf("\nchecks (each tag downloaded into %s):\n", d.l.Cache)
	for _, s := range steps {
		if err := d.checkStep(ctx, w, int64(s)); err != nil {
			return err
		}
	}
	return nil
}

// check counts a failed check and prints it.
func (d *demo) check(ok bool, format string, args ...any) {
	if !ok {
		d.failed++
		d.printf("  FAILED: "+format+"\n", args...)
	}
}

// checkStep downloads the tag of step and compares it with a local merge of the same checkpoint (bytes) and
// with the float64 reference merge (values).
func (d *demo) checkStep(ctx context.Context, w config.Watch, step int64) error {
	tag := w.TagName(step)
	ckpt := d.ckpts[step]
	snap, err := d.client.Download(ctx, demoRepo, tag, hub.DownloadOptions{CacheDir: d.l.Cache})
	if err != nil {
		return fmt.Errorf("demo: downloading %s: %w", tag, err)
	}
	local := filepath.Join(d.l.Reference, fmt.Sprintf("checkpoint-%d", step))
	res, err := merge.Run(ctx, merge.Options{
		Base: d.l.Base, Adapter: ckpt, Out: local, MaxShardSize: demoShardSize, Device: config.DeviceAuto,
		Backends: mergeBackends, CardRepoID: demoRepo,
	})
	if err != nil {
		return fmt.Errorf("demo: local merge of %s: %w", ckpt, err)
	}
	same, diffs, err := compareWithLocalMerge(snap, res)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ref, err := testmodel.ReferenceMerge(d.l.Base, ckpt)
	if err != nil {
		return fmt.Errorf("demo: reference merge of %s: %w", ckpt, err)
	}
	rc, err := testmodel.CompareDir(snap, ref)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	status := "ok"
	if len(diffs) > 0 || len(rc.Problems) > 0 {
		status = "FAILED"
		d.failed++
	}
	d.printf("  %-8s %s: %d files equal to a local merge byte for byte; %d tensors (%d elements) vs the float64 reference: max |error| %.3g, worst error/tolerance %.2f\n",
		tag, status, same, rc.Tensors, rc.Elements, rc.MaxAbs, rc.WorstRatio)
	for _, p := range append(diffs, rc.Problems...) {
		d.printf("           %s\n", p)
	}
	return nil
}

// compareWithLocalMerge compares the downloaded snapshot with a local merge's files, every file byte for byte
// (sha256). It returns the number of equal files and the differences.
func compareWithLocalMerge(snap string, res *merge.Result) (int, []string, error) {
	var diffs []string
	same := 0
	want := map[string]bool{}
	for _, f := range res.Files {
		want[f.Path] = true
		got, err := os.ReadFile(filepath.Join(snap, filepath.FromSlash(f.Path)))
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: missing from the Hub: %v", f.Path, err))
			continue
		}
		if sum := sha256.Sum256(got); sum != f.SHA256 || int64(len(got)) != f.Size {
			diffs = append(diffs, fmt.Sprintf("%s: sha256 %x (%d bytes) on the Hub, %x (%d bytes) locally",
				f.Path, sum[:8], len(got), f.SHA256[:8], f.Size))
			continue
		}
		same++
	}
	err := filepath.WalkDir(snap, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(snap, p)
		rel = filepath.ToSlash(rel)
		if !want[rel] && rel != ".gitattributes" {
			diffs = append(diffs, fmt.Sprintf("%s: on the Hub but not in the local merge", rel))
		}
		return nil
	})
	return same, diffs, err
}

// demoDirSize is the total size of the regular files under dir.
func demoDirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func demoShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func demoJoinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
