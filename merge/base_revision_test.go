package merge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCachedBase lays out cache/models--acme--tiny with a snapshot per commit and the given refs.
func fakeCachedBase(t *testing.T, cache string, refs map[string]string, commits ...string) {
	t.Helper()
	repo := filepath.Join(cache, "models--acme--tiny")
	for _, c := range commits {
		snap := filepath.Join(repo, "snapshots", c)
		if err := os.MkdirAll(snap, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{configFile, baseSingleFile} {
			if err := os.WriteFile(filepath.Join(snap, f), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for ref, c := range refs {
		p := filepath.Join(repo, "refs", filepath.FromSlash(ref))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestResolveBaseRevision: OWNER/NAME@REV resolves refs/REV (a tag or branch, as snapshot_download(revision=)
// caches it) or snapshots/SHA; the legacy HUGGINGFACE_HUB_CACHE is honoured; HF_HUB_OFFLINE never fetches.
func TestResolveBaseRevision(t *testing.T) {
	shaMain := strings.Repeat("a", 40)
	shaTag := strings.Repeat("b", 40)
	shaOnly := strings.Repeat("c", 40)
	for _, env := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		cache := t.TempDir()
		t.Setenv("HF_HUB_CACHE", "")
		t.Setenv("HUGGINGFACE_HUB_CACHE", "")
		t.Setenv("HF_HUB_OFFLINE", "")
		t.Setenv(env, cache)
		fakeCachedBase(t, cache, map[string]string{"main": shaMain, "v1": shaTag, "release/2": shaTag}, shaMain, shaTag, shaOnly)
		snap := func(c string) string { return filepath.Join(cache, "models--acme--tiny", "snapshots", c) }
		noFetch := func(context.Context, string) (string, error) { return "", errors.New("must not fetch") }
		for spec, want := range map[string]string{
			"acme/tiny": snap(shaMain), "acme/tiny@main": snap(shaMain), "acme/tiny@v1": snap(shaTag),
			"acme/tiny@release/2": snap(shaTag), "acme/tiny@" + shaOnly: snap(shaOnly),
		} {
			dir, repo, err := resolveBase(context.Background(), spec, noFetch)
			if err != nil || dir != want || repo != "acme/tiny" {
				t.Errorf("%s: resolveBase(%q) = %q, %q, %v; want %q", env, spec, dir, repo, err, want)
			}
		}
		// Not cached: fetch gets the spec with its revision.
		var got string
		fetch := func(_ context.Context, s string) (string, error) { got = s; return snap(shaMain), nil }
		if _, _, err := resolveBase(context.Background(), "acme/tiny@v2", fetch); err != nil || got != "acme/tiny@v2" {
			t.Errorf("uncached revision: fetch got %q, err %v", got, err)
		}
		for _, bad := range []string{"acme/tiny@../x", "acme/tiny@", "acme/tiny@a//b"} {
			if _, _, err := resolveBase(context.Background(), bad, fetch); err == nil {
				t.Errorf("resolveBase(%q) accepted", bad)
			}
		}
		t.Setenv("HF_HUB_OFFLINE", "1")
		if _, _, err := resolveBase(context.Background(), "acme/tiny@v2", noFetch); err == nil || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
			t.Errorf("offline uncached: %v", err)
		}
		if dir, _, err := resolveBase(context.Background(), "acme/tiny@v1", noFetch); err != nil || dir != snap(shaTag) {
			t.Errorf("offline cached: %q %v", dir, err)
		}
	}
}
