package e2e

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
	"time"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/journal"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestWatchGGUF: the daemon publishes every checkpoint also as GGUF. With --merged --gguf the GGUF file is in
// each step's commit (tagged like the merged model) beside the safetensors, on disk staging; with --publish gguf
// and --staging none, only the GGUF file and its card are published, produced while uploading (the job's upload
// stage re-opens the producer from the journal, as after a restart). Either way the file on the Hub equals, byte
// for byte, what `hubsync export gguf` writes for that checkpoint.
func TestWatchGGUF(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	steps := []int{10, 20}
	cases := []struct {
		name, repo string
		args       []string
		// only: the repo holds nothing but the GGUF file and README.md
		only bool
	}{
		{"merged+gguf", "ggufmerged", []string{"--merged", "--gguf", "f16", "--staging", "disk"}, false},
		{"gguf-only", "ggufonly-GGUF", []string{"--publish", "gguf", "--gguf", "F16", "--staging", "none"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lh := startLocalHub(t)
			s := newScenario(t, lh, tc.repo)
			for _, st := range steps {
				if err := s.writeCheckpoint(ctx, st, false, testmodel.CheckpointOptions{MaxSteps: 20}); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"watch", s.out, "--repo", s.repo, "--base", shared.baseDir, "--settle", settle,
				"--policy", "all", "--max-shard-size", maxShard, "--log-format", "json", "--poll", "100ms",
				"--stop-after", itoa(len(steps))}, tc.args...)
			w := startProc(t, "watch-"+tc.name, s.env(), args...)
			if code, ok := w.wait(3 * time.Minute); !ok || code != 0 {
				w.kill()
				t.Fatalf("watch: exit %d (finished %v)\n%s", code, ok, w.logTail(4000))
			}
			rep := s.snapshot()
			name := strings.TrimSuffix(tc.repo, "-GGUF")
			file := name + "-F16.gguf"
			for _, st := range steps {
				if j := job(rep, st); j == nil || j.Stage != journal.Committed {
					t.Fatalf("step %d: %v\n%s", st, j, w.logTail(4000))
				}
				tag := "step-" + itoa(st)
				ents, err := s.client.ListTree(ctx, s.repo, tag, "", true)
				if err != nil {
					t.Fatal(err)
				}
				var paths []string
				for _, e := range ents {
					if e.Type == "file" && e.Path != ".gitattributes" {
						paths = append(paths, e.Path)
					}
					if e.Path == file && !e.IsLFS() {
						t.Errorf("step %d: %s is not in LFS", st, file)
					}
				}
				sort.Strings(paths)
				has := func(p string) bool {
					return sort.SearchStrings(paths, p) < len(paths) && paths[sort.SearchStrings(paths, p)] == p
				}
				if !has(file) || !has("README.md") {
					t.Errorf("step %d: %v lacks %s or README.md", st, paths, file)
				}
				if tc.only && len(paths) != 2 {
					t.Errorf("step %d: publish gguf published %v", st, paths)
				}
				if !tc.only && !has("config.json") {
					t.Errorf("step %d: no merged model in %v", st, paths)
				}
				// The bytes equal export gguf's for the same checkpoint.
				want := filepath.Join(t.TempDir(), "want.gguf")
				ckpt := filepath.Join(s.out, "checkpoint-"+itoa(st))
				if code, _ := run(t, "export", s.env(), time.Minute, "export", "gguf", "--base", shared.baseDir, "--adapter", ckpt,
					"--out", want, "--type", "f16", "--name", name); code != 0 {
					t.Fatalf("export gguf: exit %d", code)
				}
				snap, err := s.client.Download(ctx, s.repo, tag, hub.DownloadOptions{CacheDir: filepath.Join(t.TempDir(), "cache"),
					Include: []string{file, "README.md"}})
				if err != nil {
					t.Fatal(err)
				}
				if got, exp := fileSHA(t, filepath.Join(snap, file)), fileSHA(t, want); got != exp {
					t.Errorf("step %d: %s on the Hub differs from export gguf's", st, file)
				}
				card, err := os.ReadFile(filepath.Join(snap, "README.md"))
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range []string{"## GGUF", "ollama run hf.co/" + s.repo + ":F16", "- gguf"} {
					if !strings.Contains(string(card), w) {
						t.Errorf("step %d: card lacks %q:\n%s", st, w, card)
					}
				}
			}
			if n := lh.Stats(t).Commits; n != int64(len(steps)) {
				t.Errorf("%d commits, want one per checkpoint (%d)", n, len(steps))
			}
		})
	}
}

// fileSHA is the hex SHA-256 of a file.
func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
