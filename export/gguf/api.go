package gguf

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// FileType is an output type as llama-quantize and unsloth name it (general.file_type).
type FileType int

// The output types hubsync writes. Their values are llama.h's llama_ftype.
const (
	FileF32   FileType = 0
	FileF16   FileType = 1
	FileQ4_0  FileType = 2
	FileQ8_0  FileType = 7
	FileQ4_KM FileType = 15
	FileQ5_KM FileType = 17
	FileQ6_K  FileType = 18
	FileBF16  FileType = 32
)

// fileTypeNames are the llama-quantize spellings.
var fileTypeNames = map[FileType]string{
	FileF32: "F32", FileF16: "F16", FileBF16: "BF16", FileQ8_0: "Q8_0", FileQ4_0: "Q4_0",
	FileQ4_KM: "Q4_K_M", FileQ5_KM: "Q5_K_M", FileQ6_K: "Q6_K",
}

func (t FileType) valid() bool { _, ok := fileTypeNames[t]; return ok }

// ParseFileType parses one type name, case-insensitively: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k.
func ParseFileType(s string) (FileType, error) {
	for t, n := range fileTypeNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("gguf: unknown type %q (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k)", s)
}

// ParseFileTypes parses a comma-separated list of type names (duplicates refused).
func ParseFileTypes(list string) ([]FileType, error) {
	var out []FileType
	seen := map[FileType]bool{}
	for _, part := range strings.Split(list, ",") {
		t, err := ParseFileType(part)
		if err != nil {
			return nil, err
		}
		if seen[t] {
			return nil, fmt.Errorf("gguf: type %s listed twice in %q", t, list)
		}
		seen[t] = true
		out = append(out, t)
	}
	return out, nil
}

// String is the llama-quantize spelling of the type ("Q4_K_M", "F16"), as used in file names.
func (t FileType) String() string {
	if n, ok := fileTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("FileType(%d)", int(t))
}

// Tensor is one tensor of the Hugging Face checkpoint a GGUF file is made from.
type Tensor struct {
	Name  string
	DType tensor.DType
	Shape []int64
}

// Source gives the checkpoint's tensors. It must produce the same bytes every time.
type Source interface {
	// Tensors lists the checkpoint's tensors (any order).
	Tensors() []Tensor
	// ReadTensor writes bytes [off, off+n) of the named tensor, encoded in its DType, to w.
	ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error
}

// Options say what to write.
type Options struct {
	Type FileType
	// Config is the checkpoint's config.json (for a merge: the merged model's).
	Config []byte
	// TokenizerDir holds tokenizer.json / tokenizer.model, tokenizer_config.json and the other tokenizer files.
	TokenizerDir string
	// Name is general.name ("" leaves it out).
	Name string
	// Pre overrides tokenizer.ggml.pre for a byte-level BPE tokenizer ("" keeps the name recognised from
	// tokenizer.json).
	Pre string
	// Threads bounds the quantizing goroutines (0: GOMAXPROCS). The bytes do not depend on it.
	Threads int
}

// TensorInfo is one tensor of a planned GGUF file.
type TensorInfo struct {
	Name string
	Type ggml.Type
	// Dims are in ggml order (ne[0], the contiguous dimension, first).
	Dims []uint64
	// Offset is relative to the start of the data section; Bytes is the tensor's size.
	Offset, Bytes int64
}

// File is a planned GGUF file: header, metadata, tensor infos and offsets are fixed; tensor data is produced
// from the Source on demand. Write and ProduceRange may run concurrently when the Source allows concurrent reads
// (DirSource does).
type File struct {
	// header is everything before the data section, padding included.
	header  []byte
	tensors []*plannedTensor
	size    int64
	src     Source
	threads int
	encode  encodeFunc
}

// Plan validates the checkpoint (architecture, tokenizer, shapes against the type) and lays out the file.
// Errors name the file and the problem. No tensor data is read.
func Plan(src Source, opts Options) (*File, error) { return planWith(src, opts, defaultHooks()) }

// Size is the file's length in bytes.
func (f *File) Size() int64 { return f.size }

// Tensors lists the file's tensors in file order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, p := range f.tensors {
		out[i] = p.info
		out[i].Dims = append([]uint64(nil), p.info.Dims...)
	}
	return out
}
