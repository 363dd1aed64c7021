//go:build unix

package fsutil

import "golang.org/x/sys/unix"

// AvailableBytes returns the bytes an unprivileged user may still write on the file system holding path.
func AvailableBytes(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ between platforms
}
