package watcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// FileInfo is one regular file of a checkpoint directory as seen at one moment: its path relative to the
// directory (slash-separated), size and modification time. A snapshot is the sorted list of them; two equal
// snapshots taken a settle period apart mean nothing in the directory changed in between.
type FileInfo struct {
	Rel     string    `json:"rel"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

// snapshot lists every regular file under dir (recursively; symbolic links are followed to regular files and
// otherwise skipped), sorted by Rel. Files that vanish while it runs are left out. It fails when dir itself
// cannot be read.
func snapshot(dir string) ([]FileInfo, error) {
	var out []FileInfo
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		var st fs.FileInfo
		if d.Type()&fs.ModeSymlink != 0 {
			st, err = os.Stat(p)
		} else {
			st, err = d.Info()
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, FileInfo{Rel: filepath.ToSlash(rel), Size: st.Size(), ModTime: st.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rel < out[j].Rel })
	return out, nil
}

// sameFiles reports whether two snapshots list the same names with the same sizes and modification times.
func sameFiles(a, b []FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Rel != b[i].Rel || a[i].Size != b[i].Size || !a[i].ModTime.Equal(b[i].ModTime) {
			return false
		}
	}
	return true
}

// totalSize is the sum of the files' sizes.
func totalSize(files []FileInfo) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}
