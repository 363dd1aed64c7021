package merge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge/kernels"
)

// Backend computes output tiles: it turns a tile's base values (packed 4-bit codes with their scales, or raw
// 16/32-bit floats) plus an optional low-rank update and DoRA rescaling into output bytes. The planner cuts every
// tensor into tiles and the executor runs them on several goroutines at once, so MergeTile must be safe for
// concurrent use. A backend never sees files; everything a tile needs is in the Tile.
//
// The CPU backend (NewCPUBackend) is always available. Other backends (CUDA, behind the "cuda" build tag in
// package merge/cuda) are handed to the merge through Options.Backends, so they plug in without changes to the
// planner or the writer.
type Backend interface {
	// Name identifies the backend in logs ("cpu/avx512", "cuda/0").
	Name() string
	// TileElems is the number of elements the backend prefers per tile. Tile boundaries depend only on it and on
	// the tensor shapes, never on the number of workers, so the output is the same for any worker count.
	TileElems() int
	// MergeTile computes one tile. See Tile for the contract.
	MergeTile(ctx context.Context, t *Tile) error
	// Close releases the backend's resources.
	Close() error
}

// SourceKind says how a tile's base values are stored.
type SourceKind uint8

const (
	// SourceFloat is raw little-endian F32, F16 or BF16 values (Tile.Source.DType).
	SourceFloat SourceKind = iota + 1
	// SourcePacked4 is bitsandbytes 4-bit codes, two per byte, high nibble first (model-formats.md §3.4).
	SourcePacked4
)

// TileSource is a tile's base values.
type TileSource struct {
	Kind SourceKind
	// DType and Raw: for SourceFloat, the Count values of the tile.
	DType tensor.DType
	Raw   []byte
	// For SourcePacked4: Packed starts at byte Start/2 of the tensor's packed data and covers the tile's elements
	// (element e is in byte e/2 − Start/2, high nibble when e is even); Scales holds the float32 scale of every
	// block the tile touches, from block Start/Blocksize (double quantization already resolved); Code is the
	// 16-entry codebook.
	Packed    []byte
	Scales    []float32
	Code      *[16]float32
	Blocksize int
}

// DoRAMode selects a tile's DoRA step.
type DoRAMode uint8

const (
	// DoRANone: no DoRA.
	DoRANone DoRAMode = iota
	// DoRARows: DoRA over rows (Linear): each row r of V = W + ΔW is scaled by RowMagnitude[r] / ‖V[r,:]‖₂.
	DoRARows
	// DoRAColumnNorms is the first pass of column DoRA: V = W + ΔW is computed and ColSumSq[j] += Σ_r V[r,j]² (in
	// row order, in float64); nothing is written.
	DoRAColumnNorms
	// DoRAColumns is the second pass of column DoRA (Embedding, or Linear with fan_in_fan_out): each column j of V
	// is multiplied by ColFactor[j] (= magnitude[j] / column norm, computed by the executor between passes).
	DoRAColumns
)

// Tile is one unit of work: Count consecutive elements (in row-major order) of one output tensor, starting at
// flat element Start. Tiles that carry a low-rank update or DoRA consist of whole rows: Rows rows of a Cols-wide
// matrix starting at row Row0 (Count = Rows·Cols, Start = Row0·Cols).
//
// MergeTile computes, in float32:
//
//	W  = base values (dequantized: code[q]·scale, then rounded to BaseRound when that is BF16 or F16, as
//	     bitsandbytes returns the weight in its quant_state dtype; or widened from the float source)
//	V  = W + Coef·M                (when R > 0: V[i,j] = W[i,j] + Σ_t Coef[i·R+t]·M[t·Cols+j])
//	V' = DoRA(V)                   (per DoRA)
//	Out = round(V', OutDType)      (round-to-nearest-even exactly as torch, little-endian)
//
// leaving V' in Work[:Count] and setting NonFinite to the tile index of the first output value that is not finite
// after rounding (-1 when all are finite). In the DoRAColumnNorms pass it only accumulates ColSumSq.
type Tile struct {
	// Tensor is the output tensor's name (for errors and logs).
	Tensor string
	// Start and Count place the tile in the flattened tensor.
	Start int64
	Count int
	// Row0, Rows and Cols describe a tile of whole rows (Rows > 0), required when R > 0 or DoRA is set.
	Row0, Rows, Cols int

	Source TileSource
	// BaseRound is the dtype the dequantized base is rounded to before the update (Invalid or F32: none).
	BaseRound tensor.DType

	// R is the rank of the low-rank update (0: none); Coef is Rows×R (already multiplied by the LoRA scaling),
	// M is R×Cols.
	R    int
	Coef []float32
	M    []float32

	DoRA         DoRAMode
	RowMagnitude []float32 // Rows values, for DoRARows
	ColFactor    []float32 // Cols values, for DoRAColumns
	ColSumSq     []float64 // Cols accumulators, for DoRAColumnNorms

	// OutDType is F32, F16 or BF16; Out receives Count·size bytes (nil in the DoRAColumnNorms pass).
	OutDType tensor.DType
	Out      []byte
	// Work is scratch space of at least Count float32 values, owned by the caller; it holds V' afterwards.
	Work []float32

	// NonFinite is set by MergeTile: the index within the tile of the first output value that is not finite
	// after rounding, or -1.
	NonFinite int
}

// Check validates a tile's internal consistency: backends outside this package call it before touching memory.
func (t *Tile) Check() error { return t.check() }

// check validates a tile's internal consistency (used by backends before touching memory).
func (t *Tile) check() error {
	if t.Count < 0 || len(t.Work) < t.Count {
		return fmt.Errorf("tile of %s: work buffer of %d for %d elements", t.Tensor, len(t.Work), t.Count)
	}
	if t.R > 0 || t.DoRA != DoRANone {
		if t.Rows <= 0 || t.Cols <= 0 || t.Rows*t.Cols != t.Count || int64(t.Row0)*int64(t.Cols) != t.Start {
			return fmt.Errorf("tile of %s: rows %d×%d from row %d do not match %d elements from %d", t.Tensor, t.Rows, t.Cols, t.Row0, t.Count, t.Start)
		}
	}
	if t.R > 0 && (len(t.Coef) < t.Rows*t.R || len(t.M) < t.R*t.Cols) {
		return fmt.Errorf("tile of %s: low-rank factors too short", t.Tensor)
	}
	switch t.DoRA {
	case DoRARows:
		if len(t.RowMagnitude) < t.Rows {
			return fmt.Errorf("tile of %s: %d row magnitudes for %d rows", t.Tensor, len(t.RowMagnitude), t.Rows)
		}
	case DoRAColumns:
		if len(t.ColFactor) < t.Cols {
			return fmt.Errorf("tile of %s: %d column factors for %d columns", t.Tensor, len(t.ColFactor), t.Cols)
		}
	case DoRAColumnNorms:
		if len(t.ColSumSq) < t.Cols {
			return fmt.Errorf("tile of %s: %d column accumulators for %d columns", t.Tensor, len(t.ColSumSq), t.Cols)
		}
	}
	if t.DoRA != DoRAColumnNorms && len(t.Out) < t.Count*t.OutDType.Size() {
		return fmt.Errorf("tile of %s: output buffer of %d bytes for %d %s values", t.Tensor, len(t.Out), t.Count, t.OutDType)
	}
	switch t.Source.Kind {
	case SourceFloat:
		if len(t.Source.Raw) < t.Count*t.Source.DType.Size() {
			return fmt.Errorf("tile of %s: %d source bytes for %d %s values", t.Tensor, len(t.Source.Raw), t.Count, t.Source.DType)
		}
	case SourcePacked4:
		s := t.Source
		if t.Count > 0 {
			last := t.Start + int64(t.Count) - 1
			if int64(len(s.Packed)) < last/2-t.Start/2+1 || s.Blocksize <= 0 || s.Code == nil ||
				int64(len(s.Scales)) < last/int64(s.Blocksize)-t.Start/int64(s.Blocksize)+1 {
				return fmt.Errorf("tile of %s: packed source too short", t.Tensor)
			}
		}
	default:
		return fmt.Errorf("tile of %s: no source", t.Tensor)
	}
	return nil
}

// BackendProvider makes a backend available to the merge (Options.Backends). The CPU backend is built in.
type BackendProvider struct {
	// Name is what --device selects ("cuda").
	Name string
	// Available reports whether a device is present (auto picks the first available provider).
	Available func() bool
	// New creates the backend; kernel is the CPU kernel set, for backends that fall back to it.
	New func(kernel *kernels.Impl) (Backend, error)
	// Unavailable, when set, says why Available reports false ("no NVIDIA driver (libcuda.so.1): …"); it names
	// the reason in --device errors and in auto's fallback log line.
	Unavailable func() string
}

// reason is why p is not available, for messages.
func (p BackendProvider) reason() string {
	if p.Unavailable != nil {
		if r := p.Unavailable(); r != "" {
			return r
		}
	}
	return "no " + p.Name + " device found"
}

// autoFallback returns, when device is auto and providers were built in but none is available, the line auto logs
// when it falls back to the CPU (the first provider's reason); "" otherwise.
func autoFallback(device string, providers []BackendProvider) string {
	device = strings.ToLower(strings.TrimSpace(device))
	if (device != "" && device != DeviceAuto) || len(providers) == 0 {
		return ""
	}
	for _, p := range providers {
		if p.Available != nil && p.Available() {
			return ""
		}
	}
	return providers[0].Name + " unavailable (" + providers[0].reason() + "); merging on the CPU"
}

// Device names accepted by Options.Device.
const (
	DeviceAuto = "auto"
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// ErrNoCUDA is returned for --device cuda when hubsync was built without a CUDA backend.
var ErrNoCUDA = errors.New("hubsync was built without CUDA support (build with -tags cuda)")

// selectBackend picks the backend for device: "cpu"; "auto" = the first available provider (CUDA when built in
// and a device is present), else cpu; another name = that provider, which must be available.
func selectBackend(device string, providers []BackendProvider, kernel *kernels.Impl) (Backend, error) {
	device = strings.ToLower(strings.TrimSpace(device))
	switch device {
	case "", DeviceAuto:
		for _, p := range providers {
			if p.Available != nil && p.Available() {
				return p.New(kernel)
			}
		}
		return NewCPUBackend(kernel), nil
	case DeviceCPU:
		return NewCPUBackend(kernel), nil
	}
	for _, p := range providers {
		if p.Name == device {
			if p.Available != nil && !p.Available() {
				return nil, fmt.Errorf("--device %s: %s", device, p.reason())
			}
			return p.New(kernel)
		}
	}
	if device == DeviceCUDA {
		return nil, ErrNoCUDA
	}
	return nil, fmt.Errorf("--device %q: unknown device (auto, cpu or cuda)", device)
}

// cpuTileElems is the CPU backend's tile size: 256 Ki elements amortise the per-tile costs (hand-offs between
// goroutines, positioned reads) while the tile's buffers stay small (1 MiB of float32 work per tile in flight).
const cpuTileElems = 256 << 10

// cpuChunkElems is how many elements the CPU backend takes through all the steps of a tile (dequantize, add the
// update, DoRA, round and encode) before moving on: 16 Ki float32 (64 KiB) stay in the core's L1/L2 cache between
// the steps, where a whole tile would be streamed through memory once per step.
const cpuChunkElems = 16 << 10

// cpuBackend runs tiles on the calling goroutine with a CPU kernel set.
type cpuBackend struct{ k *kernels.Impl }

// NewCPUBackend returns the CPU backend over kernel set k (kernels.Generic() when nil).
func NewCPUBackend(k *kernels.Impl) Backend {
	if k == nil {
		k = kernels.Generic()
	}
	return &cpuBackend{k: k}
}

func (c *cpuBackend) Name() string   { return "cpu/" + c.k.Name }
func (c *cpuBackend) TileElems() int { return cpuTileElems }
func (c *cpuBackend) Close() error   { return nil }

// MergeTile implements Backend. It works through the tile in cache-sized chunks (whole rows for row tiles);
// every element is computed the same way whatever the chunking, so the bytes do not depend on it.
func (c *cpuBackend) MergeTile(ctx context.Context, t *Tile) error {
	if err := t.check(); err != nil {
		return err
	}
	t.NonFinite = -1
	if t.Rows > 0 {
		per := max(1, cpuChunkElems/t.Cols)
		for r := 0; r < t.Rows; r += per {
			n := min(per, t.Rows-r)
			if i := c.chunk(t, r*t.Cols, n*t.Cols, r, n); i >= 0 && t.NonFinite < 0 {
				t.NonFinite = i
			}
		}
		return nil
	}
	for off := 0; off < t.Count; off += cpuChunkElems {
		if i := c.chunk(t, off, min(cpuChunkElems, t.Count-off), 0, 0); i >= 0 && t.NonFinite < 0 {
			t.NonFinite = i
		}
	}
	return nil
}

// chunk computes tile elements [off, off+n) (rows [r0, r0+rows) of a row tile) and returns the tile index of the
// first non-finite output value, or -1.
func (c *cpuBackend) chunk(t *Tile, off, n, r0, rows int) int {
	k := c.k
	w := t.Work[off : off+n]
	start := t.Start + int64(off)
	switch t.Source.Kind {
	case SourcePacked4:
		s := t.Source
		bs := int64(s.Blocksize)
		k.Dequant4(w, s.Packed[start/2-t.Start/2:], start, s.Code, s.Scales[start/bs-t.Start/bs:], s.Blocksize)
		if t.BaseRound == tensor.BF16 || t.BaseRound == tensor.F16 {
			k.Round(t.BaseRound, w)
		}
	case SourceFloat:
		es := t.Source.DType.Size()
		k.Decode(t.Source.DType, t.Source.Raw[off*es:(off+n)*es], w)
	}
	cols := t.Cols
	if t.R > 0 {
		k.AddLowRank(w, t.Coef[r0*t.R:(r0+rows)*t.R], t.M[:t.R*cols], rows, cols, t.R)
	}
	switch t.DoRA {
	case DoRARows:
		for i := 0; i < rows; i++ {
			row := w[i*cols : (i+1)*cols]
			norm := float32(math.Sqrt(k.SumSquares(row)))
			f := t.RowMagnitude[r0+i] / norm
			for j := range row {
				row[j] *= f
			}
		}
	case DoRAColumnNorms:
		acc := t.ColSumSq[:cols]
		for i := 0; i < rows; i++ {
			k.AddSquares(acc, w[i*cols:(i+1)*cols])
		}
		return -1
	case DoRAColumns:
		f := t.ColFactor[:cols]
		for i := 0; i < rows; i++ {
			k.Scale(w[i*cols:(i+1)*cols], f)
		}
	}
	es := t.OutDType.Size()
	if i := k.Encode(t.OutDType, w, t.Out[off*es:(off+n)*es]); i >= 0 {
		return off + i
	}
	return -1
}
