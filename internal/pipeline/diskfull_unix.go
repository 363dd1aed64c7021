//go:build unix

package pipeline

import (
	"path/filepath"
	"syscall"
)

// mountOf returns the mount point of the file system holding p (the highest ancestor on the same device) and
// the bytes free to unprivileged users there ("" and -1 when unknown).
func mountOf(p string) (string, int64) {
	dir := p
	var st syscall.Stat_t
	for {
		if err := syscall.Stat(dir, &st); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", -1
		}
		dir = parent // the path itself may not exist (a file being created)
	}
	dev := st.Dev
	mount := dir
	for {
		parent := filepath.Dir(mount)
		if parent == mount {
			break
		}
		var ps syscall.Stat_t
		if err := syscall.Stat(parent, &ps); err != nil || ps.Dev != dev {
			break
		}
		mount = parent
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return mount, -1
	}
	return mount, int64(fs.Bavail) * int64(fs.Bsize)
}
