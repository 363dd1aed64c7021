// Package torchzip reads PyTorch's torch.save zip format (PyTorch ≥ 1.6: adapter_model.bin, pytorch_model.bin)
// without executing anything. The archive holds <name>/data.pkl, a pickle of the state dict whose tensors are
// torch._utils._rebuild_tensor_v2 calls on persistent ids ('storage', torch.<T>Storage, key, location, numel),
// and each storage's bytes, little-endian, uncompressed, in the entry <name>/data/<key>. Open interprets the
// pickle with a restricted unpickler (Unpickle) and returns a safetensors.File view whose tensors read straight
// from the zip entries.
package torchzip

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// maxPickle bounds data.pkl (a state dict's pickle is a few hundred bytes per tensor).
const maxPickle = 256 << 20

// storageDTypes maps torch's typed storage classes to element types.
var storageDTypes = map[string]tensor.DType{
	"DoubleStorage": tensor.F64, "FloatStorage": tensor.F32, "HalfStorage": tensor.F16, "BFloat16Storage": tensor.BF16,
	"LongStorage": tensor.I64, "IntStorage": tensor.I32, "ShortStorage": tensor.I16, "CharStorage": tensor.I8,
	"ByteStorage": tensor.U8, "BoolStorage": tensor.BOOL,
}

// zipMagic starts every zip file (a local file header).
var zipMagic = []byte("PK\x03\x04")

// FormatError is a file that is not a torch zip state dict hubsync can read, or one that a restricted
// unpickler refused (Err is then a *DisallowedError).
type FormatError struct {
	Path string
	Err  error
}

func (e *FormatError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *FormatError) Unwrap() error { return e.Err }

// Open reads the torch zip file at path and returns its state dict as a safetensors.File view (tensors in the
// state dict's order). Errors name the path.
func Open(path string) (*safetensors.File, error) {
	f, err := fsutil.OpenRegular(path) // a FIFO or device would block the read forever

	if err != nil {
		return nil, err
	}
	sf, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

func open(path string, f *os.File) (*safetensors.File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &FormatError{path, errors.New("is a directory")}
	}
	head := make([]byte, 4)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, zipMagic) {
		return nil, &FormatError{path, errors.New("not a torch zip file (torch.save before PyTorch 1.6 or with _use_new_zipfile_serialization=False is not supported; re-save it as safetensors)")}
	}
	infos, err := Tensors(f, st.Size())
	if err != nil {
		return nil, &FormatError{path, err}
	}
	sf, err := safetensors.View(path, f, infos)
	if err != nil {
		return nil, &FormatError{path, err}
	}
	return sf, nil
}

// Tensors parses a torch zip archive and returns its tensors with Begin and End as absolute offsets in r.
func Tensors(r io.ReaderAt, size int64) ([]safetensors.TensorInfo, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not a valid zip archive: %w", err)
	}
	entries := map[string]*zip.File{}
	var pkl []string
	for _, zf := range zr.File {
		entries[zf.Name] = zf
		if strings.HasSuffix(zf.Name, "/data.pkl") && strings.Count(zf.Name, "/") == 1 {
			pkl = append(pkl, zf.Name)
		}
	}
	if len(pkl) != 1 {
		return nil, fmt.Errorf("expected one <name>/data.pkl entry, found %d", len(pkl))
	}
	prefix := strings.TrimSuffix(pkl[0], "data.pkl")
	if bo, ok := entries[prefix+"byteorder"]; ok {
		b, err := readEntry(bo, 16)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("byteorder is %q; only little-endian files are supported", s)
		}
	}
	data, err := readEntry(entries[pkl[0]], maxPickle)
	if err != nil {
		return nil, err
	}
	load := func(pid any) (any, error) {
		t, ok := pid.(Tuple)
		if !ok || len(t) != 5 || t[0] != "storage" {
			return nil, fmt.Errorf("persistent id %s is not ('storage', type, key, location, numel)", describe(pid))
		}
		g, ok1 := t[1].(Global)
		key, ok2 := t[2].(string)
		numel, ok3 := t[4].(int64)
		if !ok1 || !ok2 || !ok3 || numel < 0 {
			return nil, fmt.Errorf("malformed storage persistent id ('storage', %s, %s, %s, %s)", describe(t[1]), describe(t[2]), describe(t[3]), describe(t[4]))
		}
		dt, ok := storageDTypes[g.Name]
		if g.Module != "torch" || !ok {
			return nil, fmt.Errorf("unsupported storage type %s", g)
		}
		zf, ok := entries[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %q has no entry %sdata/%s", key, prefix, key)
		}
		if zf.Method != zip.Store {
			return nil, fmt.Errorf("entry %s is compressed (method %d); torch.save stores storages uncompressed", zf.Name, zf.Method)
		}
		// The local header (which DataOffset reads) is not covered by the central directory's checks: the data
		// must lie inside the file.
		if off, err := zf.DataOffset(); err != nil || off < 0 || zf.CompressedSize64 > uint64(size) || uint64(off) > uint64(size)-zf.CompressedSize64 {
			return nil, fmt.Errorf("entry %s: its data lies outside the %d-byte file", zf.Name, size)
		}
		if zf.CompressedSize64 != zf.UncompressedSize64 {
			return nil, fmt.Errorf("stored entry %s has differing sizes (%d, %d)", zf.Name, zf.CompressedSize64, zf.UncompressedSize64)
		}
		if es := int64(dt.Size()); numel > int64(zf.UncompressedSize64)/es {
			return nil, fmt.Errorf("storage %q holds %d %s elements but its entry has %d bytes", key, numel, dt, zf.UncompressedSize64)
		}
		return &Storage{Type: g, Key: key, Numel: numel, Ref: zf}, nil
	}
	obj, err := Unpickle(data, load)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkl[0], err)
	}
	d, ok := obj.(*Dict)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not a state dict", pkl[0], obj)
	}
	out := make([]safetensors.TensorInfo, 0, len(d.Keys))
	for i, k := range d.Keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("state dict key %s is not a string", describe(k))
		}
		t, ok := d.Values[i].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("state dict entry %q is a %T, not a tensor", name, d.Values[i])
		}
		ti, err := tensorInfo(name, t)
		if err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

// tensorInfo locates a contiguous tensor's bytes in its storage's zip entry.
func tensorInfo(name string, t *Tensor) (safetensors.TensorInfo, error) {
	dt := storageDTypes[t.Storage.Type.Name]
	numel, ok := tensor.NumElements(t.Size)
	if !ok {
		return safetensors.TensorInfo{}, fmt.Errorf("tensor %q: shape %v overflows", name, t.Size)
	}
	want := int64(1)
	for d := len(t.Size) - 1; d >= 0; d-- {
		if t.Size[d] != 1 && t.Stride[d] != want {
			return safetensors.TensorInfo{}, fmt.Errorf("tensor %q is not contiguous (size %v, stride %v); save it with .contiguous()", name, t.Size, t.Stride)
		}
		want *= t.Size[d]
	}
	if t.Offset > t.Storage.Numel || numel > t.Storage.Numel-t.Offset {
		return safetensors.TensorInfo{}, fmt.Errorf("tensor %q: %d elements at offset %d exceed its storage of %d", name, numel, t.Offset, t.Storage.Numel)
	}
	zf := t.Storage.Ref.(*zip.File)
	base, err := zf.DataOffset()
	if err != nil {
		return safetensors.TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	es := int64(dt.Size())
	begin := base + t.Offset*es
	return safetensors.TensorInfo{Name: name, DType: dt, Shape: append([]int64(nil), t.Size...), Begin: begin, End: begin + numel*es}, nil
}

func readEntry(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("entry %s is %d bytes (limit %d)", zf.Name, zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", zf.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", zf.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("entry %s exceeds %d bytes", zf.Name, limit)
	}
	return b, nil
}
