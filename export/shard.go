package export

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// File names of a saved model (model-formats.md §2.1).
const (
	// SingleFileName is the weights file of an unsharded model.
	SingleFileName = "model.safetensors"
	// IndexFileName is the shard index of a sharded model.
	IndexFileName = "model.safetensors.index.json"
	// DefaultMaxShardSize is huggingface_hub's and transformers v4's default max_shard_size ("5GB").
	DefaultMaxShardSize int64 = 5_000_000_000
)

// TensorSpec is one output tensor in state-dict (insertion) order.
type TensorSpec struct {
	Name  string
	DType tensor.DType
	Shape []int64
}

// NumElements is the product of the shape (1 for a scalar); -1 when a dimension is negative or the product
// overflows.
func (t TensorSpec) NumElements() int64 {
	n, ok := tensor.NumElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// Size is the tensor's storage size in bytes (sub-byte dtypes rounded up to whole bytes); -1 when the shape is
// invalid, the dtype is Invalid or the size overflows int64.
func (t TensorSpec) Size() int64 {
	n := t.NumElements()
	bits := int64(t.DType.Bits())
	if n < 0 || bits == 0 || n > (math.MaxInt64-7)/bits {
		return -1
	}
	return tensor.ByteSize(t.DType, n)
}

// Shard is one output file.
type Shard struct {
	// FileName is model.safetensors or model-%05d-of-%05d.safetensors.
	FileName string
	// Tensors are in state-dict order (the file itself orders them by dtype and name, see Layout).
	Tensors []TensorSpec
	// Layout is the planned file: header bytes, every tensor's offsets, total file size.
	Layout *safetensors.Layout
}

// ShardPlan is the whole set of output weight files.
type ShardPlan struct {
	Shards []Shard
	// TotalSize is the sum of tensor data bytes (headers not counted) = index metadata.total_size.
	TotalSize int64
	// TotalParameters is the sum of the tensors' element counts, written as index metadata.total_parameters
	// (transformers v5) when positive. Set it to 0 to leave it out.
	TotalParameters int64
}

// FileSize is the sum of the shard files' sizes (headers included): the disk space the weights need.
func (p *ShardPlan) FileSize() int64 {
	var n int64
	for _, s := range p.Shards {
		n += s.Layout.Size
	}
	return n
}

// ShardFileName names shard i (0-based) of n the way huggingface_hub does: model.safetensors for a single
// shard, else model-00001-of-00004.safetensors, 1-based.
func ShardFileName(i, n int) string {
	if n == 1 {
		return SingleFileName
	}
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// ShardLayout says how output tensors are grouped into shards.
type ShardLayout string

const (
	// ShardLayoutDelta (the default) packs the tensors an adapter does not change first, then the ones it
	// changes, each group by huggingface_hub's size rule on its own: shards holding only unchanged tensors are
	// byte-identical across the checkpoints of one run, so the Hub stores them once and uploads skip them.
	ShardLayoutDelta ShardLayout = "delta"
	// ShardLayoutHF is huggingface_hub's exact layout: every tensor in state-dict order, one group.
	ShardLayoutHF ShardLayout = "hf"
)

// ParseShardLayout accepts "delta", "hf" or "" (the default, delta).
func ParseShardLayout(s string) (ShardLayout, error) {
	switch ShardLayout(s) {
	case "", ShardLayoutDelta:
		return ShardLayoutDelta, nil
	case ShardLayoutHF:
		return ShardLayoutHF, nil
	}
	return "", fmt.Errorf("shard layout must be delta or hf, not %q", s)
}

// PlanShards assigns tensors to shards exactly as huggingface_hub's split_state_dict_into_shards_factory does
// (model-formats.md §2.5): tensors are taken in the given order; a tensor larger than maxShardSize immediately
// becomes a shard of its own, appended before the shard being filled; otherwise the shard being filled is closed
// when adding the tensor would make it exceed maxShardSize (strict '>', so a shard may be exactly maxShardSize).
// Shards are named model.safetensors (one shard) or model-%05d-of-%05d.safetensors, and each file is planned
// with {"format":"pt"} metadata.
//
// The tensors hubsync writes never share storage, so the factory's shared-storage grouping does not arise.
func PlanShards(tensors []TensorSpec, maxShardSize int64) (*ShardPlan, error) {
	return PlanShardGroups([][]TensorSpec{tensors}, maxShardSize)
}

// PlanShardGroups packs each group of tensors on its own by PlanShards' rule (a shard never mixes two groups)
// and numbers the shards across the groups in order: with groups {unchanged, changed}, the shards of the first
// group are model-00001… up to its count, whatever the second group holds, and the names and bytes of those
// shards depend only on the first group's tensors and the total shard count. Empty groups are skipped; one
// group gives exactly PlanShards' plan.
func PlanShardGroups(groups [][]TensorSpec, maxShardSize int64) (*ShardPlan, error) {
	if maxShardSize <= 0 {
		return nil, fmt.Errorf("plan shards: max shard size must be positive, got %d", maxShardSize)
	}
	seen := make(map[string]bool)
	var (
		files [][]TensorSpec
		plan  ShardPlan
	)
	for _, tensors := range groups {
		var (
			current []TensorSpec
			curSize int64
		)
		for _, t := range tensors {
			if t.Name == "" || t.Name == safetensors.MetadataKey {
				return nil, fmt.Errorf("plan shards: invalid tensor name %q", t.Name)
			}
			if seen[t.Name] {
				return nil, fmt.Errorf("plan shards: duplicate tensor name %q", t.Name)
			}
			seen[t.Name] = true
			size := t.Size()
			if size < 0 {
				return nil, fmt.Errorf("plan shards: tensor %q: invalid dtype %s or shape %s", t.Name, t.DType, tensor.FormatShape(t.Shape))
			}
			if plan.TotalSize > math.MaxInt64-size {
				return nil, fmt.Errorf("plan shards: total size overflows at tensor %q", t.Name)
			}
			plan.TotalSize += size
			plan.TotalParameters += t.NumElements()
			t.Shape = append([]int64(nil), t.Shape...)
			if size > maxShardSize {
				files = append(files, []TensorSpec{t})
				continue
			}
			if curSize+size > maxShardSize {
				files = append(files, current)
				current, curSize = nil, 0
			}
			current = append(current, t)
			curSize += size
		}
		if len(current) > 0 {
			files = append(files, current)
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("plan shards: no tensors to write")
	}
	plan.Shards = make([]Shard, len(files))
	for i, g := range files {
		entries := make([]safetensors.Entry, len(g))
		for j, t := range g {
			entries[j] = safetensors.Entry{Name: t.Name, DType: t.DType, Shape: t.Shape}
		}
		name := ShardFileName(i, len(files))
		// transformers refuses a shard whose __metadata__ format is not "pt".
		l, err := safetensors.Plan(entries, map[string]string{"format": "pt"})
		if err != nil {
			return nil, fmt.Errorf("plan shards: %s: %w", name, err)
		}
		plan.Shards[i] = Shard{FileName: name, Tensors: g, Layout: l}
	}
	return &plan, nil
}

// WeightMap maps every tensor name to the file holding it.
func (p *ShardPlan) WeightMap() map[string]string {
	m := make(map[string]string)
	for _, s := range p.Shards {
		for _, t := range s.Tensors {
			m[t.Name] = s.FileName
		}
	}
	return m
}

// IndexJSON renders model.safetensors.index.json as transformers writes it (json.dumps(indent=2,
// sort_keys=True) + "\n", ASCII-only escapes): metadata.total_size, metadata.total_parameters when positive, and
// the weight map. It returns nil for a single-shard plan, which has no index.
func (p *ShardPlan) IndexJSON() ([]byte, error) {
	if len(p.Shards) <= 1 {
		return nil, nil
	}
	wm := p.WeightMap()
	names := make([]string, 0, len(wm))
	for n := range wm {
		names = append(names, n)
	}
	sort.Strings(names) // byte order of UTF-8 = code point order = Python's sort_keys
	var b bytes.Buffer
	b.WriteString("{\n  \"metadata\": {\n")
	if p.TotalParameters > 0 {
		b.WriteString("    \"total_parameters\": " + strconv.FormatInt(p.TotalParameters, 10) + ",\n")
	}
	b.WriteString("    \"total_size\": " + strconv.FormatInt(p.TotalSize, 10) + "\n  },\n  \"weight_map\": {")
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		writePyString(&b, n)
		b.WriteString(": ")
		writePyString(&b, wm[n])
	}
	if len(names) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes(), nil
}
