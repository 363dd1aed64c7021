//go:build !unix

package watcher

import (
	"os"
)

// tryFlock is unsupported here: the O_EXCL lock file and its heartbeat are the only protection.
func tryFlock(*os.File) (bool, error) { return true, nil }

// pidAlive cannot check processes here; the heartbeat decides.
func pidAlive(int) bool { return true }
