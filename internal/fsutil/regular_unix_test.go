//go:build unix

package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "p")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink("f", link); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "pl")
	if err := os.Symlink("p", fifoLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		want    string // "" = success
		notRegl bool
	}{
		{file, "", false},
		{link, "", false},
		{fifo, "named pipe", true},
		{fifoLink, "named pipe", true},
		{dir, "directory", true},
		{"/dev/null", "device", true},
		{filepath.Join(dir, "missing"), "no such file", false},
	} {
		b, err := ReadRegularFile(tc.path)
		if tc.want == "" {
			if err != nil || string(b) != "ok" {
				t.Errorf("%s: %q, %v", tc.path, b, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: err = %v, want %q naming the path", tc.path, err, tc.want)
		}
		if errors.Is(err, ErrNotRegular) != tc.notRegl {
			t.Errorf("%s: errors.Is(ErrNotRegular) = %v", tc.path, !tc.notRegl)
		}
	}
}
