//go:build windows

package fsutil

import "golang.org/x/sys/windows"

// AvailableBytes returns the bytes the caller may still write on the volume holding path.
func AvailableBytes(path string) (int64, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return int64(avail), nil
}
