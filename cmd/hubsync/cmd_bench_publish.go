package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// benchPublishOptions are the flags of "bench publish".
type benchPublishOptions struct {
	Preset    string
	Dir       string
	Parts     int
	PartSize  int64
	Only      string
	Layouts   string
	Keep      bool
	SampleInt time.Duration
}

// benchPublishToken is the write token of the bench's local Hub (never a real one).
const benchPublishToken = "hf_bench_publish_local"

func newBenchPublishCommand(g *globalOptions) *cobra.Command {
	o := &benchPublishOptions{}
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish generated checkpoints with push --merged to a local Hub and report disk, RSS and bytes sent",
		Long: `bench publish generates an NF4 double-quant base of the preset's shape and two checkpoints of one run
(r=16 LoRA on q_proj,v_proj), starts a local Hub (hub/hubtest, data on disk under --dir) and runs
"hubsync push --merged" of this executable as child processes:

  staging: checkpoint 1 with --staging disk, then --staging none, each to a fresh Hub: wall time, peak disk
           used by the child's staging and state directories (sampled), peak RSS of pass 1 (until the first
           preupload/batch request reaches the Hub) and of pass 2 (the upload), from /proc.
  layout:  checkpoints 1 then 2 with --shard-layout delta, then hf, each layout to a fresh Hub
           (--staging none): the bytes the Hub received for checkpoint 2. With --only all, the staging none
           run is delta's checkpoint 1.

Each Hub's data directory is deleted before the next one starts. Nothing here is a timed assertion: it prints
figures.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchPublish(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Preset, "preset", "tinyllama", "model shape: tinyllama (1.1B) or llama3-8b")
	f.StringVar(&o.Dir, "dir", "", "working directory (default: a new directory under $TMPDIR); needs room for the base, the Hub's copy and, with disk staging, the staged shards")
	f.IntVar(&o.Parts, "parts", 8, "push --parallel-parts: parts of one file in flight")
	f.Int64Var(&o.PartSize, "part-size", 0, "the local Hub's multipart part size in bytes (default: hubtest's)")
	f.StringVar(&o.Only, "only", "all", "what to run: all, staging or layout")
	f.StringVar(&o.Layouts, "layouts", "delta,hf", "shard layouts to compare for checkpoint 2 (with --only all, delta reuses the --staging none run as its checkpoint 1)")
	f.BoolVar(&o.Keep, "keep", false, "keep the generated base and checkpoints (a later run with the same --dir reuses them)")
	f.DurationVar(&o.SampleInt, "sample", 100*time.Millisecond, "sampling interval of RSS, disk use and Hub requests")
	return cmd
}

// publishRun is what one child push measured.
type publishRun struct {
	wall             time.Duration
	rss1, rss2       int64 // peak VmRSS sampled in pass 1 and pass 2
	rusage           int64 // the child's peak RSS from rusage (whole process)
	peakDisk         int64 // peak bytes allocated under the staging and state directories
	received         int64 // storage bytes the Hub received during the push
	objects          int   // LFS objects that received bytes
	pass1, pass2     time.Duration
	sawPass2         bool
	stagingLogged    string
	stagingLoggedWhy string
}

// benchHub is a local Hub with its data directory, replaced by a fresh one for each measurement.
type benchHub struct {
	srv *hubtest.Server
	dir string
}

func startBenchHub(dir string, partSize int64) (*benchHub, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	srv, err := hubtest.NewServer(hubtest.Options{DataDir: dir, ChunkSize: partSize,
		Tokens: []hubtest.Token{{Name: "bench", Value: benchPublishToken, Write: true}}})
	if err != nil {
		return nil, err
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return &benchHub{srv: srv, dir: dir}, nil
}

func (h *benchHub) close() error {
	err := h.srv.Close()
	return errors.Join(err, os.RemoveAll(h.dir))
}

func runBenchPublish(ctx context.Context, g *globalOptions, o *benchPublishOptions) error {
	spec, err := benchPreset(o.Preset)
	if err != nil {
		return err
	}
	if o.Only != "all" && o.Only != "staging" && o.Only != "layout" {
		return usagef("--only must be all, staging or layout, not %q", o.Only)
	}
	if o.Parts < 1 {
		return usagef("--parts must be at least 1")
	}
	layouts := map[string]bool{}
	for _, l := range strings.Split(o.Layouts, ",") {
		if l != "delta" && l != "hf" {
			return usagef("--layouts takes delta and hf, not %q", l)
		}
		layouts[l] = true
	}
	spec.FastRandomCodes = true
	ws, err := newBenchWorkspace(o.Dir, "hubsync-bench-publish-", o.Keep)
	if err != nil {
		return err
	}
	dir := ws.dir
	base, outputs := ws.input("base"), ws.input("outputs")
	hubDir, work := ws.scratch("hub"), ws.scratch("work")
	defer ws.cleanup()
	w := g.stdout
	fmt.Fprintf(w, "bench publish: preset %s, %d layers, hidden %d, intermediate %d, vocab %d; nf4 double-quant base, r=16 on q_proj,v_proj, bf16 output; %d parts in flight\n",
		o.Preset, spec.Layers, spec.Hidden, spec.Intermediate, spec.Vocab, o.Parts)
	printBenchMachine(w, dir)

	t0 := time.Now()
	bi, reused, err := benchBase(ctx, base, spec)
	if err != nil {
		return fmt.Errorf("generate base: %w", err)
	}
	ad := testmodel.AdapterSpec{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "v_proj"}, Seed: 3}
	var ckpts []string
	for _, step := range []int{500, 1000} {
		c := filepath.Join(outputs, fmt.Sprintf("checkpoint-%d", step))
		if _, err := os.Stat(filepath.Join(c, "adapter_model.safetensors")); err == nil && reused {
			ckpts = append(ckpts, c)
			continue
		}
		os.RemoveAll(c)
		c, err := testmodel.WriteCheckpoint(ctx, outputs, step, ad, testmodel.CheckpointOptions{Base: bi, OptimizerSize: 1 << 10})
		if err != nil {
			return fmt.Errorf("generate checkpoint: %w", err)
		}
		ckpts = append(ckpts, c)
	}
	inBytes, err := dirWeightBytes(base)
	if err != nil {
		return err
	}
	var outBytes int64
	for _, wt := range bi.Weights {
		n := int64(1)
		for _, d := range wt.Shape {
			n *= d
		}
		outBytes += n * int64(wt.DType.Size())
	}
	fmt.Fprintf(w, "inputs: base %s (%s), 2 checkpoints; merged output %s; generated in %.1fs\n", mergeHumanSize(inBytes),
		map[bool]string{true: "reused", false: "new"}[reused], mergeHumanSize(outBytes), time.Since(t0).Seconds())
	if avail, err := fsutil.AvailableBytes(dir); err == nil {
		need := outBytes + outBytes/10 // the Hub's copy
		if o.Only != "layout" {
			need += outBytes // disk staging
		}
		fmt.Fprintf(w, "free space in %s: %s (needs about %s)\n", dir, mergeHumanSize(avail), mergeHumanSize(need))
		if avail < need {
			return fmt.Errorf("%s has %s free; this bench needs about %s", dir, mergeHumanSize(avail), mergeHumanSize(need))
		}
	}

	push := func(h *benchHub, ckpt, repo, staging, layout string) (publishRun, error) {
		os.RemoveAll(work)
		r, out, err := runPushChild(ctx, h, work, o, []string{"push", ckpt, "--repo", repo, "--merged", "--base", base,
			"--device", "cpu", "--staging", staging, "--shard-layout", layout, "--parallel-parts", strconv.Itoa(o.Parts)})
		if err != nil {
			return r, fmt.Errorf("push %s (staging %s, layout %s): %w\n%s", filepath.Base(ckpt), staging, layout, err, lastLines(out, 20))
		}
		return r, nil
	}

	printLayout := func(layout string, r1, r2 publishRun) {
		fmt.Fprintf(w, "layout %-5s: checkpoint-500 Hub received %s in %d object(s) (%.1fs); checkpoint-1000 Hub received %s in %d object(s) (%.1fs, peak RSS %d MiB)\n",
			layout, mergeHumanSize(r1.received), r1.objects, r1.wall.Seconds(), mergeHumanSize(r2.received), r2.objects, r2.wall.Seconds(), max(r2.rss1, r2.rss2)>>20)
	}
	if o.Only != "layout" {
		for _, staging := range []string{"disk", "none"} {
			h, err := startBenchHub(hubDir, o.PartSize)
			if err != nil {
				return err
			}
			r, err := push(h, ckpts[0], "bench/staging-"+staging, staging, "delta")
			if err == nil {
				fmt.Fprintf(w, "staging %-4s: push --merged checkpoint-500: wall %7.1fs (pass 1 %.1fs, pass 2 %.1fs); peak staging+state disk %s; peak RSS pass 1 %d MiB, pass 2 %d MiB (rusage %d MiB); Hub received %s in %d object(s); log: staging %s (%s)\n",
					staging, r.wall.Seconds(), r.pass1.Seconds(), r.pass2.Seconds(), mergeHumanSize(r.peakDisk), r.rss1>>20, r.rss2>>20, r.rusage>>20,
					mergeHumanSize(r.received), r.objects, r.stagingLogged, r.stagingLoggedWhy)
			}
			// The none run is checkpoint 1 of the delta layout: publish checkpoint 2 on the same Hub.
			if err == nil && staging == "none" && o.Only == "all" && layouts["delta"] {
				var r2 publishRun
				if r2, err = push(h, ckpts[1], "bench/staging-"+staging, staging, "delta"); err == nil {
					printLayout("delta", r, r2)
					delete(layouts, "delta")
				}
			}
			if cerr := h.close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
	if o.Only != "staging" {
		for _, layout := range []string{"delta", "hf"} {
			if !layouts[layout] {
				continue
			}
			h, err := startBenchHub(hubDir, o.PartSize)
			if err != nil {
				return err
			}
			var r1, r2 publishRun
			r1, err = push(h, ckpts[0], "bench/layout-"+layout, "none", layout)
			if err == nil {
				r2, err = push(h, ckpts[1], "bench/layout-"+layout, "none", layout)
			}
			if cerr := h.close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			printLayout(layout, r1, r2)
		}
	}
	return nil
}

// runPushChild runs this executable with args against h, isolated under work (its own HOME and state
// directory, --staging-dir work/staging, the token in HF_TOKEN), sampling the child's RSS, the disk used by
// work/staging and work/state, and the Hub's requests every o.SampleInt.
func runPushChild(ctx context.Context, h *benchHub, work string, o *benchPublishOptions, args []string) (publishRun, []byte, error) {
	var r publishRun
	exe, err := os.Executable()
	if err != nil {
		return r, nil, err
	}
	home, state, staging := filepath.Join(work, "home"), filepath.Join(work, "state"), filepath.Join(work, "staging")
	for _, d := range []string{home, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return r, nil, err
		}
	}
	args = append(args, "--endpoint", h.srv.URL(), "--log-format", "json", "--staging-dir", staging)
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "HF_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "STATE_DIRECTORY",
			"CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_ENDPOINT",
			"DBUS_SESSION_BUS_ADDRESS":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "HOME="+home, "HF_HOME="+filepath.Join(home, "hf"), "XDG_STATE_HOME="+state,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_RUNTIME_DIR="+home, "HF_TOKEN="+benchPublishToken)

	before := h.srv.Stats()
	uploadOps := func(s hubtest.Stats) int64 {
		return s.Requests[hubtest.OpPreupload] + s.Requests[hubtest.OpBatch]
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, nil, err
	}
	var mu sync.Mutex
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(o.SampleInt)
		defer t.Stop()
		pid := cmd.Process.Pid
		for {
			rss := procRSS(pid)
			disk := dirAllocated(staging) + dirAllocated(state)
			second := uploadOps(h.srv.Stats()) > uploadOps(before)
			mu.Lock()
			if second && !r.sawPass2 {
				r.sawPass2, r.pass1 = true, time.Since(start)
			}
			if second {
				r.rss2 = max(r.rss2, rss)
			} else {
				r.rss1 = max(r.rss1, rss)
			}
			r.peakDisk = max(r.peakDisk, disk)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err = cmd.Wait()
	r.wall = time.Since(start)
	close(done)
	<-sampled
	if r.sawPass2 {
		r.pass2 = r.wall - r.pass1
	}
	after := h.srv.Stats()
	oids, n := receivedSince(before, after)
	r.received, r.objects = n, len(oids)
	out := buf.Bytes()
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.Contains(line, []byte(`"staging of the merged shards"`)) {
			r.stagingLogged, r.stagingLoggedWhy = jsonField(line, "staging"), jsonField(line, "why")
		}
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return r, out, fmt.Errorf("exit code %d", ee.ExitCode())
		}
		return r, out, err
	}
	r.rusage = childMaxRSS(cmd.ProcessState)
	return r, out, nil
}

// receivedSince returns the LFS objects (sorted) that received storage bytes between two Hub snapshots and
// the storage bytes received in between.
func receivedSince(before, after hubtest.Stats) ([]string, int64) {
	var oids []string
	for oid, n := range after.Objects {
		if n > before.Objects[oid] {
			oids = append(oids, oid)
		}
	}
	sort.Strings(oids)
	return oids, after.BytesReceived - before.BytesReceived
}

// procRSS is a running process's resident set size in bytes from /proc (0 where unknown).
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// dirAllocated is the disk space allocated to the files under dir (0 when it does not exist); files that vanish
// during the walk are skipped.
func dirAllocated(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		n += allocatedBytes(fi)
		return nil
	})
	return n
}

// jsonField extracts a string field from one JSON log line ("" when absent).
func jsonField(line []byte, key string) string {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		return ""
	}
	s, _ := rec[key].(string)
	return s
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
