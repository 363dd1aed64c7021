package safetensors

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/tensor"
)

// File is an open safetensors file with a validated header. Tensor data is read on demand with positioned reads;
// File is safe for concurrent reads.
type File struct {
	*Header
	Path string
	f    *os.File
	// data is the absolute file offset that tensor offsets are relative to: the header's DataOffset for a
	// safetensors file, 0 for a View.
	data int64
}

// View returns a File reading tensors that another format stores at absolute offsets of f (each TensorInfo's
// Begin and End are file offsets; tensors may overlap). It checks every tensor's byte length against its dtype
// and shape and that it lies inside the file. The File owns f. Tensors keep their order; Metadata is nil.
func View(path string, f *os.File, tensors []TensorInfo) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := &Header{Tensors: tensors, index: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		if _, dup := h.index[t.Name]; dup {
			return nil, formatErr(KindInvalidHeaderDeserial, t.Name, "tensor listed twice")
		}
		numel, ok := tensor.NumElements(t.Shape)
		bits := int64(t.DType.Bits())
		if !ok || bits == 0 || numel > math.MaxInt64/bits || numel*bits%8 != 0 || t.End-t.Begin != numel*bits/8 {
			return nil, formatErr(KindTensorInvalidInfo, t.Name, "%s %s does not fit its %d bytes", t.DType, tensor.FormatShape(t.Shape), t.End-t.Begin)
		}
		if t.Begin < 0 || t.End > st.Size() {
			return nil, formatErr(KindMetadataIncompleteBuffr, t.Name, "bytes [%d, %d) lie outside the %d-byte file", t.Begin, t.End, st.Size())
		}
		h.index[t.Name] = i
	}
	return &File{Header: h, Path: path, f: f}, nil
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
	return &File{Header: h, Path: path, f: f, data: h.DataOffset()}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Section returns a reader over one tensor's bytes.
func (f *File) Section(t TensorInfo) *io.SectionReader {
	return io.NewSectionReader(f.f, f.data+t.Begin, t.Size())
}

// ReadTensorAt fills p with t's bytes starting off bytes into the tensor.
func (f *File) ReadTensorAt(t TensorInfo, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > t.Size() {
		return fmt.Errorf("%s: read of %d bytes at %d is outside tensor %q (%d bytes)", f.Path, len(p), off, t.Name, t.Size())
	}
	if _, err := f.f.ReadAt(p, f.data+t.Begin+off); err != nil {
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
