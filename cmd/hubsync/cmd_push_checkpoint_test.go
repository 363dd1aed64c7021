package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// ckptFixture is a tiny 4-bit base and trainer checkpoints for it.
type ckptFixture struct {
	base    string
	info    *testmodel.BaseInfo
	outputs string
}

func newCkptFixture(t *testing.T, steps ...int) ckptFixture {
	t.Helper()
	dir := t.TempDir()
	f := ckptFixture{base: filepath.Join(dir, "base"), outputs: filepath.Join(dir, "outputs")}
	var err error
	if f.info, err = testmodel.GenerateBase(context.Background(), f.base, testmodel.Tiny(testmodel.ArchLlama)); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		f.checkpoint(t, s)
	}
	return f
}

func (f ckptFixture) checkpoint(t *testing.T, step int) string {
	t.Helper()
	d, err := testmodel.WriteCheckpoint(context.Background(), f.outputs, step,
		testmodel.AdapterSpec{R: 4, Alpha: 8, TargetModules: testmodel.AllLinear(), Seed: 5},
		testmodel.CheckpointOptions{Base: f.info, OptimizerSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// digests returns rel path → sha256 of the files under dir (.cache and .gitattributes aside).
func digests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".cache" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".gitattributes" {
			return nil
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fh.Close()
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
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

// hubDigests downloads repo@rev and returns its digests.
func hubDigests(t *testing.T, s *hubtest.Server, repo, rev string) map[string]string {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	dir := filepath.Join(t.TempDir(), "dl")
	if _, err := c.Download(context.Background(), repo, rev, hub.DownloadOptions{LocalDir: dir}); err != nil {
		t.Fatalf("download %s@%s: %v", repo, rev, err)
	}
	return digests(t, dir)
}

func sameFiles(t *testing.T, what string, got, want map[string]string, skip ...string) {
	t.Helper()
	drop := func(m map[string]string) []string {
		var out []string
		for k, v := range m {
			if !contains(skip, k) {
				out = append(out, k+"="+v)
			}
		}
		sort.Strings(out)
		return out
	}
	if g, w := drop(got), drop(want); strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s:\n got %v\nwant %v", what, g, w)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func commitsOf(t *testing.T, s *hubtest.Server, repo string) []hub.CommitInfo {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	cs, err := c.ListCommits(context.Background(), repo, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestPushMergedCLI(t *testing.T) {
	home := hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 500)
	ckpt := filepath.Join(f.outputs, "checkpoint-500")
	ref := filepath.Join(t.TempDir(), "ref")
	if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: ref,
		MaxShardSize: 20_000, Device: "cpu"}); err != nil {
		t.Fatal(err)
	}
	want := digests(t, ref)
	if len(want) < 6 {
		t.Fatalf("reference %v", want)
	}
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}

	// The base named explicitly; then taken from adapter_config.json's base_model_name_or_path.
	// The second push also says --staging none: the shards are never written, the Hub gets the same bytes.
	for i, extra := range [][]string{{"--base", f.base}, {"--staging", "none"}} {
		repo := []string{"w/merged-a", "w/merged-b"}[i]
		args := append(append([]string{}, g...), "push", ckpt, "--repo", repo, "--merged", "--tag", "step-500",
			"--max-shard-size", "20kB", "--device", "cpu")
		code, out, errb := hubcliRun(t, append(args, extra...)...)
		if code != 0 {
			t.Fatalf("push --merged: exit %d\n%s", code, errb)
		}
		if !strings.HasPrefix(strings.TrimSpace(out), s.URL()+"/"+repo+"/commit/") {
			t.Errorf("stdout %q, want the commit URL", out)
		}
		if strings.Contains(out+errb, hubcliToken) {
			t.Error("token printed")
		}
		// The card names the repo it is published in: compare with a reference merge for that repo.
		refRepo := filepath.Join(t.TempDir(), "ref")
		if _, err := merge.Run(context.Background(), merge.Options{Base: f.base, Adapter: ckpt, Out: refRepo,
			MaxShardSize: 20_000, Device: "cpu", CardRepoID: repo}); err != nil {
			t.Fatal(err)
		}
		got := hubDigests(t, s, repo, "step-500")
		sameFiles(t, repo, got, digests(t, refRepo))
		if _, ok := got["model.safetensors.index.json"]; !ok {
			t.Errorf("%s: no index in %v", repo, got)
		}
		cs := commitsOf(t, s, repo)
		if len(cs) != 2 || cs[0].Title != "Upload merged model of checkpoint-500 (step 500)" {
			t.Errorf("%s commits %+v", repo, cs)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(f.outputs, ".hubsync-staging")); len(ents) != 0 {
		t.Errorf("staging not cleaned: %v", ents)
	}

	// A base given as a Hub repo id, not in the HF cache: downloaded into it through the client.
	if code, _, errb := hubcliRun(t, append(append([]string{}, g...), "push", f.base, "--repo", "w/base", "--raw")...); code != 0 {
		t.Fatalf("upload base: %s", errb)
	}
	args := append(append([]string{}, g...), "push", ckpt, "--repo", "w/merged-c", "--merged", "--base", "w/base",
		"--max-shard-size", "20kB")
	if code, _, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("push --merged --base w/base: %s", errb)
	}
	// The card names the base as given (here the repo id, in the reference a local path): compare the rest.
	sameFiles(t, "w/merged-c", hubDigests(t, s, "w/merged-c", "main"), want, "README.md")
	snap, err := hub.ResolveCachedSnapshot(filepath.Join(home, "hf", "hub"), "w/base", "main")
	if err != nil {
		t.Errorf("the base was not downloaded into the HF cache: %v", err)
	} else if _, err := os.Stat(filepath.Join(snap, "config.json")); err != nil {
		t.Error(err)
	}
}

func TestPushAdapterCLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 30)
	ckpt := filepath.Join(f.outputs, "checkpoint-30")
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	// A checkpoint directory is detected (adapter_config.json) and published as an adapter.
	code, out, errb := hubcliRun(t, append(g, "push", ckpt, "--repo", "w/ad")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !strings.Contains(out, "/w/ad/commit/") {
		t.Errorf("stdout %q", out)
	}
	local := digests(t, ckpt)
	want := map[string]string{}
	for _, n := range []string{"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if v, ok := local[n]; ok {
			want[n] = v
		}
	}
	got := hubDigests(t, s, "w/ad", "main")
	if _, ok := got["README.md"]; !ok {
		t.Error("no card")
	}
	sameFiles(t, "adapter", got, want, "README.md")
	// --raw uploads the folder as it is.
	if code, _, errb := hubcliRun(t, append(g, "push", ckpt, "--repo", "w/raw", "--raw")...); code != 0 {
		t.Fatalf("--raw: %s", errb)
	}
	if raw := hubDigests(t, s, "w/raw", "main"); raw["optimizer.pt"] == "" || raw["trainer_state.json"] == "" {
		t.Errorf("--raw did not upload everything: %v", raw)
	}
}

func TestPushCheckpointCLIErrors(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 1, 2)
	good := filepath.Join(f.outputs, "checkpoint-1")
	bad := filepath.Join(f.outputs, "checkpoint-2")
	if err := os.WriteFile(filepath.Join(bad, "adapter_config.json"), []byte(`{"peft_type": "LORA", "r": 3, "target_modules": ["q_proj"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "a.txt"), []byte("a"), 0o644)
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"merged and adapter", []string{"push", good, "--repo", "w/x", "--merged", "--adapter-only"}, 2, "exclude each other"},
		{"raw and merged", []string{"push", good, "--repo", "w/x", "--merged", "--raw"}, 2, "--raw"},
		{"base without merged", []string{"push", good, "--repo", "w/x", "--base", f.base}, 2, "--base applies to --merged"},
		{"exclude with checkpoint", []string{"push", good, "--repo", "w/x", "--exclude", "*.pt"}, 2, "--exclude"},
		{"bad dtype", []string{"push", good, "--repo", "w/x", "--merged", "--dtype", "int4"}, 2, "--dtype"},
		{"bad device", []string{"push", good, "--repo", "w/x", "--merged", "--device", "tpu"}, 2, "--device"},
		{"bad staging", []string{"push", good, "--repo", "w/x", "--merged", "--staging", "ram"}, 2, "--staging"},
		{"staging without merged", []string{"push", good, "--repo", "w/x", "--staging", "none"}, 2, "--staging applies to --merged"},
		{"merged plain folder", []string{"push", plain, "--repo", "w/x", "--merged"}, 1, "adapter_config.json"},
		{"corrupt adapter", []string{"push", bad, "--repo", "w/x", "--merged", "--base", f.base}, 1, "checkpoint-2"},
		{"missing base", []string{"push", good, "--repo", "w/x", "--merged", "--base", filepath.Join(plain, "nobase")}, 1, "nobase"},
	}
	for _, tc := range tests {
		code, _, errb := hubcliRun(t, append(append([]string{}, g...), tc.args...)...)
		if code != tc.code || !strings.Contains(errb, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errb, tc.code, tc.msg)
		}
	}
	if n := s.Stats().Commits; n != 0 {
		t.Errorf("%d commits were made", n)
	}
}

// TestMergeFetchesBaseCLI: `hubsync merge --base OWNER/NAME` with a base that is not in the HF cache downloads it
// through the Hub client, then merges exactly as from the local directory.
func TestMergeFetchesBaseCLI(t *testing.T) {
	home := hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 7)
	ckpt := filepath.Join(f.outputs, "checkpoint-7")
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	if code, _, errb := hubcliRun(t, append(append([]string{}, g...), "push", f.base, "--repo", "w/base", "--raw")...); code != 0 {
		t.Fatalf("upload base: %s", errb)
	}
	local := filepath.Join(t.TempDir(), "local")
	if code, _, errb := hubcliRun(t, "merge", "--base", f.base, "--adapter", ckpt, "--out", local); code != 0 {
		t.Fatalf("merge from the local base: %s", errb)
	}
	remote := filepath.Join(t.TempDir(), "remote")
	args := append(append([]string{}, g...), "merge", "--base", "w/base", "--adapter", ckpt, "--out", remote)
	if code, _, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("merge --base w/base: exit %d\n%s", code, errb)
	}
	if _, err := hub.ResolveCachedSnapshot(filepath.Join(home, "hf", "hub"), "w/base", "main"); err != nil {
		t.Errorf("the base was not downloaded into the HF cache: %v", err)
	}
	// The card names the base as given (repo id vs local path); every other file is identical.
	sameFiles(t, "merge from the Hub", digests(t, remote), digests(t, local), "README.md")

	// Without a Hub that has it, the error says it is not in the cache and names the repo.
	args = append(append([]string{}, g...), "merge", "--base", "w/missing", "--adapter", ckpt, "--out", filepath.Join(t.TempDir(), "x"))
	code, _, errb := hubcliRun(t, args...)
	if code != 1 || !strings.Contains(errb, "w/missing") || !strings.Contains(errb, "not in the HF cache") {
		t.Errorf("missing base: exit %d, %s", code, errb)
	}
}
