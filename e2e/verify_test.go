package e2e

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/hubsync/hubsync/hub"
)

// titleStep finds the checkpoint step in a commit title ("Upload checkpoint-20 (step 20)").
var titleStep = regexp.MustCompile(`checkpoint-([0-9]+)`)

// gitBlobID is the git object id of a file with content b (what the tree listing gives for regular files).
func gitBlobID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// compareTree compares a tree listing with an expected checkpoint: the same paths (besides .gitattributes),
// LFS files by sha256 and size, regular files by git blob id. It returns the differences.
func compareTree(entries []hub.TreeEntry, e *expectedCheckpoint) []string {
	var diffs []string
	seen := map[string]bool{}
	for _, en := range entries {
		if en.Type != "file" || en.Path == ".gitattributes" {
			continue
		}
		seen[en.Path] = true
		f, ok := e.Files[en.Path]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: not in checkpoint-%d's merge", en.Path, e.Step))
		case en.IsLFS():
			if en.LFS.OID != hex.EncodeToString(f.SHA256[:]) || en.LFS.Size != f.Size {
				diffs = append(diffs, fmt.Sprintf("%s: LFS %s (%d bytes), the local merge has %x (%d bytes)",
					en.Path, en.LFS.OID, en.LFS.Size, f.SHA256, f.Size))
			}
		default:
			b, err := e.read(en.Path)
			if err != nil {
				diffs = append(diffs, err.Error())
			} else if en.OID != gitBlobID(b) || en.Size != f.Size {
				diffs = append(diffs, fmt.Sprintf("%s: blob %s (%d bytes), the local merge's is %s (%d bytes)",
					en.Path, en.OID, en.Size, gitBlobID(b), f.Size))
			}
		}
	}
	var missing []string
	for p := range e.Files {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for _, p := range missing {
		diffs = append(diffs, fmt.Sprintf("%s: missing (checkpoint-%d's merge has it)", p, e.Step))
	}
	return diffs
}

// compareDownload compares a downloaded snapshot with an expected checkpoint byte for byte (sha256).
func compareDownload(snap string, e *expectedCheckpoint) []string {
	var diffs []string
	for p, f := range e.Files {
		b, err := os.ReadFile(filepath.Join(snap, filepath.FromSlash(p)))
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		if sha256.Sum256(b) != f.SHA256 {
			diffs = append(diffs, fmt.Sprintf("%s: downloaded bytes differ from the local merge's", p))
		}
	}
	return diffs
}

// verifyPublished checks the repo against the expected checkpoints, as an uninterrupted run leaves it:
//   - main has exactly one commit per checkpoint on top of the initial commit (no duplicates), each titled
//     with its checkpoint;
//   - every commit's tree is exactly one complete checkpoint's merge (no half-written checkpoint, no stale
//     shards of another step);
//   - every checkpoint has its tag step-N on its commit, and the tag downloads (hub client, HF cache layout)
//     to the local merge's bytes.
//
// It returns the commits by step.
func (s *scenario) verifyPublished(ctx context.Context, steps ...int) map[int]hub.CommitInfo {
	t := s.t
	t.Helper()
	commits, err := s.client.ListCommits(ctx, s.repo, "main", 0)
	if err != nil {
		t.Fatalf("list commits of %s: %v", s.repo, err)
	}
	if want := len(steps) + 1; len(commits) != want {
		var titles []string
		for _, c := range commits {
			titles = append(titles, c.Title)
		}
		t.Errorf("%s has %d commits on main, want %d (one per checkpoint %v, plus the initial commit): %q",
			s.repo, len(commits), want, steps, titles)
	}
	byStep := map[int]hub.CommitInfo{}
	for _, c := range commits {
		m := titleStep.FindStringSubmatch(c.Title)
		if m == nil {
			if c.Title != "initial commit" {
				t.Errorf("commit %s %q names no checkpoint", c.ID, c.Title)
			}
			continue
		}
		step, _ := strconv.Atoi(m[1])
		if prev, dup := byStep[step]; dup {
			t.Errorf("checkpoint-%d was committed twice: %s and %s", step, prev.ID, c.ID)
		}
		byStep[step] = c
		e := shared.expectedIn(t, step, s.repo)
		tree, err := s.client.ListTree(ctx, s.repo, c.ID, "", true)
		if err != nil {
			t.Fatalf("tree of %s: %v", c.ID, err)
		}
		for _, d := range compareTree(tree, e) {
			t.Errorf("commit %s (%s): %s", c.ID[:12], c.Title, d)
		}
	}
	refs, err := s.client.ListRefs(ctx, s.repo)
	if err != nil {
		t.Fatalf("refs of %s: %v", s.repo, err)
	}
	tags := map[string]string{}
	for _, r := range refs.Tags {
		tags[r.Name] = r.TargetCommit
	}
	if len(tags) != len(steps) {
		t.Errorf("%s has tags %v, want one per checkpoint %v", s.repo, tags, steps)
	}
	cache := filepath.Join(s.home, "downloads")
	for _, step := range steps {
		c, ok := byStep[step]
		if !ok {
			t.Errorf("checkpoint-%d has no commit", step)
			continue
		}
		tag := "step-" + strconv.Itoa(step)
		if tags[tag] != c.ID {
			t.Errorf("tag %s points at %q, want checkpoint-%d's commit %s", tag, tags[tag], step, c.ID)
			continue
		}
		snap, err := s.client.Download(ctx, s.repo, tag, hub.DownloadOptions{CacheDir: cache})
		if err != nil {
			t.Fatalf("download %s@%s: %v", s.repo, tag, err)
		}
		for _, d := range compareDownload(snap, shared.expectedIn(t, step, s.repo)) {
			t.Errorf("%s: %s", tag, d)
		}
	}
	return byStep
}
