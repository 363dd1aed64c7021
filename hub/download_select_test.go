package hub

import (
	"errors"
	"strings"
	"testing"
)

func TestFilterDownload(t *testing.T) {
	files := []TreeEntry{{Path: "a.txt", Type: "file"}, {Path: "sub/b.txt", Type: "file"}, {Path: "c.bin", Type: "file"}}
	names := func(es []TreeEntry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Path)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		opts DownloadOptions
		want string
	}{
		{DownloadOptions{}, "a.txt sub/b.txt c.bin"},
		{DownloadOptions{Include: []string{"*.txt"}}, "a.txt sub/b.txt"},
		{DownloadOptions{Include: []string{"*.txt"}, Exclude: []string{"sub/"}}, "a.txt"},
		{DownloadOptions{Exclude: []string{"*.bin"}}, "a.txt sub/b.txt"},
		{DownloadOptions{Files: []string{"c.bin", "/a.txt"}}, "a.txt c.bin"},
	} {
		got, err := filterDownload(files, tc.opts)
		if err != nil || names(got) != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.opts, names(got), err, tc.want)
		}
	}
	if _, err := filterDownload(files, DownloadOptions{Files: []string{"missing"}}); !errors.Is(err, ErrEntryNotFound) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := filterDownload(files, DownloadOptions{Include: []string{"a/["}}); err == nil {
		t.Error("bad glob accepted")
	}
}

// FuzzSplitRepoRevision: the repo never holds "@", and repo + "@" + revision gives the spec back.
func FuzzSplitRepoRevision(f *testing.F) {
	for _, s := range []string{"a/b", "a/b@v1", "a/b@", "@x", "a/b@c@d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		repo, rev := SplitRepoRevision(spec)
		if strings.Contains(repo, "@") {
			t.Fatalf("repo %q holds @", repo)
		}
		if strings.Contains(spec, "@") {
			if repo+"@"+rev != spec {
				t.Fatalf("%q -> %q, %q", spec, repo, rev)
			}
		} else if repo != spec || rev != "" {
			t.Fatalf("%q -> %q, %q", spec, repo, rev)
		}
	})
}
