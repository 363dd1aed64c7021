// Package fsutil holds the file-system helpers several packages share.
package fsutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
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

// OpenRegular opens path for reading if it is a regular file (symlinks followed). A FIFO, device, socket or
// directory is refused, naming the path, before it is opened: opening or reading one can block forever.
func OpenRegular(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, st); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	// The path may have been replaced between the checks: check what was opened too.
	if st, err = f.Stat(); err != nil {
		f.Close()
		return nil, err
	}
	if err := regular(path, st); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadRegularFile is os.ReadFile for regular files only (see OpenRegular).
func ReadRegularFile(path string) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// regular returns an error naming path and its kind unless st is a regular file.
func regular(path string, st fs.FileInfo) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	kind := "a special file"
	switch {
	case m.IsDir():
		kind = "a directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		kind = "a device"
	}
	return &fs.PathError{Op: "open", Path: path, Err: notRegularError{kind}}
}

// ErrNotRegular marks a path refused because it is not a regular file (errors.Is).
var ErrNotRegular = errors.New("not a regular file")

// notRegularError says what kind of file was found.
type notRegularError struct{ kind string }

func (e notRegularError) Error() string        { return "is " + e.kind + ", not a regular file" }
func (e notRegularError) Is(target error) bool { return target == ErrNotRegular }

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
