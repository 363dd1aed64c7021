package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestPushMerged runs `hubsync push CKPT --repo R --merged --base BASE --tag step-10` as a user does: exit 0,
// the commit URL on stdout, the merged model on the Hub (same bytes as a local merge), the tag, staging removed.
func TestPushMerged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared.expectedFor(t, 10)
	dh := startDevhub(t, "")
	s := newScenario(t, dh, "pushed")
	if err := s.writeCheckpoint(ctx, 10, false, testmodel.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(s.out, "checkpoint-10")
	code, out := run(t, "push", s.env(), 2*time.Minute, "push", ckpt, "--repo", s.repo, "--merged",
		"--base", shared.baseDir, "--tag", "step-10", "--max-shard-size", maxShard, "--log-format", "json")
	if code != 0 {
		t.Fatalf("push --merged: exit %d", code)
	}
	url := regexp.MustCompile(regexp.QuoteMeta(dh.URL()+"/"+s.repo+"/commit/") + `([0-9a-f]{40})\s*$`).FindStringSubmatch(out)
	if url == nil {
		t.Fatalf("push --merged printed %q, want the commit URL %s/%s/commit/<id>", out, dh.URL(), s.repo)
	}
	byStep := s.verifyPublished(ctx, 10)
	if c := byStep[10]; c.ID != url[1] {
		t.Errorf("printed commit %s, the Hub's is %s", url[1], c.ID)
	}
	if ents, err := os.ReadDir(filepath.Join(s.out, ".hubsync-staging")); err == nil && len(ents) > 0 {
		t.Errorf("push left staging behind: %d entries", len(ents))
	}
}

// TestPushBadInput: `hubsync push --merged` of a broken checkpoint exits 1 with a message naming the file and
// publishes nothing (no commit, no object uploaded).
func TestPushBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dh := startDevhub(t, "")
	other, err := testmodel.GenerateBase(ctx, filepath.Join(t.TempDir(), "other"), testmodel.Tiny(testmodel.ArchLlama))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		make  func(t *testing.T, out string) string // returns the checkpoint to push
		file  string                                // the message must name this file
		other string                                // and say this
	}{
		{
			name: "adapter of another model",
			make: func(t *testing.T, out string) string {
				d, err := testmodel.WriteCheckpoint(ctx, out, 10, adapterSpec(), testmodel.CheckpointOptions{Base: other})
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			file: "adapter_model.safetensors", other: "shape",
		},
		{
			name: "truncated adapter weights",
			make: func(t *testing.T, out string) string {
				d, err := testmodel.WriteCheckpoint(ctx, out, 10, adapterSpec(), testmodel.CheckpointOptions{Base: shared.base})
				if err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(d, "adapter_model.safetensors")
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, st.Size()/2); err != nil {
					t.Fatal(err)
				}
				return d
			},
			file: "adapter_model.safetensors",
		},
		{
			name: "broken adapter config",
			make: func(t *testing.T, out string) string {
				d, err := testmodel.WriteCheckpoint(ctx, out, 10, adapterSpec(), testmodel.CheckpointOptions{Base: shared.base})
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "adapter_config.json"), []byte(`{"r": "eight",`), 0o644); err != nil {
					t.Fatal(err)
				}
				return d
			},
			file: "adapter_config.json",
		},
		{
			name: "missing checkpoint",
			make: func(t *testing.T, out string) string { return filepath.Join(out, "checkpoint-404") },
			file: "checkpoint-404",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, dh, "bad")
			ckpt := tc.make(t, s.out)
			before := dh.Stats(t)
			p := startProc(t, "push", s.env(), "push", ckpt, "--repo", s.repo, "--merged", "--base", shared.baseDir,
				"--log-format", "json")
			code, ok := p.wait(2 * time.Minute)
			if !ok {
				t.Fatal("push did not finish")
			}
			logs := p.logs()
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			last := logs[strings.LastIndex(strings.TrimRight(logs, "\n"), "\n")+1:]
			if !strings.HasPrefix(last, "hubsync: ") || !strings.Contains(last, tc.file) || !strings.Contains(last, tc.other) {
				t.Errorf("the error %q does not name %s (and %q)", last, tc.file, tc.other)
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(last))
			if out := p.stdout.String(); out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			after := dh.Stats(t)
			if n := s.commitCount(ctx); n > 1 || after.Commits != before.Commits || after.ObjectsStored != before.ObjectsStored {
				t.Errorf("something was published: %d commits on the repo, Hub commits %d→%d, objects %d→%d",
					n, before.Commits, after.Commits, before.ObjectsStored, after.ObjectsStored)
			}
			if ents, err := os.ReadDir(filepath.Join(s.out, ".hubsync-staging")); err == nil && len(ents) > 0 {
				t.Errorf("push left staging behind: %d entries", len(ents))
			}
		})
	}
}

// TestDemoBinary runs the README's first command, `hubsync demo`, through the built binary.
func TestDemoBinary(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	dir := filepath.Join(t.TempDir(), "demo")
	code, out := run(t, "demo", []string{"HOME=" + home, "TMPDIR=" + t.TempDir()}, 2*time.Minute,
		"demo", "--dir", dir, "--checkpoints", "2", "--interval", "200ms")
	if code != 0 || !strings.Contains(out, "all checks passed") || strings.Contains(out, "FAILED") {
		t.Fatalf("hubsync demo: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", dir, err)
	}
}
