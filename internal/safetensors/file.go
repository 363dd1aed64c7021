package safetensors

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hubsync/hubsync/internal/fsutil"
)

// File is an open safetensors file with a validated header. Tensor data is read on demand with positioned reads;
// File is safe for concurrent reads.
type File struct {
	*Header
	Path string
	f    *os.File
}

// Open opens and validates a safetensors file. Errors name the path.
func Open(path string) (*File, error) {
	f, err := fsutil.OpenRegular(path) // a FIFO or device would block the open or the reads forever
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := ReadHeader(f, st.Size())
	if err != nil {
		f.Close()
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Path = path
			return nil, fe
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Header: h, Path: path, f: f}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Section returns a reader over one tensor's bytes.
func (f *File) Section(t TensorInfo) *io.SectionReader {
	return io.NewSectionReader(f.f, f.DataOffset()+t.Begin, t.Size())
}

// ReadTensorAt fills p with t's bytes starting off bytes into the tensor.
func (f *File) ReadTensorAt(t TensorInfo, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > t.Size() {
		return fmt.Errorf("%s: read of %d bytes at %d is outside tensor %q (%d bytes)", f.Path, len(p), off, t.Name, t.Size())
	}
	if _, err := f.f.ReadAt(p, f.DataOffset()+t.Begin+off); err != nil {
		return fmt.Errorf("%s: read tensor %q: %w", f.Path, t.Name, err)
	}
	return nil
}

// ReadTensor reads a whole tensor into memory; use it for small tensors only.
func (f *File) ReadTensor(t TensorInfo) ([]byte, error) {
	buf := make([]byte, t.Size())
	if err := f.ReadTensorAt(t, buf, 0); err != nil {
		return nil, err
	}
	return buf, nil
}

// CheckFile reports whether the file at path is a complete, valid safetensors file: its header parses and the
// size it declares equals the file's size. It reads only the header.
func CheckFile(path string) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
