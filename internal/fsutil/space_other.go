//go:build !unix && !windows

package fsutil

import (
	"errors"
	"runtime"
)

// AvailableBytes is not supported on this platform: it always fails.
func AvailableBytes(path string) (int64, error) {
	return 0, errors.New("free-space check not supported on " + runtime.GOOS)
}
