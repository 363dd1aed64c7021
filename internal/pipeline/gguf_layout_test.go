package pipeline

import (
	"testing"

	"github.com/hubsync/hubsync/internal/config"
)

// TestDaemonGGUFLayouts: with watch --gguf the GGUF files of each checkpoint land where the layout puts that
// step's merged model: on the step's own branch (branches, at the root or under gguf_path; main untouched), or
// in the step's subfolder (subfolders, at its root), with publish merged or gguf alone, and nowhere else.
func TestDaemonGGUFLayouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		watch func(*config.Watch)
		// want is where step's GGUF file lands: revision and path.
		want func(step string) (rev, path string)
		// absent is a revision and path that must not hold step's GGUF file.
		absent func(step string) (rev, path string)
	}{
		{"branches", func(w *config.Watch) { w.Layout = config.LayoutBranches },
			func(step string) (string, string) { return "step-" + step, "model-a-F16.gguf" },
			func(step string) (string, string) { return "main", "model-a-F16.gguf" }},
		{"branches, gguf_path, staged on disk", func(w *config.Watch) {
			w.Layout, w.GGUFPath, w.Staging, w.BranchFormat = config.LayoutBranches, "gguf", config.StagingDisk, "ckpt-{step}"
		}, func(step string) (string, string) { return "ckpt-" + step, "gguf/model-a-F16.gguf" },
			func(step string) (string, string) { return "ckpt-" + step, "model-a-F16.gguf" }},
		{"branches, publish gguf", func(w *config.Watch) {
			w.Layout, w.Publish = config.LayoutBranches, config.PublishGGUF
		}, func(step string) (string, string) { return "step-" + step, "model-a-F16.gguf" },
			func(step string) (string, string) { return "step-" + step, "model.safetensors" }},
		{"subfolders", func(w *config.Watch) { w.Layout, w.Staging = config.LayoutSubfolders, config.StagingNone },
			func(step string) (string, string) { return "main", "checkpoint-" + step + "/model-a-F16.gguf" },
			func(step string) (string, string) { return "main", "model-a-F16.gguf" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestHub(t)
			outputs := t.TempDir()
			for _, st := range []int{10, 20} {
				writeCheckpoint(t, outputs, st, nil)
			}
			cfg := testConfig(t, s.URL(), func(c *config.Config) {
				c.Watch[0].Base = testBase(t).dir
				c.Watch[0].GGUF = []string{"f16"}
				tc.watch(&c.Watch[0])
			}, outputs)
			env := openTestEnv(t, cfg, testToken)
			r := startDaemon(t, cfg, env, testOptions(nil))
			r.waitFinished(t, 2)
			r.stop(t)
			if got := stages(jobsOf(t, env.Journal)); got != "10:committed 20:committed" {
				t.Fatalf("stages %s", got)
			}
			c := testClient(t, s)
			w := cfg.Watch[0]
			for _, step := range []string{"10", "20"} {
				rev, p := tc.want(step)
				files := repoFiles(t, c, w.Repo, rev)
				if files[p] == "" {
					t.Errorf("step %s: no %s at %s: %v", step, p, rev, files)
				}
				arev, ap := tc.absent(step)
				if arev == rev {
					if files[ap] != "" {
						t.Errorf("step %s: %s at %s too", step, ap, rev)
					}
				} else if af := repoFiles(t, c, w.Repo, arev); af[ap] != "" {
					t.Errorf("step %s: %s at %s too", step, ap, arev)
				}
			}
		})
	}
}
