package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub"
)

// TestRootUsageAndVersion: unknown commands exit 2 like other usage errors; `version` and `--version` print
// the version.
func TestRootUsageAndVersion(t *testing.T) {
	hubcliIsolate(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"no-such-command"}, exitUsage, ""},
		{[]string{"--no-such-flag"}, exitUsage, ""},
		{[]string{"whoami", "extra"}, exitUsage, ""},
		{[]string{"version"}, exitOK, "hubsync " + hubsyncVersion() + "\n"},
		{[]string{"--version"}, exitOK, "hubsync " + hubsyncVersion() + "\n"},
	} {
		code, out, errb := hubcliRun(t, tc.args...)
		if code != tc.code || (tc.stdout != "" && out != tc.stdout) {
			t.Errorf("hubsync %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q",
				strings.Join(tc.args, " "), code, out, errb, tc.code, tc.stdout)
		}
	}
}

// TestCommitMessageFlag: push takes --commit-message and -m; the old --message still works, with a deprecation
// note.
func TestCommitMessageFlag(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	for i, flag := range []string{"--commit-message", "-m", "--message"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "f.txt"), []byte(flag), 0o644)
		code, _, errb := hubcliRun(t, "--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", "w/msg", flag, "title "+flag)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", flag, code, errb)
		}
		if (i == 2) != strings.Contains(errb, "--commit-message") {
			t.Errorf("%s: stderr %q", flag, errb)
		}
		c, _ := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
		cs, err := c.ListCommits(context.Background(), "w/msg", "main", 1)
		if err != nil || len(cs) != 1 || cs[0].Title != "title "+flag {
			t.Errorf("%s: commits %+v %v", flag, cs, err)
		}
	}
}
