package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// referenceMergeQuant merges ckpt locally as the pipeline does with dtype (bf16) and, when quant is set, the
// default 4-bit options (double quant, blocksize 64, uint8 storage): the files a single-dtype publish has.
func referenceMergeQuant(t testing.TB, ckpt, repo string, dt tensor.DType, quant string) map[string]string {
	t.Helper()
	o := merge.Options{Base: testBase(t).dir, Adapter: ckpt, Out: filepath.Join(t.TempDir(), "ref"),
		MaxShardSize: testShard, DType: dt, Device: merge.DeviceCPU, Threads: 1, CardRepoID: repo}
	if quant != "" {
		o.Quant = &merge.QuantOutput{Type: quant, Blocksize: 64, DoubleQuant: true, Storage: tensor.U8}
	}
	if _, err := merge.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return dirDigests(t, o.Out)
}

// TestQuantTargetIsSingleDType: the 4-bit half of dtype bf16,nf4 is the target a single-dtype nf4 entry (compute
// dtype bf16) publishing to the quant repo makes; quant.compute_dtype overrides the pair's float dtype.
func TestQuantTargetIsSingleDType(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pair    func(*config.Watch)
		compute string
	}{
		{"float dtype is the compute dtype", func(w *config.Watch) {}, "bf16"},
		{"quant.compute_dtype", func(w *config.Watch) { w.Quant.ComputeDType = "fp16" }, "fp16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := config.DefaultWatch()
			w.Dir, w.Repo, w.DType = "/o", "me/m", "bf16,nf4"
			tc.pair(&w)
			pair, err := TargetFromWatch(w, "cpu")
			if err != nil {
				t.Fatal(err)
			}
			if pair.Quant != nil || pair.DType != tensor.BF16 || pair.QuantRepo != "me/m-bnb-4bit" {
				t.Errorf("16-bit half: Quant %+v, DType %s, QuantRepo %q", pair.Quant, pair.DType, pair.QuantRepo)
			}
			if got := pair.kinds(); !reflect.DeepEqual(got, []string{KindMerged, KindMerged4Bit}) {
				t.Errorf("kinds %v", got)
			}
			s := config.DefaultWatch()
			s.Dir, s.Repo, s.DType, s.Quant.ComputeDType = "/o", "me/m-bnb-4bit", "nf4", tc.compute
			single, err := TargetFromWatch(s, "cpu")
			if err != nil {
				t.Fatal(err)
			}
			if got := pair.quantTarget(); !reflect.DeepEqual(*got, single) {
				t.Errorf("quant target\n %+v\nwant\n %+v", *got, single)
			}
			ds := pair.dests(20, "checkpoint-20")
			if len(ds) != 2 || ds[1].Repo != "me/m-bnb-4bit" || ds[1].Tag != "step-20" || ds[0].Tag != "step-20" ||
				commitID(ds[0], "/o", 20, "tags") == commitID(ds[1], "/o", 20, "tags") {
				t.Errorf("dests %+v", ds)
			}
		})
	}
}

// TestDaemonPublishesBothDTypes: dtype bf16,nf4 (and publish both) publishes each of two checkpoints three
// times: the bf16 merge to the repo, the nf4 merge to <repo>-bnb-4bit, the adapter to <repo>-adapter, each
// tagged; the 4-bit files are those of a single-dtype nf4 merge.
func TestDaemonPublishesBothDTypes(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	ckpts := map[int]string{}
	for _, step := range []int{10, 20} {
		ckpts[step] = writeCheckpoint(t, outputs, step, nil)
	}
	cfg := testConfig(t, s.URL(), func(c *config.Config) {
		c.Watch[0].DType = "bf16,nf4"
		c.Watch[0].Publish = config.PublishBoth
	}, outputs)
	w := cfg.Watch[0]
	if w.QuantRepo != w.Repo+"-bnb-4bit" {
		t.Fatalf("quant repo %q", w.QuantRepo)
	}
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	r := startDaemon(t, cfg, env, testOptions(nil))
	r.waitFinished(t, 2)
	r.stop(t)
	if got := stages(jobsOf(t, env.Journal)); got != "10:committed 20:committed" {
		t.Fatalf("jobs %s", got)
	}
	c := testClient(t, s)
	for _, step := range []int{10, 20} {
		tag := fmt.Sprintf("step-%d", step)
		sameDigests(t, "bf16 "+tag, repoFiles(t, c, w.Repo, tag), referenceMergeQuant(t, ckpts[step], w.Repo, tensor.BF16, ""))
		sameDigests(t, "nf4 "+tag, repoFiles(t, c, w.QuantRepo, tag), referenceMergeQuant(t, ckpts[step], w.QuantRepo, tensor.BF16, "nf4"))
		sameDigests(t, "adapter "+tag, withoutCard(repoFiles(t, c, w.AdapterRepo, tag)), adapterDigests(t, ckpts[step]))
	}
	for _, rp := range []string{w.Repo, w.QuantRepo, w.AdapterRepo} {
		if n := commitCount(t, c, rp, "main"); n != 3 {
			t.Errorf("%s: %d commits on main, want 3", rp, n)
		}
	}
	j, err := env.Journal.Get(context.Background(), journal.JobID(outputs, 20))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(j.Tags, []string{"step-20", "step-20", "step-20"}) {
		t.Errorf("job 20 tags %v", j.Tags)
	}
}

// TestDaemonQuantPairRestart stops the daemon after job 20 merged both outputs, and after its first (bf16)
// commit landed but before the 4-bit one: the next run neither merges again nor commits the bf16 output twice,
// and both repos end with one commit per checkpoint.
func TestDaemonQuantPairRestart(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"merged", PointCommitLanded} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			s := newTestHub(t)
			outputs := filepath.Join(t.TempDir(), "outputs")
			ckpts := map[int]string{}
			for _, step := range []int{10, 20} {
				ckpts[step] = writeCheckpoint(t, outputs, step, nil)
			}
			cfg := testConfig(t, s.URL(), func(c *config.Config) { c.Watch[0].DType = "bf16,nf4" }, outputs)
			w := cfg.Watch[0]

			env1 := openTestEnv(t, cfg, testToken)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			stopped := make(chan struct{})
			d1, err := NewDaemon(cfg, *env1, testOptions(func(o *Options) {
				o.Hook = func(ev StageEvent) {
					if ev.Job.Step == 20 && ev.Point == point {
						once.Do(func() { close(stopped); cancel() })
					}
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- d1.Run(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("first run: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("first run did not stop")
			}
			select {
			case <-stopped:
			default:
				t.Fatalf("never reached %s", point)
			}
			commitsRun1 := s.Stats().Commits
			env1.Close()

			env2 := openTestEnv(t, cfg, testToken)
			defer env2.Close()
			var remerged atomic.Int64
			r := startDaemon(t, cfg, env2, testOptions(func(o *Options) {
				o.Hook = func(ev StageEvent) {
					if ev.Job.Step == 20 && ev.Point == "merged" {
						remerged.Add(1)
					}
				}
			}))
			waitFor(t, "every job committed", func() bool {
				return stages(jobsOf(t, env2.Journal)) == "10:committed 20:committed"
			})
			r.stop(t)
			if n := remerged.Load(); n != 0 {
				t.Errorf("job 20 was merged again after a restart at %s", point)
			}
			c := testClient(t, s)
			for _, step := range []int{10, 20} {
				tag := fmt.Sprintf("step-%d", step)
				sameDigests(t, "bf16 "+tag, repoFiles(t, c, w.Repo, tag), referenceMergeQuant(t, ckpts[step], w.Repo, tensor.BF16, ""))
				sameDigests(t, "nf4 "+tag, repoFiles(t, c, w.QuantRepo, tag), referenceMergeQuant(t, ckpts[step], w.QuantRepo, tensor.BF16, "nf4"))
			}
			for _, rp := range []string{w.Repo, w.QuantRepo} {
				if n := commitCount(t, c, rp, "main"); n != 3 {
					t.Errorf("%s: %d commits on main, want 3", rp, n)
				}
			}
			if st := s.Stats(); st.Commits != 4 {
				t.Errorf("the Hub made %d commits, want 4 (first run %d)", st.Commits, commitsRun1)
			}
			if point == PointCommitLanded && commitsRun1 != 3 {
				t.Errorf("first run made %d commits, want 3 (job 10's two, job 20's bf16)", commitsRun1)
			}
		})
	}
}

// TestQuantPairDests: with every layout the 4-bit commit goes to the quant repo at the place the float one goes to
// in its repo (same tag, branch or folder), with its own commit id.
func TestQuantPairDests(t *testing.T) {
	for _, tc := range []struct {
		layout, branch, prefix, tag string
	}{
		{config.LayoutTags, "main", "", "step-20"},
		{config.LayoutBranches, "step-20", "", ""},
		{config.LayoutSubfolders, "main", "checkpoint-20", ""},
	} {
		w := config.DefaultWatch()
		w.Dir, w.Repo, w.DType, w.Layout, w.Publish, w.AdapterRepo = "/o", "me/m", "fp16,fp4", tc.layout, config.PublishBoth, "me/a"
		tg, err := TargetFromWatch(w, "cpu")
		if err != nil {
			t.Fatal(err)
		}
		ds := tg.dests(20, "checkpoint-20")
		if len(ds) != 3 {
			t.Fatalf("%s: %d dests", tc.layout, len(ds))
		}
		for i, want := range []struct{ kind, repo string }{{KindMerged, "me/m"}, {KindMerged4Bit, "me/m-bnb-4bit"}, {KindAdapter, "me/a"}} {
			d := ds[i]
			if d.Kind != want.kind || d.Repo != want.repo || d.Branch != tc.branch || d.Prefix != tc.prefix || d.Tag != tc.tag {
				t.Errorf("%s: dest %d %+v", tc.layout, i, d)
			}
		}
		if tg.Also4BitDType != tensor.F16 || tg.Also4Bit.Type != "fp4" {
			t.Errorf("%s: 4-bit %+v in %s", tc.layout, tg.Also4Bit, tg.Also4BitDType)
		}
	}
}
