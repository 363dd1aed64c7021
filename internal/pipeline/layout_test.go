package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
)

// adapterDigests are the digests of the files an adapter publish takes from checkpoint dir (the card aside).
func adapterDigests(t *testing.T, ckpt string) map[string]string {
	t.Helper()
	all := dirDigests(t, ckpt)
	out := map[string]string{}
	for k, v := range all {
		switch k {
		case "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
			"special_tokens_map.json":
			out[k] = v
		}
	}
	return out
}

func refNames(refs []hub.Ref) string {
	var n []string
	for _, r := range refs {
		n = append(n, r.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func TestDaemonLayouts(t *testing.T) {
	t.Parallel()
	steps := []int{10, 20, 30}
	tests := []struct {
		name  string
		watch func(*config.Watch)
		check func(t *testing.T, c *hub.Client, w config.Watch, ckpts map[int]string)
	}{
		{
			name:  "tags, prune keep 2",
			watch: func(w *config.Watch) { w.Prune.Keep = 2 },
			check: func(t *testing.T, c *hub.Client, w config.Watch, ckpts map[int]string) {
				refs, err := c.ListRefs(context.Background(), w.Repo)
				if err != nil {
					t.Fatal(err)
				}
				if got := refNames(refs.Tags); got != "step-20,step-30" {
					t.Errorf("tags %s, want step-20,step-30", got)
				}
				sameDigests(t, "main", repoFiles(t, c, w.Repo, "main"), referenceMerge(t, ckpts[30], testShard, w.Repo))
				if n := commitCount(t, c, w.Repo, "main"); n != 4 {
					t.Errorf("%d commits, want 4", n)
				}
			},
		},
		{
			name:  "branches, prune keep 1",
			watch: func(w *config.Watch) { w.Layout = config.LayoutBranches; w.Prune.Keep = 1 },
			check: func(t *testing.T, c *hub.Client, w config.Watch, ckpts map[int]string) {
				refs, err := c.ListRefs(context.Background(), w.Repo)
				if err != nil {
					t.Fatal(err)
				}
				if got := refNames(refs.Branches); got != "main,step-30" {
					t.Errorf("branches %s, want main,step-30", got)
				}
				if len(refs.Tags) != 0 {
					t.Errorf("tags %v in the branches layout", refs.Tags)
				}
				sameDigests(t, "step-30", repoFiles(t, c, w.Repo, "step-30"), referenceMerge(t, ckpts[30], testShard, w.Repo))
				if n := commitCount(t, c, w.Repo, "main"); n != 1 {
					t.Errorf("%d commits on main, want only the initial one", n)
				}
				if n := commitCount(t, c, w.Repo, "step-30"); n != 2 {
					t.Errorf("%d commits on step-30, want 2", n)
				}
			},
		},
		{
			name: "subfolders, adapter only, prune keep 2",
			watch: func(w *config.Watch) {
				w.Layout = config.LayoutSubfolders
				w.Publish = config.PublishAdapter
				w.Prune.Keep = 2
			},
			check: func(t *testing.T, c *hub.Client, w config.Watch, ckpts map[int]string) {
				got := repoFiles(t, c, w.Repo, "main")
				want := map[string]string{}
				for _, step := range []int{20, 30} {
					for k, v := range adapterDigests(t, ckpts[step]) {
						want[fmt.Sprintf("checkpoint-%d/%s", step, k)] = v
					}
					if _, ok := got[fmt.Sprintf("checkpoint-%d/README.md", step)]; !ok {
						t.Errorf("no card for step %d", step)
					}
				}
				gotNoCards := map[string]string{}
				for k, v := range got {
					if !strings.HasSuffix(k, "README.md") {
						gotNoCards[k] = v
					}
				}
				sameDigests(t, "main", gotNoCards, want)
				// initial + 3 steps + 1 prune commit (after step 30)
				if n := commitCount(t, c, w.Repo, "main"); n != 5 {
					t.Errorf("%d commits, want 5", n)
				}
			},
		},
		{
			name:  "both: merged and adapter repo",
			watch: func(w *config.Watch) { w.Publish = config.PublishBoth },
			check: func(t *testing.T, c *hub.Client, w config.Watch, ckpts map[int]string) {
				for _, step := range steps {
					tag := fmt.Sprintf("step-%d", step)
					sameDigests(t, "merged "+tag, repoFiles(t, c, w.Repo, tag), referenceMerge(t, ckpts[step], testShard, w.Repo))
					sameDigests(t, "adapter "+tag, withoutCard(repoFiles(t, c, w.AdapterRepo, tag)), adapterDigests(t, ckpts[step]))
				}
				for _, repo := range []string{w.Repo, w.AdapterRepo} {
					if n := commitCount(t, c, repo, "main"); n != 4 {
						t.Errorf("%s: %d commits, want 4", repo, n)
					}
				}
				card := string(readFile(t, c, w.AdapterRepo, "step-10", "README.md"))
				if !strings.Contains(card, "library_name: peft") || !strings.Contains(card, w.AdapterRepo) {
					t.Errorf("adapter card:\n%s", card)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestHub(t)
			outputs := filepath.Join(t.TempDir(), "outputs")
			ckpts := map[int]string{}
			for _, step := range steps {
				ckpts[step] = writeCheckpoint(t, outputs, step, nil)
			}
			cfg := testConfig(t, s.URL(), func(c *config.Config) { tc.watch(&c.Watch[0]) }, outputs)
			env := openTestEnv(t, cfg, testToken)
			defer env.Close()
			r := startDaemon(t, cfg, env, testOptions(nil))
			r.waitFinished(t, len(steps))
			r.stop(t)
			if got := stages(jobsOf(t, env.Journal)); got != "10:committed 20:committed 30:committed" {
				t.Fatalf("jobs %s", got)
			}
			tc.check(t, testClient(t, s), cfg.Watch[0], ckpts)
		})
	}
}

// readFile downloads one file of the repo.
func readFile(t *testing.T, c *hub.Client, repo, rev, name string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dl")
	if _, err := c.Download(context.Background(), repo, rev, hub.DownloadOptions{LocalDir: dir}); err != nil {
		t.Fatal(err)
	}
	return mustRead(t, filepath.Join(dir, name))
}
