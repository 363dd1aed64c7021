package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
)

func publishEnv(t *testing.T, url string) *Env {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: url, Token: testToken, Retry: hub.TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return &Env{Client: c, Log: testLogger(t), MergeThreads: 2}
}

func TestPublishCheckpointMerged(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	outputs := t.TempDir()
	ckpt := writeCheckpoint(t, outputs, 500, nil)
	want := referenceMerge(t, ckpt, testShard, "w/merged")
	if len(want) < 5 {
		t.Fatalf("reference merge has only %v", want)
	}
	shards := 0
	for p := range want {
		if strings.HasPrefix(p, "model-") {
			shards++
		}
	}
	if shards < 2 {
		t.Fatalf("want a sharded model, got %v", want)
	}
	ctx := context.Background()
	tg := Target{Repo: "w/merged", Publish: config.PublishMerged, Tag: "step-500", MaxShardSize: testShard, Device: "cpu"}
	res, err := PublishCheckpoint(ctx, env, tg, ckpt, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Commits) != 1 || res.Commits[0].OID == "" || res.Commits[0].Uploaded == 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(res.Staging); !os.IsNotExist(err) {
		t.Errorf("staging %s left behind (%v)", res.Staging, err)
	}
	if !strings.HasPrefix(res.Staging, filepath.Join(outputs, config.StagingDirName)) {
		t.Errorf("staging %s not beside the checkpoint", res.Staging)
	}
	c := testClient(t, s)
	got := repoFiles(t, c, "w/merged", "step-500")
	if _, ok := got["README.md"]; !ok {
		t.Error("no model card")
	}
	sameDigests(t, "merged", got, want)
	if n := commitCount(t, c, "w/merged", "main"); n != 2 { // initial commit + ours
		t.Errorf("%d commits, want 2", n)
	}
	cs, _ := c.ListCommits(ctx, "w/merged", "main", 1)
	if len(cs) != 1 || !strings.Contains(cs[0].Title, "checkpoint-500") {
		t.Errorf("commit title %+v", cs)
	}
}

// TestPublishReplacesStaleFiles: a new upload at the same place deletes the earlier step's model files it lacks
// (here: three shards and their index replaced by one model.safetensors), in the same commit.
func TestPublishReplacesStaleFiles(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	ckpt := writeCheckpoint(t, t.TempDir(), 7, nil)
	ctx := context.Background()
	// hf layout: at 50 MB the whole model is one file (delta would keep two groups).
	tg := Target{Repo: "w/stale", MaxShardSize: testShard, ShardLayout: export.ShardLayoutHF, Device: "cpu"}
	if _, err := PublishCheckpoint(ctx, env, tg, ckpt, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	tg.MaxShardSize = 50_000_000
	res, err := PublishCheckpoint(ctx, env, tg, ckpt, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := testClient(t, s)
	got := repoFiles(t, c, "w/stale", "main")
	sameDigests(t, "main", got, referenceMergeLayout(t, ckpt, 50_000_000, "w/stale", export.ShardLayoutHF))
	del := strings.Join(res.Commits[0].Deleted, ",")
	if !strings.Contains(del, "model-00001-of-") || !strings.Contains(del, "model.safetensors.index.json") {
		t.Errorf("deleted %s", del)
	}
	if n := commitCount(t, c, "w/stale", "main"); n != 3 {
		t.Errorf("%d commits, want 3", n)
	}
}

// TestPublishAdapterOnly publishes the adapter, its tokenizer and a card; nothing of the trainer's state.
func TestPublishAdapterOnly(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	ckpt := writeCheckpoint(t, t.TempDir(), 42, nil)
	tg := Target{Repo: "w/adapter", Publish: config.PublishAdapter, Tag: "v42"}
	res, err := PublishCheckpoint(context.Background(), env, tg, ckpt, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := testClient(t, s)
	got := repoFiles(t, c, "w/adapter", "v42")
	sameDigests(t, "adapter", withoutCard(got), adapterDigests(t, ckpt))
	card := string(readFile(t, c, "w/adapter", "v42", "README.md"))
	for _, want := range []string{"library_name: peft", "w/adapter", "42"} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q:\n%s", want, card)
		}
	}
	cs, _ := c.ListCommits(context.Background(), "w/adapter", "main", 1)
	if len(cs) != 1 || !strings.Contains(cs[0].Title, "checkpoint-42 (step 42)") || cs[0].ID != res.Commits[0].OID {
		t.Errorf("commit %+v / %+v", cs, res.Commits)
	}
}

// TestPublishErrors: bad input fails before anything is published, naming the file.
func TestPublishErrors(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	env := publishEnv(t, s.URL())
	bad := writeCheckpoint(t, t.TempDir(), 5, nil)
	corruptAdapter(t, bad)
	noBase := writeCheckpoint(t, t.TempDir(), 6, nil)
	tests := []struct {
		name, dir string
		tg        Target
		want      string
	}{
		{"not a checkpoint", t.TempDir(), Target{Repo: "w/e1"}, "adapter_config.json"},
		{"missing dir", filepath.Join(t.TempDir(), "nope"), Target{Repo: "w/e2"}, "nope"},
		{"corrupt adapter", bad, Target{Repo: "w/e3", MaxShardSize: testShard}, "adapter_model.safetensors"},
		{"missing base", noBase, Target{Repo: "w/e4", Base: filepath.Join(t.TempDir(), "nobase")}, "nobase"},
	}
	for _, tc := range tests {
		_, err := PublishCheckpoint(context.Background(), env, tc.tg, tc.dir, PublishOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.want)
		}
		if !IsPermanent(err, s.URL()) {
			t.Errorf("%s: %v is not permanent", tc.name, err)
		}
	}
	if n := s.Stats().Commits; n != 0 {
		t.Errorf("%d commits made", n)
	}
	if n := s.Stats().Requests["repo_create"]; n != 0 {
		t.Errorf("%d repos created", n)
	}
}

// TestEnsureTag: tagging again the same commit is a success (a retried job), a tag on another commit a
// permanent error naming both commits.
func TestEnsureTag(t *testing.T) {
	t.Parallel()
	s := newTestHub(t)
	c := testClient(t, s)
	ctx := context.Background()
	if _, _, err := c.CreateRepo(ctx, "w/tags", hub.CreateRepoOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var oids []string
	for i := range 2 {
		p := filepath.Join(dir, "f.txt")
		if err := os.WriteFile(p, []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := c.Commit(ctx, "w/tags", []hub.UploadFile{{PathInRepo: "f.txt", LocalPath: p}}, hub.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		oids = append(oids, res.CommitOID)
	}
	if err := ensureTag(ctx, c, "w/tags", "step-1", oids[0], "m"); err != nil {
		t.Fatal(err)
	}
	if err := ensureTag(ctx, c, "w/tags", "step-1", oids[0], "m"); err != nil {
		t.Errorf("tagging the same commit again: %v", err)
	}
	err := ensureTag(ctx, c, "w/tags", "step-1", oids[1], "m")
	if err == nil || !IsPermanent(err, s.URL()) || !strings.Contains(err.Error(), oids[0]) || !strings.Contains(err.Error(), oids[1]) {
		t.Errorf("tag on another commit: %v", err)
	}
}
