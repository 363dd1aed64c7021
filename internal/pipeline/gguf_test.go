package pipeline

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/config"
)

// TestGGUFNames checks the GGUF file and model names.
func TestGGUFNames(t *testing.T) {
	for in, want := range map[string]string{"me/llama3-sft-GGUF": "llama3-sft", "me/llama3-sft": "llama3-sft",
		"me/x-gguf": "x", "out/dir/": "dir", "-GGUF": "-GGUF", "": "model"} {
		if got := GGUFModelName(in); got != want {
			t.Errorf("GGUFModelName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := GGUFFileName("llama3-sft", gguf.FileQ4_KM); got != "llama3-sft-Q4_K_M.gguf" {
		t.Errorf("GGUFFileName = %q", got)
	}
}

// TestDaemonGGUF: the daemon publishes each checkpoint's GGUF file in the merged model's commit, in the layout's
// place (a tag at the root; a step subfolder, under gguf_path), staged on disk or produced while uploading; a
// checkpoint the GGUF writer refuses (its own tokenizer.json is corrupt) fails alone, with the reason, and is not
// retried, while the others publish.
func TestDaemonGGUF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		watch func(*config.Watch)
		// path is where step's GGUF file lands at rev.
		path func(w config.Watch, step string) (rev, path string)
	}{
		{"tags, disk", func(w *config.Watch) { w.Staging = config.StagingDisk },
			func(w config.Watch, step string) (string, string) { return "step-" + step, "model-a-F16.gguf" }},
		{"subfolders, gguf_path, none", func(w *config.Watch) {
			w.Staging, w.Layout, w.GGUFPath = config.StagingNone, config.LayoutSubfolders, "gguf"
		}, func(w config.Watch, step string) (string, string) {
			return "main", "checkpoint-" + step + "/gguf/model-a-F16.gguf"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestHub(t)
			outputs := t.TempDir()
			for _, st := range []int{10, 20, 30} {
				dir := writeCheckpoint(t, outputs, st, nil)
				if st == 20 {
					if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model": {"type": "Alien"}}`), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			cfg := testConfig(t, s.URL(), func(c *config.Config) {
				c.Watch[0].Base = testBase(t).dir
				c.Watch[0].GGUF = []string{"f16"}
				tc.watch(&c.Watch[0])
			}, outputs)
			env := openTestEnv(t, cfg, testToken)
			r := startDaemon(t, cfg, env, testOptions(nil))
			r.waitFinished(t, 3)
			r.stop(t)
			jobs := jobsOf(t, env.Journal)
			if got := stages(jobs); got != "10:committed 20:failed 30:committed" {
				t.Fatalf("stages %s", got)
			}
			if j := jobs[1]; !strings.Contains(j.Reason, "tokenizer") || j.Attempts > 1 {
				t.Errorf("step 20: reason %q after %d attempts, want a tokenizer problem, failed at once", j.Reason, j.Attempts)
			}
			c := testClient(t, s)
			w := cfg.Watch[0]
			for _, step := range []string{"10", "30"} {
				rev, p := tc.path(w, step)
				files := repoFiles(t, c, w.Repo, rev)
				if files[p] == "" {
					t.Errorf("step %s: no %s at %s: %v", step, p, rev, files)
				}
				folder := path.Dir(p)
				if folder == "." {
					folder = ""
				}
				ents, err := c.ListTree(t.Context(), w.Repo, rev, folder, false)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if e.Path == p && !e.IsLFS() {
						t.Errorf("%s is not in LFS", p)
					}
				}
			}
			if n := s.Stats().Commits; n != 2 {
				t.Errorf("%d commits, want 2 (one per good checkpoint)", n)
			}
		})
	}
}
