package hub

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// huggingface_hub's scan_cache_dir takes every entry of the cache root but .locks for a repository folder and
// warns about anything else (0.36: "Repo path is not a directory: .../hub/CACHEDIR.TAG"). A download must leave
// only repository folders there, and remove the tag earlier hubsync versions wrote (but no one else's file).
func TestDownloadCacheRootAsHuggingfaceHub(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/cacheroot"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := testFiles(t, dir, 7, map[string]int{"config.json": 10, "w.bin": 2000})
	if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tag string
		keep      bool
	}{
		{"fresh cache", "", false},
		{"tag of an earlier hubsync", ownCacheDirTag, false},
		{"someone else's tag", "Signature: 8a477f597d28d172789f06886806bc55\n# by someone else\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			if tc.tag != "" {
				os.WriteFile(filepath.Join(cache, "CACHEDIR.TAG"), []byte(tc.tag), 0o644)
			}
			if _, err := c.Download(ctx, repo, "main", DownloadOptions{CacheDir: cache}); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(cache)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				switch {
				case e.Name() == ".locks":
				case e.IsDir() && strings.HasPrefix(e.Name(), "models--"):
				case tc.keep && e.Name() == "CACHEDIR.TAG":
				default:
					t.Errorf("cache root holds %q, which scan_cache_dir reports as a corrupted repo", e.Name())
				}
			}
		})
	}
}
