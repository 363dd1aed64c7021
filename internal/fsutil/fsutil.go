// Package fsutil holds the file-system helpers several packages share.
package fsutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// SyncDir fsyncs a directory, so the entries created, renamed or removed in it are durable. File systems that
// cannot sync directories (EINVAL) are not an error.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

// SyncTree fsyncs root and every directory below it.
func SyncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return SyncDir(p)
		}
		return nil
	})
}

// tempName returns dir/prefix<random>suffix for the pattern prefix*suffix (os.CreateTemp's rule).
func tempName(dir, pattern string) (string, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndexByte(pattern, '*'); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	if strings.ContainsRune(prefix+suffix, os.PathSeparator) || strings.ContainsRune(prefix+suffix, '/') {
		return "", &os.PathError{Op: "createtemp", Path: pattern, Err: errors.New("pattern contains path separator")}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(dir, prefix+hex.EncodeToString(b[:])+suffix), nil
}

// MkdirTemp creates a new directory in dir like os.MkdirTemp, but with mode 0777 less the umask (as os.Mkdir
// gives) instead of 0700.
func MkdirTemp(dir, pattern string) (string, error) {
	if !strings.Contains(pattern, "*") {
		pattern += "*"
	}
	for try := 0; ; try++ {
		name, err := tempName(dir, pattern)
		if err != nil {
			return "", err
		}
		err = os.Mkdir(name, 0o777)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		return name, nil
	}
}

// CreateTemp creates a new file in dir, as os.CreateTemp does (the last "*" in pattern is replaced by a random
// string), but with mode 0666 less the umask, as os.Create gives, instead of 0600: for outputs that are renamed
// into place and must end up with the permissions of any file the user creates.
func CreateTemp(dir, pattern string) (*os.File, error) {
	for try := 0; ; try++ {
		name, err := tempName(dir, pattern)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		return f, err
	}
}
