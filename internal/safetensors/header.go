// Package safetensors reads and writes the safetensors format (model-formats.md §1): a little-endian u64 header
// length, a JSON header naming every tensor's dtype, shape and byte range, then the packed data buffer.
//
// The reader validates a header exactly as the reference Rust reader does and never loads tensor data it is not
// asked for: data is read with positioned reads, so memory does not grow with the file. The writer plans the whole
// file (header and every offset) before any byte is written, and computes the file's size, SHA-256 and first
// 512 bytes while writing it.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/hubsync/hubsync/internal/tensor"
)

// MaxHeaderSize is the largest header the reference reader accepts (and the writer produces).
const MaxHeaderSize = 100_000_000

// MetadataKey is the reserved header key holding string→string metadata.
const MetadataKey = "__metadata__"

// Error kinds, named after the reference reader's errors (model-formats.md §1.5).
const (
	KindHeaderTooSmall          = "HeaderTooSmall"
	KindHeaderTooLarge          = "HeaderTooLarge"
	KindInvalidHeaderLength     = "InvalidHeaderLength"
	KindInvalidHeader           = "InvalidHeader"
	KindInvalidHeaderDeserial   = "InvalidHeaderDeserialization"
	KindInvalidOffset           = "InvalidOffset"
	KindValidationOverflow      = "ValidationOverflow"
	KindMisalignedSlice         = "MisalignedSlice"
	KindTensorInvalidInfo       = "TensorInvalidInfo"
	KindMetadataIncompleteBuffr = "MetadataIncompleteBuffer"
)

// FormatError reports a malformed safetensors file.
type FormatError struct {
	Path   string // file path, when known
	Kind   string // one of the Kind constants
	Tensor string // offending tensor, when there is one
	Msg    string
}

func (e *FormatError) Error() string {
	var b bytes.Buffer
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString("invalid safetensors file: ")
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	fmt.Fprintf(&b, " (%s)", e.Kind)
	return b.String()
}

// ErrFormat matches every *FormatError with errors.Is.
var ErrFormat = errors.New("invalid safetensors file")

// Is makes errors.Is(err, ErrFormat) true for format errors.
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

func formatErr(kind, tensorName, format string, args ...any) *FormatError {
	return &FormatError{Kind: kind, Tensor: tensorName, Msg: fmt.Sprintf(format, args...)}
}

// TensorInfo describes one tensor of a file. Begin and End are offsets within the data buffer (End is one past).
type TensorInfo struct {
	Name  string
	DType tensor.DType
	Shape []int64
	Begin int64
	End   int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n, _ := tensor.NumElements(t.Shape)
	return n
}

// Size is the tensor's byte length.
func (t TensorInfo) Size() int64 { return t.End - t.Begin }

// Header is a validated safetensors header.
type Header struct {
	// Metadata is the __metadata__ map (nil when absent).
	Metadata map[string]string
	// Tensors are sorted by offset.
	Tensors []TensorInfo
	// HeaderSize is N, the JSON header's length in bytes including padding.
	HeaderSize int64

	index map[string]int
}

// DataOffset is the absolute file offset of the data buffer.
func (h *Header) DataOffset() int64 { return 8 + h.HeaderSize }

// FileSize is the exact size a file with this header has.
func (h *Header) FileSize() int64 {
	if len(h.Tensors) == 0 {
		return h.DataOffset()
	}
	return h.DataOffset() + h.Tensors[len(h.Tensors)-1].End
}

// Lookup finds a tensor by name.
func (h *Header) Lookup(name string) (TensorInfo, bool) {
	i, ok := h.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return h.Tensors[i], true
}

// Names lists the tensor names in offset order.
func (h *Header) Names() []string {
	out := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		out[i] = t.Name
	}
	return out
}

// ReadHeader reads and validates the header of a safetensors file of fileSize bytes.
func ReadHeader(r io.ReaderAt, fileSize int64) (*Header, error) {
	if fileSize < 8 {
		return nil, formatErr(KindHeaderTooSmall, "", "file is %d bytes, shorter than the 8-byte length prefix", fileSize)
	}
	var prefix [8]byte
	if _, err := r.ReadAt(prefix[:], 0); err != nil {
		return nil, fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, formatErr(KindHeaderTooLarge, "", "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > fileSize-8 {
		return nil, formatErr(KindInvalidHeaderLength, "", "header length %d exceeds the %d bytes after the prefix (truncated file?)", n, fileSize-8)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	return ParseHeader(buf, fileSize)
}

// rawEntry mirrors one tensor entry of the JSON header.
type rawEntry struct {
	DType       *string        `json:"dtype"`
	Shape       *[]json.Number `json:"shape"`
	DataOffsets *[]json.Number `json:"data_offsets"`
}

// ParseHeader validates the JSON header bytes (the N bytes after the length prefix) of a file of fileSize bytes.
// Pass fileSize < 0 to skip the checks that need the file size (the buffer-completeness check).
func ParseHeader(hdr []byte, fileSize int64) (*Header, error) {
	if !utf8.Valid(hdr) {
		return nil, formatErr(KindInvalidHeader, "", "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, formatErr(KindInvalidHeaderDeserial, "", "header is not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, formatErr(KindInvalidHeaderDeserial, "", "header is not a JSON object")
	}
	h := &Header{HeaderSize: int64(len(hdr)), index: map[string]int{}}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, formatErr(KindInvalidHeaderDeserial, "", "header is not valid JSON: %v", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, formatErr(KindInvalidHeaderDeserial, name, "duplicate key in header")
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, formatErr(KindInvalidHeaderDeserial, name, "header is not valid JSON: %v", err)
		}
		if name == MetadataKey {
			md, err := parseMetadata(raw)
			if err != nil {
				return nil, err
			}
			h.Metadata = md
			continue
		}
		ti, err := parseEntry(name, raw)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if _, err := dec.Token(); err != nil {
		return nil, formatErr(KindInvalidHeaderDeserial, "", "header is not valid JSON: %v", err)
	}
	// Anything after the object must be whitespace (the writer pads with spaces).
	if len(bytes.TrimLeft(hdr[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, formatErr(KindInvalidHeaderDeserial, "", "trailing characters after the header object")
	}
	if err := h.validate(fileSize); err != nil {
		return nil, err
	}
	return h, nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var md map[string]string
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, formatErr(KindInvalidHeaderDeserial, "", "__metadata__ must map strings to strings: %v", err)
	}
	return md, nil
}

func parseEntry(name string, raw json.RawMessage) (TensorInfo, error) {
	var e rawEntry
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&e); err != nil {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "entry is not an object with dtype, shape and data_offsets: %v", err)
	}
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "entry needs dtype, shape and data_offsets")
	}
	dt, err := tensor.ParseDType(*e.DType)
	if err != nil {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "%v", err)
	}
	ti := TensorInfo{Name: name, DType: dt, Shape: make([]int64, len(*e.Shape))}
	for i, n := range *e.Shape {
		v, err := parseUint(n)
		if err != nil {
			return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "shape[%d]: %v", i, err)
		}
		ti.Shape[i] = v
	}
	if len(*e.DataOffsets) != 2 {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "data_offsets must have two elements, has %d", len(*e.DataOffsets))
	}
	if ti.Begin, err = parseUint((*e.DataOffsets)[0]); err != nil {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "data_offsets[0]: %v", err)
	}
	if ti.End, err = parseUint((*e.DataOffsets)[1]); err != nil {
		return TensorInfo{}, formatErr(KindInvalidHeaderDeserial, name, "data_offsets[1]: %v", err)
	}
	return ti, nil
}

// parseUint accepts a non-negative JSON integer that fits in int64.
func parseUint(n json.Number) (int64, error) {
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil || v > math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a non-negative integer", string(n))
	}
	return int64(v), nil
}

// validate applies the reference reader's checks (model-formats.md §1.5).
func (h *Header) validate(fileSize int64) error {
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var prevEnd int64
	for i, t := range h.Tensors {
		if t.Begin != prevEnd {
			what := "gap"
			if t.Begin < prevEnd {
				what = "overlap"
			}
			return formatErr(KindInvalidOffset, t.Name, "data starts at %d but the previous tensor ends at %d (%s)", t.Begin, prevEnd, what)
		}
		if t.End < t.Begin {
			return formatErr(KindInvalidOffset, t.Name, "data_offsets [%d, %d] end before they begin", t.Begin, t.End)
		}
		numel, ok := tensor.NumElements(t.Shape)
		if !ok {
			return formatErr(KindValidationOverflow, t.Name, "element count of shape %v overflows", t.Shape)
		}
		bits := int64(t.DType.Bits())
		if numel > math.MaxInt64/bits {
			return formatErr(KindValidationOverflow, t.Name, "bit size of shape %v overflows", t.Shape)
		}
		if numel*bits%8 != 0 {
			return formatErr(KindMisalignedSlice, t.Name, "%d elements of %s do not fill whole bytes", numel, t.DType)
		}
		if t.End-t.Begin != numel*bits/8 {
			return formatErr(KindTensorInvalidInfo, t.Name, "%s %s needs %d bytes, data_offsets give %d",
				t.DType, tensor.FormatShape(t.Shape), numel*bits/8, t.End-t.Begin)
		}
		prevEnd = t.End
		h.index[t.Name] = i
	}
	if fileSize >= 0 && 8+h.HeaderSize+prevEnd != fileSize {
		want := 8 + h.HeaderSize + prevEnd
		if fileSize < want {
			return formatErr(KindMetadataIncompleteBuffr, "", "file is %d bytes but the header describes %d (truncated)", fileSize, want)
		}
		return formatErr(KindMetadataIncompleteBuffr, "", "file is %d bytes but the header describes %d (%d trailing bytes)", fileSize, want, fileSize-want)
	}
	return nil
}
