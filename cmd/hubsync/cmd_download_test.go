package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

func hubcliRequests(s *hubtest.Server) int64 {
	var n int64
	for _, v := range s.Stats().Requests {
		n += v
	}
	return n
}

// hubcliPushFolder pushes files to repo (tagging the commit with tag when set).
func hubcliPushFolder(t *testing.T, s *hubtest.Server, repo, tag string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for p, d := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--endpoint", s.URL(), "--token", hubcliToken, "push", dir, "--repo", repo}
	if tag != "" {
		args = append(args, "--tag", tag)
	}
	if code, out, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("push exit %d\n%s\n%s", code, out, errb)
	}
}

// TestDownloadOffline: with HF_HUB_OFFLINE=1 a fully cached snapshot is served with zero requests, and an
// uncached one fails at once, naming offline mode (issue 7 §3).
func TestDownloadOffline(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	hubcliPushFolder(t, s, "w/off", "v1", map[string]string{"config.json": `{"a":1}`, "b.txt": "bee"})
	base := []string{"--endpoint", s.URL(), "--token", hubcliToken}
	code, online, errb := hubcliRun(t, append(base, "download", "w/off", "--revision", "v1")...)
	if code != 0 {
		t.Fatalf("online download exit %d: %s", code, errb)
	}
	t.Setenv("HF_HUB_OFFLINE", "1")
	before := hubcliRequests(s)
	for _, args := range [][]string{{"download", "w/off", "--revision", "v1"}, {"download", "w/off", "--revision", strings.TrimSpace(filepath.Base(online))}} {
		code, out, errb := hubcliRun(t, append(base, args...)...)
		if code != 0 || out != online {
			t.Errorf("offline %v: exit %d, stdout %q (online %q), stderr %s", args, code, out, online, errb)
		}
	}
	if n := hubcliRequests(s) - before; n != 0 {
		t.Errorf("offline downloads made %d requests", n)
	}
	code, _, errb = hubcliRun(t, append(base, "download", "w/off", "--revision", "main")...)
	if code != 1 || !strings.Contains(errb, "offline") || !strings.Contains(errb, "not in the local cache") {
		t.Errorf("uncached revision offline: exit %d, stderr %s", code, errb)
	}
	code, _, errb = hubcliRun(t, append(base, "download", "w/never")...)
	if code != 1 || !strings.Contains(errb, "offline") {
		t.Errorf("uncached repo offline: exit %d, stderr %s", code, errb)
	}
	if n := hubcliRequests(s) - before; n != 0 {
		t.Errorf("offline downloads made %d requests", n)
	}
}

// TestDownloadSelection: FILES, --include/--exclude pick files; a repo id without an owner is the token's
// namespace; --json prints one object.
func TestDownloadSelection(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	hubcliPushFolder(t, s, "w/sel", "", map[string]string{"config.json": `{}`, "a.txt": "a", "sub/b.txt": "b", "c.bin": "c"})
	base := []string{"--endpoint", s.URL(), "--token", hubcliToken}
	list := func(dir string) []string {
		var got []string
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				got = append(got, filepath.ToSlash(rel))
			}
			return nil
		})
		sort.Strings(got)
		return got
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"download", "sel", "--local-dir", "LD", "--include", "*.txt", "--exclude", "sub/**"}, "a.txt"},
		{[]string{"download", "w/sel", "--local-dir", "LD", "config.json", "c.bin"}, "c.bin config.json"},
	} {
		ld := t.TempDir()
		for i, a := range tc.args {
			if a == "LD" {
				tc.args[i] = ld
			}
		}
		code, out, errb := hubcliRun(t, append(base, tc.args...)...)
		if code != 0 || strings.TrimSpace(out) != ld {
			t.Fatalf("%v: exit %d, stdout %q, stderr %s", tc.args, code, out, errb)
		}
		var got []string
		for _, f := range list(ld) {
			if !strings.HasPrefix(f, ".cache/") {
				got = append(got, f)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%v: files %v, want %s", tc.args, got, tc.want)
		}
	}
	code, out, errb := hubcliRun(t, append(base, "download", "w/sel", "a.txt", "--json")...)
	var res struct{ Repo, Path string }
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Repo != "w/sel" || !strings.HasSuffix(res.Path, "a.txt") {
		t.Errorf("--json: exit %d, stdout %q, stderr %s", code, out, errb)
	}
	if code, _, errb := hubcliRun(t, append(base, "download", "w/sel", "missing.txt")...); code != 1 || !strings.Contains(errb, "missing.txt") {
		t.Errorf("missing file: exit %d, stderr %s", code, errb)
	}
}
