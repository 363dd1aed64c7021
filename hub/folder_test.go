package hub

import (
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"*.bin", "a.bin", true},
		{"*.bin", "deep/dir/a.bin", true},
		{"*.bin", "a.bin.txt", false},
		{"optimizer.pt", "checkpoint-5/optimizer.pt", true},
		{"logs/", "logs/a/b.txt", true},
		{"logs/", "x/logs/a.txt", false},
		{"**/logs/**", "x/logs/a.txt", true},
		{"**/*.pt", "a.pt", true},
		{"**/*.pt", "x/y/a.pt", true},
		{"ckpt/**/rng_*.pth", "ckpt/rng_0.pth", true},
		{"ckpt/**/rng_*.pth", "ckpt/a/b/rng_0.pth", true},
		{"ckpt/**/rng_*.pth", "other/rng_0.pth", false},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/b/x/c", false},
		{"a/**", "a", true},
		{"a/**", "ab/c", false},
		{"**", "anything/at/all", true},
		{"a/[bc]/d", "a/c/d", true},
		{"a/[/d", "a/[/d", false},
		{"", "x", false},
		{"a/b", "a/b/c", false},
		{"**/**/x", "x", true},
	}
	for _, tc := range tests {
		if got := MatchGlob(tc.pattern, tc.path); got != tc.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
	for _, bad := range []string{"", "a/[", "x/[z-"} {
		if ValidateGlob(bad) == nil {
			t.Errorf("ValidateGlob(%q) accepted", bad)
		}
	}
}

// FuzzMatchGlob: no panic on any pattern; a path matches its own escaped form, "**/" + its escaped base name,
// and its first directory followed by "/".
func FuzzMatchGlob(f *testing.F) {
	f.Add("**/*.bin", "a/b/c.bin")
	f.Add("a/**/b/**/c", "a/x/b/y/c")
	f.Add("[", "[")
	f.Add("x", "dir/we*rd?[name]")
	f.Fuzz(func(t *testing.T, pattern, p string) {
		_ = MatchGlob(pattern, p)
		cp, err := cleanRepoPath(p)
		if err != nil || cp != p {
			return
		}
		if !MatchGlob(escapeGlob(p), p) && strings.Contains(p, "/") {
			t.Fatalf("%q does not match its escaped self %q", p, escapeGlob(p))
		}
		if base := path.Base(p); !MatchGlob("**/"+escapeGlob(base), p) {
			t.Fatalf("%q does not match **/%s", p, escapeGlob(base))
		}
		if dir, _, ok := strings.Cut(p, "/"); ok && !MatchGlob(escapeGlob(dir)+"/", p) {
			t.Fatalf("%q does not match %s/", p, escapeGlob(dir))
		}
	})
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestListFolder(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"config.json", "model.safetensors", "sub/tok.json", "sub/skip.bin", ".git/HEAD",
		".cache/huggingface/x", "logs/run/1.txt", "deep/.cache/y"} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(p), 0o644)
	}
	os.Symlink(filepath.Join(dir, "config.json"), filepath.Join(dir, "link.json"))
	os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "dirlink"))
	files, err := ListFolder(dir, FolderOptions{PathInRepo: "/out/", Exclude: []string{"*.bin", "out/logs/"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.PathInRepo)
	}
	want := []string{"out/config.json", "out/link.json", "out/model.safetensors", "out/sub/tok.json"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ListFolder(dir, FolderOptions{Exclude: []string{"a/["}}); err == nil {
		t.Error("bad pattern accepted")
	}
	if _, err := ListFolder(filepath.Join(dir, "config.json"), FolderOptions{}); err == nil {
		t.Error("a file accepted as folder")
	}
	if _, err := ListFolder(dir, FolderOptions{PathInRepo: "../x"}); err == nil {
		t.Error("bad path-in-repo accepted")
	}
}
