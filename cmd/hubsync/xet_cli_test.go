package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// xetCLIServer is the CLI tests' Hub with the Xet CAS (devhub --xet).
func xetCLIServer(t *testing.T) *hubtest.Server {
	t.Helper()
	return hubtest.NewTestServer(t, hubtest.Options{
		Tokens: []hubtest.Token{{Name: "w", Value: hubcliToken, Write: true}}, Xet: true,
		MinPartSize: 64 << 10, ChunkSize: 64 << 10, MultipartThreshold: 256 << 10,
	})
}

// lfsPuts is the number of LFS storage uploads (basic and part PUTs) that reached the server.
func lfsPuts(st hubtest.Stats) int64 {
	return st.Requests[hubtest.OpBasicPut] + st.Requests[hubtest.OpPartPut]
}

// writeRandomFile writes n pseudo-random bytes (seeded) to p.
func writeRandomFile(t *testing.T, p string, n int, seed uint64) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestXetCLICommands: `push CKPT` (adapter), `push CKPT --merged` and `upload` use Xet with the default
// --xet auto against devhub --xet (xorbs and a shard received, no LFS PUT, the Hub token never at the CAS),
// fall back to LFS against a Hub without Xet, and publish the same files on both; the shard cache is kept
// under $HF_HOME/xet by default.
func TestXetCLICommands(t *testing.T) {
	home := hubcliIsolate(t)
	f := newCkptFixture(t, 40)
	ckpt := filepath.Join(f.outputs, "checkpoint-40")
	folder := t.TempDir()
	writeRandomFile(t, filepath.Join(folder, "model.safetensors"), 600<<10, 9)
	writeRandomFile(t, filepath.Join(folder, "sub", "weights.bin"), 300<<10, 10)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"push-adapter", []string{"push", ckpt, "--repo", "w/xet-adapter"}},
		{"push-merged", []string{"push", ckpt, "--repo", "w/xet-merged", "--merged", "--base", f.base, "--device", "cpu"}},
		{"push-merged-unstaged", []string{"push", ckpt, "--repo", "w/xet-stream", "--merged", "--base", f.base, "--device", "cpu", "--staging", "none"}},
		{"upload", []string{"upload", "w/xet-upload", folder}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := tc.args[1] // upload REPO DIR
			if tc.args[0] == "push" {
				repo = tc.args[3] // push DIR --repo REPO
			}
			xs, plain := xetCLIServer(t), hubcliServer(t)
			for _, s := range []*hubtest.Server{xs, plain} {
				args := append([]string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}, tc.args...)
				code, out, errb := hubcliRun(t, args...)
				if code != 0 {
					t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errb)
				}
				if strings.Contains(out+errb, hubcliToken) {
					t.Error("token printed")
				}
			}
			st := xs.Stats()
			if st.Xet.ShardsStored < 1 || st.Xet.XorbsReceived < 1 || st.Xet.FilesStored < 1 {
				t.Errorf("devhub --xet: %d shards, %d xorbs, %d files; want Xet used", st.Xet.ShardsStored, st.Xet.XorbsReceived, st.Xet.FilesStored)
			}
			if n := lfsPuts(st); n != 0 {
				t.Errorf("devhub --xet: %d LFS PUTs, want 0 (every large file through Xet)", n)
			}
			// HF_XET_CACHE unset: the shard cache is under $HF_HOME/xet.
			if ents, err := os.ReadDir(filepath.Join(home, "hf", "xet")); err != nil || len(ents) == 0 {
				t.Errorf("no Xet shard cache under $HF_HOME/xet: %v", err)
			}
			ps := plain.Stats()
			if ps.ObjectsStored < 1 || lfsPuts(ps) < 1 {
				t.Errorf("plain devhub: %d objects, %d PUTs; want the LFS fallback", ps.ObjectsStored, lfsPuts(ps))
			}
			if st.TokenLeaks != 0 || ps.TokenLeaks != 0 {
				t.Errorf("token leaks: xet %d, plain %d", st.TokenLeaks, ps.TokenLeaks)
			}
			sameFiles(t, repo+" (Xet against LFS)", hubDigests(t, xs, repo, "main"), hubDigests(t, plain, repo, "main"))
		})
	}
}

// TestXetCLIOnAndDisabled: with the checkpoint path, --xet on fails clearly (exit 1, naming Xet) against a
// Hub without Xet, and HF_HUB_DISABLE_XET=1 makes the default auto use LFS against devhub --xet.
func TestXetCLIOnAndDisabled(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 50)
	ckpt := filepath.Join(f.outputs, "checkpoint-50")
	plain := hubcliServer(t)
	code, _, errb := hubcliRun(t, "--endpoint", plain.URL(), "--token", hubcliToken, "--xet", "on", "push", ckpt, "--repo", "w/on")
	if code != 1 || !strings.Contains(strings.ToLower(errb), "xet") {
		t.Errorf("--xet on without Xet: exit %d, stderr %s", code, errb)
	}
	if cs := plain.Stats().Commits; cs != 0 {
		t.Errorf("--xet on without Xet made %d commits", cs)
	}
	xs := xetCLIServer(t)
	t.Setenv("HF_HUB_DISABLE_XET", "1")
	if code, _, errb := hubcliRun(t, "--endpoint", xs.URL(), "--token", hubcliToken, "push", ckpt, "--repo", "w/env"); code != 0 {
		t.Fatalf("HF_HUB_DISABLE_XET=1: exit %d\n%s", code, errb)
	}
	if st := xs.Stats(); st.Xet.XorbsReceived != 0 || st.Xet.ShardsStored != 0 || lfsPuts(st) == 0 {
		t.Errorf("HF_HUB_DISABLE_XET=1: %d xorbs, %d shards, %d LFS PUTs; want LFS only", st.Xet.XorbsReceived, st.Xet.ShardsStored, lfsPuts(st))
	}
}

// cacheLayout lists a repo's HF cache folder: every path under it, with "-> target" for links and the sha256 of
// regular files.
func cacheLayout(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" -> "+target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out = append(out, rel+" "+hex.EncodeToString(sum[:]))
		default:
			out = append(out, rel+"/")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestXetCLIDownload: `hubsync download` of files stored through Xet reconstructs them from the CAS
// (reconstructions, xorb fetches, no storage GET) into the HF cache, with the same layout and bytes as the plain
// path (HF_HUB_DISABLE_XET=1); the Hub token never reaches the CAS.
func TestXetCLIDownload(t *testing.T) {
	home := hubcliIsolate(t)
	xs := xetCLIServer(t)
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "model.safetensors"), 700<<10, 21)
	writeRandomFile(t, filepath.Join(dir, "extra", "adapter.bin"), 200<<10, 22)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--endpoint", xs.URL(), "--token", hubcliToken}
	if code, _, errb := hubcliRun(t, append(g, "push", dir, "--repo", "w/dl")...); code != 0 {
		t.Fatalf("push: %s", errb)
	}
	if st := xs.Stats(); st.Xet.FilesStored != 2 {
		t.Fatalf("%d files stored through Xet, want 2", st.Xet.FilesStored)
	}
	download := func(cache string) string {
		t.Helper()
		code, out, errb := hubcliRun(t, append(g, "download", "w/dl", "--cache-dir", cache)...)
		if code != 0 {
			t.Fatalf("download: exit %d\n%s", code, errb)
		}
		if !strings.HasPrefix(strings.TrimSpace(out), cache) {
			t.Errorf("download printed %q, want a snapshot under %s", out, cache)
		}
		return strings.TrimSpace(out)
	}
	before := xs.Stats()
	xetCache := filepath.Join(home, "xet-path")
	snap := download(xetCache)
	after := xs.Stats()
	if n := after.Xet.Reconstructions - before.Xet.Reconstructions; n != 2 {
		t.Errorf("%d reconstructions, want 2 (one per Xet file)", n)
	}
	if after.Requests[hubtest.OpXetGet] == before.Requests[hubtest.OpXetGet] {
		t.Error("no xorb fetched from the CAS")
	}
	if n := after.Requests[hubtest.OpStorageGet] - before.Requests[hubtest.OpStorageGet]; n != 0 {
		t.Errorf("%d LFS storage GETs on the Xet path, want 0", n)
	}
	sameFiles(t, "Xet download", digests(t, snap), digests(t, dir))

	// --local-dir goes through Xet too.
	before = xs.Stats()
	local := filepath.Join(home, "local")
	if code, _, errb := hubcliRun(t, append(g, "download", "w/dl", "--local-dir", local)...); code != 0 {
		t.Fatalf("download --local-dir: %s", errb)
	}
	if n := xs.Stats().Xet.Reconstructions - before.Xet.Reconstructions; n != 2 {
		t.Errorf("download --local-dir: %d reconstructions, want 2", n)
	}
	sameFiles(t, "Xet download --local-dir", digests(t, local), digests(t, dir))

	t.Setenv("HF_HUB_DISABLE_XET", "1")
	plainCache := filepath.Join(home, "plain-path")
	before = xs.Stats()
	download(plainCache)
	after = xs.Stats()
	if after.Xet.Reconstructions != before.Xet.Reconstructions || after.Requests[hubtest.OpStorageGet] == before.Requests[hubtest.OpStorageGet] {
		t.Errorf("HF_HUB_DISABLE_XET=1: %d reconstructions, %d storage GETs; want the plain path",
			after.Xet.Reconstructions-before.Xet.Reconstructions, after.Requests[hubtest.OpStorageGet]-before.Requests[hubtest.OpStorageGet])
	}
	got, want := cacheLayout(t, xetCache), cacheLayout(t, plainCache)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("cache layout through Xet:\n%s\nplain:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if after.TokenLeaks != 0 {
		t.Errorf("%d token leaks", after.TokenLeaks)
	}
}

// xetDedupBase is a base model whose tensors are large against Xet's 64 KiB chunks, so that a q_proj,v_proj
// adapter changes a small share of the merged file.
func xetDedupBase(t *testing.T) (string, *testmodel.BaseInfo) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	info, err := testmodel.GenerateBase(context.Background(), dir, testmodel.BaseSpec{Arch: testmodel.ArchLlama,
		Hidden: 256, Intermediate: 1024, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 64, Vocab: 2048,
		DType: tensor.BF16, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return dir, info
}

// TestXetWatchDedup: `hubsync watch --merged` publishes two checkpoints of a q_proj,v_proj adapter through
// Xet, in two runs of the daemon; the second checkpoint sends far fewer CAS bytes than the first (it dedupes
// against the first through the on-disk shard cache, here under HF_XET_CACHE), no LFS PUT is made and the Hub
// token never reaches the CAS.
func TestXetWatchDedup(t *testing.T) {
	home := hubcliIsolate(t)
	xs := xetCLIServer(t)
	base, info := xetDedupBase(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	spec := testmodel.AdapterSpec{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj"}, Seed: 7}
	write := func(step int) {
		t.Helper()
		if _, err := testmodel.WriteCheckpoint(context.Background(), outputs, step, spec,
			testmodel.CheckpointOptions{Base: info, OptimizerSize: 2 << 10, MaxSteps: 20}); err != nil {
			t.Fatal(err)
		}
	}
	xetCache := filepath.Join(home, "xet-cache")
	t.Setenv("HF_XET_CACHE", xetCache)
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", xs.URL())
	t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
	watch := func(stopAfter string) int64 {
		t.Helper()
		before := xs.Stats().Xet.BytesReceived
		code, out, errb := hubcliRun(t, "--log-format", "json", "watch", outputs, "--repo", "w/xet-watch", "--merged",
			"--base", base, "--settle", "100ms", "--stop-after", stopAfter, "--policy", "all", "--device", "cpu", "--max-shard-size", "1GB", "--shard-layout", "hf")
		if code != 0 {
			t.Fatalf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
		}
		if strings.Contains(out+errb, hubcliToken) {
			t.Error("token printed")
		}
		return xs.Stats().Xet.BytesReceived - before
	}
	write(10)
	first := watch("1")
	if ents, err := os.ReadDir(xetCache); err != nil || len(ents) == 0 {
		t.Errorf("no shard cache under HF_XET_CACHE %s: %v", xetCache, err)
	}
	write(20)
	second := watch("2")
	st := xs.Stats()
	t.Logf("CAS bytes received: checkpoint 10 %d, checkpoint 20 %d (%.1f%%); %d chunks (%d bytes) deduplicated",
		first, second, 100*float64(second)/float64(first), st.Xet.ChunksDeduplicated, st.Xet.BytesDeduplicated)
	if first == 0 || second*3 > first {
		t.Errorf("the second checkpoint sent %d CAS bytes, the first %d: want under a third", second, first)
	}
	// The dedup came from the shard cache, not from global dedup answers of the CAS.
	if st.Xet.BytesDeduplicated == 0 || st.Xet.DedupHits != 0 {
		t.Errorf("devhub counted %d deduplicated bytes and %d global-dedup hits; want >0 and 0", st.Xet.BytesDeduplicated, st.Xet.DedupHits)
	}
	if n := lfsPuts(st); n != 0 || st.TokenLeaks != 0 {
		t.Errorf("%d LFS PUTs, %d token leaks; want 0 and 0", n, st.TokenLeaks)
	}
	for _, tag := range []string{"step-10", "step-20"} {
		if got := hubDigests(t, xs, "w/xet-watch", tag); got["model.safetensors"] == "" {
			t.Errorf("%s: files %v", tag, got)
		}
	}
}

// TestXetWatchFaults: the daemon's Xet upload meets CAS 5xx on xorbs and shards, a xorb upload cut mid-body, a
// CAS token refused as expired and a failing token refresh; it waits, retries and publishes the same files as a
// run without faults, through Xet only.
func TestXetWatchFaults(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 10)
	t.Setenv("HF_TOKEN", hubcliToken)
	publish := func(s *hubtest.Server) {
		t.Helper()
		t.Setenv("HF_ENDPOINT", s.URL())
		t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
		t.Setenv("HF_XET_CACHE", filepath.Join(t.TempDir(), "xet"))
		code, out, errb := hubcliRun(t, "--log-format", "json", "watch", f.outputs, "--repo", "w/xet-faults", "--merged",
			"--base", f.base, "--settle", "100ms", "--stop-after", "1", "--policy", "all", "--device", "cpu")
		if code != 0 {
			t.Fatalf("watch: exit %d\nstdout %s\nstderr %s", code, out, errb)
		}
	}
	clean := xetCLIServer(t)
	publish(clean)
	want := hubDigests(t, clean, "w/xet-faults", "step-10")

	xs := xetCLIServer(t)
	rules := []hubtest.FaultRule{
		{Op: hubtest.OpXorbPut, Kind: hubtest.FaultStatus, Status: 503, Count: 2},
		{Op: hubtest.OpXorbPut, Kind: hubtest.FaultReset, AfterBytes: 4 << 10},
		{Op: hubtest.OpXorbPut, Kind: hubtest.FaultStatus, Status: 401, Message: "CAS token expired"},
		{Op: hubtest.OpXetToken, Kind: hubtest.FaultStatus, Status: 503},
		{Op: hubtest.OpShardPut, Kind: hubtest.FaultStatus, Status: 500, Count: 2},
	}
	for _, r := range rules {
		xs.InjectFault(r)
	}
	publish(xs)
	st := xs.Stats()
	var fired int64
	for _, n := range st.Faults {
		fired += n
	}
	if fired != 7 {
		t.Errorf("%d faults fired (%v), want all 7", fired, st.Faults)
	}
	if st.Xet.ShardsStored < 1 || lfsPuts(st) != 0 || st.TokenLeaks != 0 {
		t.Errorf("%d shards, %d LFS PUTs, %d token leaks; want Xet only and no leak", st.Xet.ShardsStored, lfsPuts(st), st.TokenLeaks)
	}
	sameFiles(t, "published with faults", hubDigests(t, xs, "w/xet-faults", "step-10"), want)
	if cs := commitsOf(t, xs, "w/xet-faults"); len(cs) != 2 {
		t.Errorf("%d commits, want 2 (the repo's first and the checkpoint's)", len(cs))
	}
}

// TestXetWatchModes: the daemon uses Xet against devhub --xet by default, and LFS with --xet off, with the
// config file's upload.xet: off, and with HF_HUB_DISABLE_XET=1 (which wins over --xet on).
func TestXetWatchModes(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 10)
	cfgOff := filepath.Join(t.TempDir(), "hubsync.yaml")
	if err := os.WriteFile(cfgOff, []byte("upload:\n  xet: off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_TOKEN", hubcliToken)
	for _, tc := range []struct {
		name    string
		env     string // HF_HUB_DISABLE_XET
		args    []string
		wantXet bool
	}{
		{"default", "", nil, true},
		{"flag-off", "", []string{"--xet", "off"}, false},
		{"config-off", "", []string{"--config", cfgOff}, false},
		{"env-disables-on", "1", []string{"--xet", "on"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xs := xetCLIServer(t)
			t.Setenv("HF_HUB_DISABLE_XET", tc.env)
			t.Setenv("HF_ENDPOINT", xs.URL())
			t.Setenv("STATE_DIRECTORY", filepath.Join(t.TempDir(), "state"))
			t.Setenv("HF_XET_CACHE", filepath.Join(t.TempDir(), "xet"))
			args := append([]string{"--log-format", "json", "watch", f.outputs, "--repo", "w/xet-mode", "--settle", "100ms",
				"--stop-after", "1", "--policy", "all"}, tc.args...)
			code, out, errb := hubcliRun(t, args...)
			if code != 0 {
				t.Fatalf("watch %v: exit %d\nstdout %s\nstderr %s", tc.args, code, out, errb)
			}
			st := xs.Stats()
			if gotXet := st.Xet.ShardsStored > 0; gotXet != tc.wantXet || gotXet == (lfsPuts(st) > 0) {
				t.Errorf("%d shards, %d LFS PUTs; want Xet %v", st.Xet.ShardsStored, lfsPuts(st), tc.wantXet)
			}
			if st.Commits != 1 {
				t.Errorf("%d commits through the commit endpoint, want 1", st.Commits)
			}
		})
	}
}

// TestXetCLIMergeBaseFromHub: `push --merged --base REPO` with a base stored through Xet downloads it into the
// HF cache through Xet reconstructions and publishes the same weights as with the local base.
func TestXetCLIMergeBaseFromHub(t *testing.T) {
	hubcliIsolate(t)
	xs := xetCLIServer(t)
	f := newCkptFixture(t, 60)
	ckpt := filepath.Join(f.outputs, "checkpoint-60")
	g := []string{"--endpoint", xs.URL(), "--token", hubcliToken, "--log-format", "json"}
	if code, _, errb := hubcliRun(t, append(g, "push", f.base, "--repo", "w/xbase", "--raw")...); code != 0 {
		t.Fatalf("push base: %s", errb)
	}
	for _, repo := range []string{"w/from-local", "w/from-hub"} {
		base := f.base
		if repo == "w/from-hub" {
			base = "w/xbase"
		}
		before := xs.Stats().Xet.Reconstructions
		args := append(append([]string{}, g...), "push", ckpt, "--repo", repo, "--merged", "--base", base, "--device", "cpu")
		if code, _, errb := hubcliRun(t, args...); code != 0 {
			t.Fatalf("push --merged --base %s: %s", base, errb)
		}
		n := xs.Stats().Xet.Reconstructions - before
		if repo == "w/from-hub" && n == 0 {
			t.Error("the base was not downloaded through Xet")
		}
		if repo == "w/from-local" && n != 0 {
			t.Errorf("%d reconstructions with a local base", n)
		}
	}
	// The cards name the base as given; the weights are the same.
	sameFiles(t, "merged from the Hub's base", hubDigests(t, xs, "w/from-hub", "main"), hubDigests(t, xs, "w/from-local", "main"), "README.md")
	if st := xs.Stats(); st.TokenLeaks != 0 {
		t.Errorf("%d token leaks", st.TokenLeaks)
	}
}

// TestXetCLICrossRepoDedup: two identical large files in one push go through Xet; pushing the same folder to a
// second repo stores no new xorb (the shard cache knows every chunk), and to a third repo from a fresh Xet cache
// neither (the CAS's global dedup answers); each repo serves the files.
func TestXetCLICrossRepoDedup(t *testing.T) {
	home := hubcliIsolate(t)
	xs := xetCLIServer(t)
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "a.safetensors"), 900<<10, 31)
	writeRandomFile(t, filepath.Join(dir, "b.safetensors"), 900<<10, 31) // the same bytes
	writeRandomFile(t, filepath.Join(dir, "c.bin"), 150<<10, 32)
	want := digests(t, dir)
	g := []string{"--endpoint", xs.URL(), "--token", hubcliToken}
	for i, repo := range []string{"w/one", "w/two", "w/three"} {
		if i == 2 {
			t.Setenv("HF_XET_CACHE", filepath.Join(home, "fresh-xet"))
		}
		before := xs.Stats()
		if code, _, errb := hubcliRun(t, append(g, "--xet", "on", "push", dir, "--repo", repo)...); code != 0 {
			t.Fatalf("push %s: exit %d\n%s", repo, code, errb)
		}
		after := xs.Stats()
		newXorbs := after.Xet.XorbsStored - before.Xet.XorbsStored
		t.Logf("%s: %d new xorbs, %d CAS bytes, %d dedup hits", repo, newXorbs,
			after.Xet.BytesReceived-before.Xet.BytesReceived, after.Xet.DedupHits-before.Xet.DedupHits)
		if i > 0 && newXorbs != 0 {
			t.Errorf("%s: %d new xorbs for content the CAS holds", repo, newXorbs)
		}
		if i == 2 && after.Xet.DedupHits == before.Xet.DedupHits {
			t.Errorf("%s: no global dedup hit from a fresh Xet cache", repo)
		}
		sameFiles(t, repo, hubDigests(t, xs, repo, "main"), want)
	}
	if st := xs.Stats(); lfsPuts(st) != 0 || st.TokenLeaks != 0 {
		t.Errorf("%d LFS PUTs, %d token leaks", lfsPuts(st), st.TokenLeaks)
	}
}

// TestXetCLIAutoFallback: when the CAS refuses every xorb (400, not retried), --xet auto sends the file through LFS with a warning
// naming Xet, while --xet on fails (exit 1) without a commit.
func TestXetCLIAutoFallback(t *testing.T) {
	hubcliIsolate(t)
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "model.safetensors"), 500<<10, 41)
	for _, mode := range []string{"auto", "on"} {
		t.Run(mode, func(t *testing.T) {
			xs := xetCLIServer(t)
			xs.InjectFault(hubtest.FaultRule{Op: hubtest.OpXorbPut, Kind: hubtest.FaultStatus, Status: 400, Count: 1 << 20,
				Message: "malformed xorb"})
			code, _, errb := hubcliRun(t, "--endpoint", xs.URL(), "--token", hubcliToken, "--xet", mode, "push", dir, "--repo", "w/fb")
			st := xs.Stats()
			if strings.Contains(errb, hubcliToken) {
				t.Error("token printed")
			}
			if mode == "auto" {
				if code != 0 || lfsPuts(st) == 0 || st.Commits != 1 || !strings.Contains(strings.ToLower(errb), "xet") {
					t.Fatalf("auto: exit %d, %d LFS PUTs, %d commits; stderr %s", code, lfsPuts(st), st.Commits, errb)
				}
				sameFiles(t, "fallback", hubDigests(t, xs, "w/fb", "main"), digests(t, dir))
				return
			}
			if code != 1 || st.Commits != 0 || lfsPuts(st) != 0 {
				t.Errorf("on: exit %d, %d commits, %d LFS PUTs; want 1, 0, 0\n%s", code, st.Commits, lfsPuts(st), errb)
			}
		})
	}
}

// TestXetWatchOnWithoutXet: `watch --xet on` against a Hub without Xet does not fail the checkpoint: the job
// waits as for any fixable error (the Hub may turn Xet on; --xet auto fixes it at the next start), with a
// last error naming --xet on, and nothing is committed.
func TestXetWatchOnWithoutXet(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 10)
	s := hubcliServer(t)
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("HF_TOKEN", hubcliToken)
	t.Setenv("HF_ENDPOINT", s.URL())
	t.Setenv("STATE_DIRECTORY", state)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snap := filepath.Join(state, config.JournalFile+journal.SnapshotSuffix)
	lastError := make(chan string, 1)
	go func() { // the daemon is stopped once its snapshot shows the error
		for ctx.Err() == nil {
			if r, err := journal.ReadSnapshot(snap); err == nil && len(r.Jobs) == 1 && r.Jobs[0].LastError != "" {
				lastError <- r.Jobs[0].LastError
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	out, errb := &lockedBuffer{b: &bytes.Buffer{}}, &lockedBuffer{b: &bytes.Buffer{}}
	code := run(ctx, []string{"--xet", "on", "watch", f.outputs, "--repo", "w/on", "--settle", "100ms",
		"--stop-after", "1", "--policy", "all"}, strings.NewReader(""), out, errb)
	if code != 0 {
		t.Fatalf("watch: exit %d\n%s", code, errString(errb))
	}
	cancel()
	var le string
	select {
	case le = <-lastError:
	default:
		t.Fatalf("the daemon stopped before its job recorded an error\n%s", errString(errb))
	}
	if !strings.Contains(le, "--xet on") {
		t.Errorf("last error %q does not name --xet on", le)
	}
	rep, err := journal.ReadSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if j := rep.Jobs[0]; j.Stage == journal.Failed || j.Stage == journal.Committed {
		t.Errorf("job %s, want it waiting", j.Stage)
	}
	if st := s.Stats(); st.Commits != 0 || lfsPuts(st) != 0 {
		t.Errorf("%d commits, %d LFS PUTs; want none", st.Commits, lfsPuts(st))
	}
}
