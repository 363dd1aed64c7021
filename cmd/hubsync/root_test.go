package main

import (
	"strings"
	"testing"
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
