//go:build unix

package watcher

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tryFlock takes an exclusive flock on f without blocking; it reports false when another open file holds it.
func tryFlock(f *os.File) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		default:
			return false, err
		}
	}
}

// pidAlive reports whether a process with this pid exists on this host (EPERM: it exists, owned by another user).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
