package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestBenchPublishHelpers(t *testing.T) {
	dir := t.TempDir()
	if got := dirAllocated(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("dirAllocated(missing) = %d, want 0", got)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := dirAllocated(dir); got < 1<<20 {
		t.Errorf("dirAllocated = %d, want at least 1 MiB", got)
	}
	if runtime.GOOS == "linux" {
		if got := procRSS(os.Getpid()); got <= 0 {
			t.Errorf("procRSS(self) = %d, want > 0", got)
		}
	}
	for _, tc := range []struct {
		line, key, want string
	}{
		{`{"message":"staging of the merged shards","staging":"none","why":"requested"}`, "staging", "none"},
		{`{"message":"x","why":"free \"space\""}`, "why", `free "space"`},
		{`{"message":"x","n":3}`, "n", ""},
		{`not json "staging":"disk"`, "staging", ""},
	} {
		if got := jsonField([]byte(tc.line), tc.key); got != tc.want {
			t.Errorf("jsonField(%s, %q) = %q, want %q", tc.line, tc.key, got, tc.want)
		}
	}
	if got := lastLines([]byte("a\nb\nc\n"), 2); got != "b\nc" {
		t.Errorf("lastLines = %q", got)
	}
}

func TestBenchPublishFlags(t *testing.T) {
	hubcliIsolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "publish", "--preset", "gpt9"}, "--preset must be"},
		{[]string{"bench", "publish", "--only", "both"}, "--only must be"},
		{[]string{"bench", "publish", "--parts", "0"}, "--parts must be"},
		{[]string{"bench", "publish", "--layouts", "delta,zip"}, "--layouts takes"},
	} {
		code, _, errb := hubcliRun(t, tc.args...)
		if code == 0 || !strings.Contains(errb, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error with %q", tc.args, code, errb, tc.want)
		}
	}
}
