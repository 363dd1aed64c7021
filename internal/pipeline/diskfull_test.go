package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hubsync/hubsync/merge"
)

// TestDiskFullNamesFileSystem: a full staging disk is fixable and its error names the path that could not be
// written and the file system's mount point, whatever operation failed.
func TestDiskFullNamesFileSystem(t *testing.T) {
	staging := filepath.Join(t.TempDir(), "staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(staging, "checkpoint-10", "merged.partial", "model-00001.safetensors")
	for _, tc := range []struct {
		name string
		err  error
		path string
	}{
		{"write", fmt.Errorf("merge: %w", &os.PathError{Op: "write", Path: target, Err: syscall.ENOSPC}), target},
		{"link", &os.LinkError{Op: "link", Old: "/out/checkpoint-10/a", New: target, Err: syscall.EDQUOT}, target},
		{"space check", &merge.DiskSpaceError{Dir: staging, Need: 10 << 30, Avail: 1 << 20}, staging},
		{"no path", fmt.Errorf("copy: %w", syscall.ENOSPC), filepath.Join(staging, "checkpoint-10")},
	} {
		err := diskFull(tc.err, filepath.Join(staging, "checkpoint-10"))
		var dfe *DiskFullError
		if !errors.As(err, &dfe) {
			t.Fatalf("%s: %v is not a DiskFullError", tc.name, err)
		}
		if dfe.Path != tc.path || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), "is full") {
			t.Errorf("%s: %v", tc.name, err)
		}
		if dfe.Mount == "" || !strings.Contains(err.Error(), "mounted at "+dfe.Mount) {
			t.Errorf("%s: no mount point in %v", tc.name, err)
		}
		if IsPermanent(err, "http://hub.test") {
			t.Errorf("%s: a full disk is permanent", tc.name)
		}
	}
	if err := errors.New("other"); diskFull(err, staging) != err {
		t.Error("other errors changed")
	}
}
