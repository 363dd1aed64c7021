package testmodel

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// torchStorage names torch's typed storage class for a dtype.
var torchStorage = map[tensor.DType]string{
	tensor.F64: "DoubleStorage", tensor.F32: "FloatStorage", tensor.F16: "HalfStorage", tensor.BF16: "BFloat16Storage",
	tensor.I64: "LongStorage", tensor.I32: "IntStorage", tensor.I16: "ShortStorage", tensor.I8: "CharStorage",
	tensor.U8: "ByteStorage", tensor.BOOL: "BoolStorage",
}

// TorchPickle returns the pickle (protocol 2) torch.save writes as data.pkl for an OrderedDict state dict of
// contiguous tensors: collections.OrderedDict() filled by SETITEMS with one
// torch._utils._rebuild_tensor_v2(persistent ('storage', torch.<T>Storage, "<i>", "cpu", numel), 0, size,
// stride, False, OrderedDict()) per tensor, storage i holding tensor i. Globals are memoized and fetched again
// with BINGET, as Python's pickler does.
func TorchPickle(tensors []safetensors.Data) ([]byte, error) {
	var b bytes.Buffer
	memo := map[string]int{}
	next := 0
	put := func() {
		if next < 256 {
			b.WriteByte('q')
			b.WriteByte(byte(next))
		} else {
			b.WriteByte('r')
			_ = binary.Write(&b, binary.LittleEndian, uint32(next))
		}
		next++
	}
	global := func(module, name string) {
		k := module + "\n" + name
		if i, ok := memo[k]; ok {
			if i < 256 {
				b.WriteByte('h')
				b.WriteByte(byte(i))
			} else {
				b.WriteByte('j')
				_ = binary.Write(&b, binary.LittleEndian, uint32(i))
			}
			return
		}
		b.WriteString("c" + module + "\n" + name + "\n")
		memo[k] = next
		put()
	}
	str := func(s string) {
		b.WriteByte('X')
		_ = binary.Write(&b, binary.LittleEndian, uint32(len(s)))
		b.WriteString(s)
		put()
	}
	integer := func(v int64) {
		switch {
		case v >= 0 && v < 256:
			b.WriteByte('K')
			b.WriteByte(byte(v))
		case v >= 0 && v < 65536:
			b.WriteByte('M')
			_ = binary.Write(&b, binary.LittleEndian, uint16(v))
		case v >= -1<<31 && v < 1<<31:
			b.WriteByte('J')
			_ = binary.Write(&b, binary.LittleEndian, int32(v))
		default:
			b.WriteByte(0x8a)
			b.WriteByte(8)
			_ = binary.Write(&b, binary.LittleEndian, v)
		}
	}
	tuple := func(vals []int64) {
		if len(vals) == 0 {
			b.WriteByte(')')
			return
		}
		if len(vals) > 3 {
			b.WriteByte('(')
		}
		for _, v := range vals {
			integer(v)
		}
		switch len(vals) {
		case 1, 2, 3:
			b.WriteByte(byte(0x84 + len(vals)))
		default:
			b.WriteByte('t')
		}
		put()
	}
	b.Write([]byte{0x80, 2})
	global("collections", "OrderedDict")
	b.WriteByte(')')
	b.WriteByte('R')
	put()
	for start := 0; start < len(tensors); start += 1000 { // Python batches SETITEMS by 1000
		b.WriteByte('(')
		for i := start; i < min(start+1000, len(tensors)); i++ {
			t := tensors[i]
			st, ok := torchStorage[t.DType]
			if !ok {
				return nil, fmt.Errorf("tensor %s: dtype %s has no torch storage", t.Name, t.DType)
			}
			numel, _ := tensor.NumElements(t.Shape)
			str(t.Name)
			global("torch._utils", "_rebuild_tensor_v2")
			b.WriteByte('(')
			b.WriteByte('(')
			str("storage")
			global("torch", st)
			str(strconv.Itoa(i))
			str("cpu")
			integer(numel)
			b.WriteByte('t')
			put()
			b.WriteByte('Q')
			integer(0)
			tuple(t.Shape)
			stride := make([]int64, len(t.Shape))
			acc := int64(1)
			for d := len(t.Shape) - 1; d >= 0; d-- {
				stride[d] = acc
				acc *= t.Shape[d]
			}
			tuple(stride)
			b.WriteByte(0x89)
			global("collections", "OrderedDict")
			b.WriteByte(')')
			b.WriteByte('R')
			put()
			b.WriteByte('t')
			put()
			b.WriteByte('R')
			put()
		}
		b.WriteByte('u')
	}
	b.WriteByte('.')
	return b.Bytes(), nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTorchZip writes tensors in the layout torch.save (PyTorch ≥ 1.6) gives a file whose name without its
// extension is the archive name (pytorch_model.bin → pytorch_model/): <name>/data.pkl, <name>/byteorder
// ("little"), <name>/data/<i> (storage i's bytes), <name>/version ("3\n") and <name>/.data/serialization_id,
// every entry stored uncompressed with its data aligned to 64 bytes by a padding extra field ("FB"), as torch's
// writer aligns them.
func WriteTorchZip(path string, tensors []safetensors.Data) error {
	pkl, err := TorchPickle(tensors)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	cw := &countWriter{w: bw}
	zw := zip.NewWriter(cw)
	add := func(entry string, data []byte) error {
		if err := zw.Flush(); err != nil {
			return err
		}
		full := name + "/" + entry
		hdrEnd := cw.n + 30 + int64(len(full)) + 4
		pad := (64 - hdrEnd%64) % 64
		extra := make([]byte, 4+pad)
		binary.LittleEndian.PutUint16(extra, 0x4246) // "FB"
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		// CreateRaw with the sizes and CRC known writes no data descriptor, so the next header starts right after
		// the data and the offset arithmetic above holds.
		w, err := zw.CreateRaw(&zip.FileHeader{Name: full, Method: zip.Store, Extra: extra, CRC32: crc32.ChecksumIEEE(data),
			CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	if err := add("data.pkl", pkl); err != nil {
		return err
	}
	if err := add("byteorder", []byte("little")); err != nil {
		return err
	}
	for i, t := range tensors {
		if err := add("data/"+strconv.Itoa(i), t.Bytes); err != nil {
			return err
		}
	}
	if err := add("version", []byte("3\n")); err != nil {
		return err
	}
	if err := add(".data/serialization_id", []byte("1234567890123456789012345678901234567890")); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// ConvertToTorch rewrites a model or adapter directory's safetensors weights as torch.save files:
// adapter_model.safetensors → adapter_model.bin, model.safetensors → pytorch_model.bin, and a sharded
// model-0000i-of-0000n.safetensors set (with model.safetensors.index.json) → pytorch_model-0000i-of-0000n.bin with
// pytorch_model.bin.index.json, as transformers names them. The safetensors files are removed.
func ConvertToTorch(dir string) error {
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	if raw, err := os.ReadFile(idxPath); err == nil {
		var idx map[string]json.RawMessage
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("%s: %w", idxPath, err)
		}
		var wm map[string]string
		if err := json.Unmarshal(idx["weight_map"], &wm); err != nil {
			return fmt.Errorf("%s: %w", idxPath, err)
		}
		rename := func(s string) string {
			return "pytorch_" + strings.TrimSuffix(s, ".safetensors") + ".bin"
		}
		done := map[string]bool{}
		for k, shard := range wm {
			wm[k] = rename(shard)
			if done[shard] {
				continue
			}
			done[shard] = true
			if err := convertFile(filepath.Join(dir, shard), filepath.Join(dir, rename(shard))); err != nil {
				return err
			}
		}
		if idx["weight_map"], err = json.Marshal(wm); err != nil {
			return err
		}
		out, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "pytorch_model.bin.index.json"), out, 0o644); err != nil {
			return err
		}
		return os.Remove(idxPath)
	}
	for from, to := range map[string]string{"adapter_model.safetensors": "adapter_model.bin", "model.safetensors": "pytorch_model.bin"} {
		p := filepath.Join(dir, from)
		if _, err := os.Stat(p); err == nil {
			return convertFile(p, filepath.Join(dir, to))
		}
	}
	return fmt.Errorf("%s: no safetensors weights to convert", dir)
}

// convertFile writes the tensors of a safetensors file, in its header's offset order, as a torch zip file and
// removes the safetensors file.
func convertFile(from, to string) error {
	f, err := safetensors.Open(from)
	if err != nil {
		return err
	}
	var ts []safetensors.Data
	for _, ti := range f.Tensors {
		b, err := f.ReadTensor(ti)
		if err != nil {
			f.Close()
			return err
		}
		ts = append(ts, safetensors.Data{Entry: safetensors.Entry{Name: ti.Name, DType: ti.DType, Shape: ti.Shape}, Bytes: b})
	}
	f.Close()
	if err := WriteTorchZip(to, ts); err != nil {
		return err
	}
	return os.Remove(from)
}
