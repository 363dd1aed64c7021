package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub"
)

// TestUploadCLI: `hubsync upload REPO [LOCAL] [PATH_IN_REPO]` with hf upload's flags (issue 7 §3).
func TestUploadCLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	dir := t.TempDir()
	for p, d := range map[string]string{"a.txt": "a", "b.bin": "b", "sub/c.txt": "c", "sub/d.log": "d"} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(d), 0o644)
	}
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	tree := func() string {
		entries, err := c.ListTree(context.Background(), "w/up", "main", "", true)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			if e.Type == "file" && e.Path != ".gitattributes" {
				got = append(got, e.Path)
			}
		}
		sort.Strings(got)
		return strings.Join(got, " ")
	}
	base := []string{"--endpoint", s.URL(), "--token", hubcliToken}
	up := func(args ...string) (string, string) {
		t.Helper()
		code, out, errb := hubcliRun(t, append(append(base, "upload"), args...)...)
		if code != 0 {
			t.Fatalf("upload %v: exit %d\n%s\n%s", args, code, out, errb)
		}
		return out, errb
	}

	// A repo without an owner is the token's namespace; --include/--exclude; PATH_IN_REPO; --quiet.
	out, errb := up("up", dir, "data", "--include", "*.txt", "--exclude", "sub/**", "--quiet",
		"--commit-message", "first", "--commit-description", "body")
	if !strings.Contains(out, "/w/up/commit/") || errb != "" {
		t.Errorf("stdout %q stderr %q", out, errb)
	}
	if got := tree(); got != "data/a.txt" {
		t.Errorf("tree %q", got)
	}
	if cs, _ := c.ListCommits(context.Background(), "w/up", "main", 1); len(cs) != 1 || cs[0].Title != "first" || !strings.Contains(cs[0].Message, "body") {
		t.Errorf("commit %+v", cs)
	}
	// A single file, to its name or to PATH_IN_REPO.
	up("w/up", filepath.Join(dir, "b.bin"))
	up("w/up", filepath.Join(dir, "sub", "d.log"), "logs/d.log")
	if got := tree(); got != "b.bin data/a.txt logs/d.log" {
		t.Errorf("tree %q", got)
	}
	// --delete removes remote files under PATH_IN_REPO in the same commit; --json prints one object.
	out, _ = up("w/up", filepath.Join(dir, "sub"), "data", "--delete", "*.txt", "--json", "-m", "replace")
	var res struct {
		Repo    string
		Commits []struct {
			Commit    string `json:"commit"`
			CommitURL string `json:"commit_url"`
			NoOp      bool   `json:"no_op"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Repo != "w/up" || len(res.Commits) != 1 || len(res.Commits[0].Commit) != 40 {
		t.Errorf("--json: %q (%v)", out, err)
	}
	if got := tree(); got != "b.bin data/c.txt data/d.log logs/d.log" {
		t.Errorf("tree after --delete %q", got)
	}
	// The same content again is a no-op, and says so.
	_, errb = up("w/up", filepath.Join(dir, "b.bin"))
	if !strings.Contains(errb, "nothing committed") {
		t.Errorf("no-op stderr %q", errb)
	}
	// --create-pr prints the PR URL.
	os.WriteFile(filepath.Join(dir, "b.bin"), []byte("changed"), 0o644)
	out, _ = up("w/up", filepath.Join(dir, "b.bin"), "--create-pr")
	if !strings.Contains(out, "/w/up/discussions/") {
		t.Errorf("--create-pr stdout %q", out)
	}
	// Usage errors exit 2.
	for _, args := range [][]string{{"upload"}, {"upload", "w/up", dir, "x", "y"}, {"upload", "w/up", filepath.Join(dir, "b.bin"), "--include", "*.txt"}} {
		if code, _, errb := hubcliRun(t, append(base, args...)...); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, errb)
		}
	}
}
