package gguf

import (
	"context"
	"errors"
	"io"

	"github.com/hubsync/hubsync/internal/ggml"
	"github.com/hubsync/hubsync/internal/tensor"
)

// errNotImplemented marks the parts of the API that have not landed yet.
var errNotImplemented = errors.New("gguf: not implemented yet")

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

// ParseFileType parses one type name, case-insensitively: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k.
func ParseFileType(s string) (FileType, error) { return 0, errNotImplemented }

// ParseFileTypes parses a comma-separated list of type names (duplicates refused).
func ParseFileTypes(list string) ([]FileType, error) { return nil, errNotImplemented }

// String is the llama-quantize spelling of the type ("Q4_K_M", "F16"), as used in file names.
func (t FileType) String() string { return "" }

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
// from the Source on demand.
type File struct{}

// Plan validates the checkpoint (architecture, tokenizer, shapes against the type) and lays out the file.
// Errors name the file and the problem.
func Plan(src Source, opts Options) (*File, error) { return nil, errNotImplemented }

// Size is the file's length in bytes.
func (f *File) Size() int64 { return 0 }

// Tensors lists the file's tensors in file order.
func (f *File) Tensors() []TensorInfo { return nil }

// Write streams the whole file to w.
func (f *File) Write(ctx context.Context, w io.Writer) error { return errNotImplemented }

// ProduceRange writes bytes [off, off+n) of the file to w (the same bytes Write writes there).
func (f *File) ProduceRange(ctx context.Context, off, n int64, w io.Writer) error {
	return errNotImplemented
}

// WriteFile writes the file to path atomically (a temporary file in the same directory, fsynced, then
// renamed): on any error no file is left at path.
func WriteFile(ctx context.Context, path string, f *File) error { return errNotImplemented }

// DirSource is a Source over a model directory's safetensors weights (one file or an index of shards).
type DirSource struct{}

// OpenDir opens the weights of a Hugging Face model directory. Close it when done.
func OpenDir(dir string) (*DirSource, error) { return nil, errNotImplemented }

// Tensors implements Source.
func (d *DirSource) Tensors() []Tensor { return nil }

// ReadTensor implements Source.
func (d *DirSource) ReadTensor(ctx context.Context, name string, off, n int64, w io.Writer) error {
	return errNotImplemented
}

// Close closes the weight files.
func (d *DirSource) Close() error { return nil }
