package gguf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/hubsync/hubsync/internal/fsutil"
	"github.com/hubsync/hubsync/internal/safetensors"
)

// DirSource is a Source over a model directory's safetensors weights (one file or an index of shards).
type DirSource struct {
	files   []*safetensors.File
	refs    map[string]dirRef
	tensors []Tensor
}

type dirRef struct {
	f *safetensors.File
	t safetensors.TensorInfo
}

// OpenDir opens the weights of a Hugging Face model directory: model.safetensors.index.json and its shards, or
// model.safetensors. Close it when done.
func OpenDir(dir string) (_ *DirSource, err error) {
	d := &DirSource{refs: map[string]dirRef{}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	raw, err := fsutil.ReadRegularFile(idxPath)
	switch {
	case err == nil:
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", idxPath, err)
		}
		if len(idx.WeightMap) == 0 {
			return nil, fmt.Errorf("%s: weight_map is missing or empty", idxPath)
		}
		names := make([]string, 0, len(idx.WeightMap))
		for n := range idx.WeightMap {
			names = append(names, n)
		}
		sort.Strings(names)
		shards := map[string]*safetensors.File{}
		for _, n := range names {
			shard := idx.WeightMap[n]
			if shard == "" || filepath.Base(shard) != shard || shard == "." || shard == ".." {
				return nil, fmt.Errorf("%s: tensor %s: shard file name %q is not a plain file name", idxPath, n, shard)
			}
			f, ok := shards[shard]
			if !ok {
				if f, err = safetensors.Open(filepath.Join(dir, shard)); err != nil {
					return nil, err
				}
				shards[shard] = f
				d.files = append(d.files, f)
			}
			t, ok := f.Lookup(n)
			if !ok {
				return nil, fmt.Errorf("%s: tensor %s is listed in %s but not present", f.Path, n, filepath.Base(idxPath))
			}
			d.add(f, t)
		}
	case errors.Is(err, os.ErrNotExist):
		f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("gguf: %s has no model.safetensors or model.safetensors.index.json", dir)
			}
			return nil, err
		}
		d.files = append(d.files, f)
		for _, t := range f.Tensors {
			d.add(f, t)
		}
	default:
		return nil, fmt.Errorf("read %s: %w", idxPath, err)
	}
	return d, nil
}

func (d *DirSource) add(f *safetensors.File, t safetensors.TensorInfo) {
	d.refs[t.Name] = dirRef{f, t}
	d.tensors = append(d.tensors, Tensor{Name: t.Name, DType: t.DType, Shape: append([]int64(nil), t.Shape...)})
}

// Tensors implements Source.
func (d *DirSource) Tensors() []Tensor { return d.tensors }

// readChunk bounds one positioned read of ReadTensor.
const readChunk = 1 << 20

// ReadTensor implements Source.
func (d *DirSource) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	r, ok := d.refs[name]
	if !ok {
		return fmt.Errorf("gguf: no tensor %s in the model directory", name)
	}
	if off < 0 || n < 0 || off+n > r.t.Size() {
		return fmt.Errorf("%s: bytes [%d, %d) are outside tensor %s (%d bytes)", r.f.Path, off, off+n, name, r.t.Size())
	}
	buf := make([]byte, min(n, readChunk))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(n, int64(len(buf)))
		if err := r.f.ReadTensorAt(r.t, buf[:m], off); err != nil {
			return err
		}
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return nil
}

// Close closes the weight files.
func (d *DirSource) Close() error {
	var errs []error
	for _, f := range d.files {
		errs = append(errs, f.Close())
	}
	d.files = nil
	return errors.Join(errs...)
}
