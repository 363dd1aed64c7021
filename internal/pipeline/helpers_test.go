package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/metrics"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// testToken is the write token of user "w" on the test Hub; readToken a read-only token of user "r".
const (
	testToken = "hf_pipeline_test_secret"
	readToken = "hf_pipeline_read_secret"
)

// fixture is the package's shared test base model (generated once).
type fixture struct {
	dir  string
	info *testmodel.BaseInfo
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

// testBase returns a small NF4 double-quant base with 16-bit weights large enough (a few MB merged) for a
// 1 MB shard limit to give several shards and the test Hub's 256 KiB multipart threshold to split them in parts.
func testBase(t testing.TB) fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hubsync-pipeline-base-")
		if err != nil {
			fixErr = err
			return
		}
		spec := testmodel.Tiny(testmodel.ArchLlama)
		spec.Hidden, spec.Intermediate, spec.Heads, spec.KVHeads, spec.Vocab = 128, 256, 4, 2, 1000
		spec.Seed = 11
		fix.dir = filepath.Join(dir, "base")
		fix.info, fixErr = testmodel.GenerateBase(context.Background(), fix.dir, spec)
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix.dir != "" {
		os.RemoveAll(filepath.Dir(fix.dir))
	}
	os.Exit(code)
}

// testAdapter is the adapter spec the tests' checkpoints use.
func testAdapter() testmodel.AdapterSpec {
	return testmodel.AdapterSpec{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj", "down_proj"}, Seed: 3}
}

// writeCheckpoint writes outputs/checkpoint-step for the test base.
func writeCheckpoint(t testing.TB, outputs string, step int, mod func(*testmodel.CheckpointOptions)) string {
	t.Helper()
	opts := testmodel.CheckpointOptions{Base: testBase(t).info, OptimizerSize: 4 << 10}
	if mod != nil {
		mod(&opts)
	}
	dir, err := testmodel.WriteCheckpoint(context.Background(), outputs, step, testAdapter(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTestHub starts a test Hub with small multipart settings.
func newTestHub(t testing.TB) *hubtest.Server {
	t.Helper()
	return hubtest.NewTestServer(t, hubtest.Options{
		Tokens: []hubtest.Token{
			{Name: "w", Value: testToken, Write: true},
			{Name: "r", Value: readToken},
		},
		MinPartSize: 64 << 10, ChunkSize: 64 << 10, MultipartThreshold: 128 << 10,
	})
}

// testLogger logs to the test at debug level (only shown on failure or -v).
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true, TimeFormat: "15:04:05.000"}).
		Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig is a resolved, validated configuration watching dirs (one watch entry each, mod applied).
func testConfig(t testing.TB, hubURL string, mod func(*config.Config), dirs ...string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Endpoint = hubURL
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Settle = 150 * time.Millisecond
	cfg.Policy = config.PolicyAll
	cfg.Device = config.DeviceCPU
	cfg.Lock.Heartbeat = 100 * time.Millisecond
	cfg.Lock.StaleAfter = 2 * time.Second
	for i, d := range dirs {
		w := config.DefaultWatch()
		w.Dir = d
		w.Repo = "w/model-" + string(rune('a'+i))
		w.MaxShardSize = config.ByteSize(testShard)
		cfg.Watch = append(cfg.Watch, w)
	}
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Resolve(func(k string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// openTestEnv opens the pipeline environment for cfg against the test Hub, with fast client retries.
func openTestEnv(t testing.TB, cfg *config.Config, token string) *Env {
	t.Helper()
	retry := hub.TestFastRetries()
	env, err := OpenEnv(cfg, EnvOptions{Token: token, Log: testLogger(t), Retry: &retry})
	if err != nil {
		t.Fatal(err)
	}
	env.MergeThreads = 2
	return env
}

// testOptions are fast daemon options.
func testOptions(mod func(*Options)) Options {
	o := Options{Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, ProgressInterval: 20 * time.Millisecond,
		StatusInterval: 50 * time.Millisecond, Debounce: 20 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	return o
}

// running is a daemon running in the background.
type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
}

// startDaemon runs a daemon until the test ends or stop is called.
func startDaemon(t testing.TB, cfg *config.Config, env *Env, opts Options) *running {
	t.Helper()
	d, err := NewDaemon(cfg, *env, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the daemon and waits for Run (nil expected).
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop within 20s of cancellation")
	}
}

// waitFinished waits for n finished jobs (bounded).
func (r *running) waitFinished(t testing.TB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.d.WaitFinished(ctx, n); err != nil {
		t.Fatalf("waiting for %d finished jobs (have %d): %v", n, r.d.Finished(), err)
	}
}

// jobs lists the journal's jobs.
func jobsOf(t testing.TB, j *journal.Journal) []*journal.Job {
	t.Helper()
	jobs, err := j.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// stages renders "step:stage" for every job.
func stages(jobs []*journal.Job) string {
	var parts []string
	for _, j := range jobs {
		parts = append(parts, strconv.FormatInt(j.Step, 10)+":"+string(j.Stage))
	}
	return strings.Join(parts, " ")
}

// testClient is a Hub client for inspecting what landed.
func testClient(t testing.TB, s *hubtest.Server) *hub.Client {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: testToken, Retry: hub.TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// repoFiles returns path → sha256 (LFS oid, or of the content for small files) of every file at rev, without
// .gitattributes.
func repoFiles(t testing.TB, c *hub.Client, repo, rev string) map[string]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dl")
	if _, err := c.Download(context.Background(), repo, rev, hub.DownloadOptions{LocalDir: dir}); err != nil {
		t.Fatalf("download %s@%s: %v", repo, rev, err)
	}
	return dirDigests(t, dir)
}

// dirDigests returns rel path → sha256 of every regular file under dir (not .cache, not .gitattributes).
func dirDigests(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if d.Name() == ".cache" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == ".gitattributes" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// referenceMerge merges checkpoint dir locally with merge.Run (the same options the pipeline uses) and returns
// the digests of its files (model card included: it names the checkpoint, not a local path).
func referenceMerge(t testing.TB, ckpt string, shard int64, repo string) map[string]string {
	t.Helper()
	return referenceMergeLayout(t, ckpt, shard, repo, "")
}

// referenceMergeLayout is referenceMerge with a shard layout ("": the default).
func referenceMergeLayout(t testing.TB, ckpt string, shard int64, repo string, layout export.ShardLayout) map[string]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref")
	if _, err := merge.Run(context.Background(), merge.Options{Base: testBase(t).dir, Adapter: ckpt, Out: out,
		MaxShardSize: shard, ShardLayout: layout, Device: merge.DeviceCPU, Threads: 1, CardRepoID: repo}); err != nil {
		t.Fatal(err)
	}
	return dirDigests(t, out)
}

// withoutCard drops README.md (adapter cards are generated by the publish, so they have no local reference).
func withoutCard(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k != "README.md" {
			out[k] = v
		}
	}
	return out
}

// sameDigests compares two path → digest maps.
func sameDigests(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	var g, w []string
	for k := range got {
		g = append(g, k)
	}
	for k := range want {
		w = append(w, k)
	}
	sort.Strings(g)
	sort.Strings(w)
	if strings.Join(g, ",") != strings.Join(w, ",") {
		t.Errorf("%s: files %v, want %v", what, g, w)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s sha256 %s, want %s", what, k, got[k], v)
		}
	}
}

// commitCount counts the commits of rev.
func commitCount(t testing.TB, c *hub.Client, repo, rev string) int {
	t.Helper()
	cs, err := c.ListCommits(context.Background(), repo, rev, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

// waitFor polls cond until it holds (bounded).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testShard is the tests' max shard size: several shards of the test base, each above the multipart threshold.
const testShard = 400_000

// metricValue returns a counter's or gauge's value, or a histogram's sample count (0 when absent).
func metricValue(t testing.TB, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, x := range mf.GetMetric() {
			switch {
			case x.GetCounter() != nil:
				v += x.GetCounter().GetValue()
			case x.GetGauge() != nil:
				v += x.GetGauge().GetValue()
			case x.GetHistogram() != nil:
				v += float64(x.GetHistogram().GetSampleCount())
			}
		}
		return v
	}
	return 0
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
