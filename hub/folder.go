package hub

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FolderOptions configure ListFolder.
type FolderOptions struct {
	// PathInRepo is the repo folder the files go under ("" = the root).
	PathInRepo string
	// Exclude are glob patterns; see MatchGlob. A file is left out when a pattern matches its path relative to
	// the folder or its path in the repo.
	Exclude []string
}

// ListFolder returns the files under dir as UploadFiles (sorted by path), leaving out every .git and .cache
// directory and the files an Exclude pattern matches. Symlinks to regular files are followed; other special files
// are skipped.
func ListFolder(dir string, opts FolderOptions) ([]UploadFile, error) {
	for _, p := range opts.Exclude {
		if err := ValidateGlob(p); err != nil {
			return nil, err
		}
	}
	prefix := strings.Trim(strings.ReplaceAll(opts.PathInRepo, "\\", "/"), "/")
	if prefix != "" {
		if _, err := cleanRepoPath(prefix); err != nil {
			return nil, fmt.Errorf("--path-in-repo: %w", err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	var out []UploadFile
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == ".cache" {
				return filepath.SkipDir
			}
			return nil
		}
		mode := d.Type()
		if mode&fs.ModeSymlink != 0 {
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() {
				return nil
			}
		} else if !mode.IsRegular() {
			return nil
		}
		inRepo := rel
		if prefix != "" {
			inRepo = prefix + "/" + rel
		}
		for _, pat := range opts.Exclude {
			if MatchGlob(pat, rel) || MatchGlob(pat, inRepo) {
				return nil
			}
		}
		out = append(out, UploadFile{PathInRepo: inRepo, LocalPath: p})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return out, nil
}

// ValidateGlob reports a malformed pattern.
func ValidateGlob(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("empty exclude pattern")
	}
	for _, seg := range strings.Split(strings.TrimSuffix(pattern, "/"), "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("bad exclude pattern %q: %w", pattern, err)
		}
	}
	return nil
}

// MatchGlob reports whether the slash-separated path p matches pattern:
//   - a pattern without "/" matches the last element (the file name) at any depth: "*.bin";
//   - otherwise it matches the whole path element by element, where "**" matches any number of elements
//     (zero included) and each other element is a path.Match pattern (*, ?, [...], \ escapes);
//   - a trailing "/" matches everything under that directory: "logs/" is "logs/**".
//
// A malformed pattern matches nothing (ValidateGlob reports it).
func MatchGlob(pattern, p string) bool {
	if pattern == "" {
		return false
	}
	if strings.HasSuffix(pattern, "/") {
		pattern += "**"
	}
	if !strings.Contains(pattern, "/") {
		if pattern == "**" {
			return true
		}
		ok, err := path.Match(pattern, path.Base(p))
		return err == nil && ok
	}
	return matchSegments(strings.Split(pattern, "/"), strings.Split(p, "/"))
}

// matchSegments matches pattern elements against path elements with "**" backtracking (iterative, so a
// pattern of many "**" stays polynomial).
func matchSegments(pat, segs []string) bool {
	pi, si := 0, 0
	starP, starS := -1, -1
	for si < len(segs) {
		switch {
		case pi < len(pat) && pat[pi] == "**":
			starP, starS = pi, si
			pi++
		case pi < len(pat) && matchElem(pat[pi], segs[si]):
			pi++
			si++
		case starP >= 0:
			starS++
			si = starS
			pi = starP + 1
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == "**" {
		pi++
	}
	return pi == len(pat)
}

func matchElem(pat, seg string) bool {
	ok, err := path.Match(pat, seg)
	return err == nil && ok
}
