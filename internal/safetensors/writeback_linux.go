package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to disk now, without waiting for it. Files
// written this way reach their final fsync with little left to flush, so the disk works while the merge computes
// instead of after it. Errors are ignored: this is only a hint (the fsync that follows is what counts).
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
