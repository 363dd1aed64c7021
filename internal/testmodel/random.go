package testmodel

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"

	"github.com/hubsync/hubsync/internal/tensor"
)

// tileElems is the unit of random generation and quantization: a multiple of every valid block size (up to 4096)
// and even, so tiles start on block and byte boundaries. Each tile has its own random stream, so any tile can be
// regenerated independently and memory stays bounded by a tile.
const tileElems = 1 << 16

// valueKind selects the distribution of a tensor's values.
type valueKind int

const (
	valWeight    valueKind = iota // normal, std 0.02–0.05 per tensor, rare ×8 outliers
	valNorm                       // RMSNorm weights: 1 + 0.05·normal
	valBias                       // biases (and LoRA tensors, with their own std): 0.02·normal
	valMagnitude                  // DoRA magnitude: positive around a given mean
)

// stream identifies a tensor's random values: a seed and the tensor's name.
type stream struct {
	key  uint64
	kind valueKind
	std  float64 // base standard deviation (kind-dependent meaning)
	mean float64 // for valMagnitude
	// dtype, when a 16-bit type, is what values are rounded to before use (the "original" weights of a bf16 model).
	dtype tensor.DType
	fast  bool // cheap approximate normals (benchmark mode)
}

// newStream derives a stream from a seed and a name.
func newStream(seed int64, name string, kind valueKind, dtype tensor.DType) stream {
	h := fnv.New64a()
	h.Write([]byte(name))
	key := h.Sum64() ^ (uint64(seed) * 0x9E3779B97F4A7C15)
	s := stream{key: key, kind: kind, dtype: dtype}
	switch kind {
	case valWeight:
		// A per-tensor std in [0.02, 0.05).
		s.std = 0.02 + 0.03*float64(key>>11)/float64(1<<53)
	case valBias:
		s.std = 0.02
	case valNorm:
		s.std = 0.05
	}
	return s
}

// rng returns the random source of one tile.
func (s stream) rng(tile int64) *rand.Rand {
	return rand.New(rand.NewPCG(s.key, uint64(tile)*0xD1B54A32D192ED03+0x632BE59BD9B4E019))
}

// fill writes the values of elements [tile·tileElems, tile·tileElems+len(dst)) of the stream into dst.
func (s stream) fill(tile int64, dst []float32) {
	r := s.rng(tile)
	if s.fast {
		s.fillFast(r, dst)
	} else {
		for i := range dst {
			dst[i] = s.value(r)
		}
	}
	if s.dtype == tensor.BF16 || s.dtype == tensor.F16 {
		for i, v := range dst {
			dst[i] = tensor.RoundTo(s.dtype, v)
		}
	}
}

func (s stream) value(r *rand.Rand) float32 {
	n := r.NormFloat64()
	switch s.kind {
	case valNorm:
		return float32(1 + s.std*n)
	case valMagnitude:
		return float32(s.mean * (1 + 0.1*n))
	case valWeight:
		v := s.std * n
		if r.Uint32()%2048 == 0 {
			v *= 8 // a rare outlier, as real weight matrices have
		}
		return float32(v)
	}
	return float32(s.std * n)
}

// fillFast uses an Irwin–Hall approximation (sum of four random bytes) for speed: one 64-bit draw gives two
// values.
func (s stream) fillFast(r *rand.Rand, dst []float32) {
	// A sum of four uniform bytes has mean 510 and sd 147.8; centring on 509.5 keeps the (integer) sums away
	// from zero, so no value is exactly 0.
	const mean, sd = 509.5, 147.80
	scale, shift := s.std, 0.0
	switch s.kind {
	case valNorm:
		shift = 1
	case valMagnitude:
		scale, shift = 0.1*s.mean, s.mean
	}
	for i := 0; i < len(dst); i += 2 {
		u := r.Uint64()
		a := float64(u&0xFF+u>>8&0xFF+u>>16&0xFF+u>>24&0xFF) - mean
		dst[i] = float32(shift + scale*a/sd)
		if i+1 < len(dst) {
			b := float64(u>>32&0xFF+u>>40&0xFF+u>>48&0xFF+u>>56) - mean
			dst[i+1] = float32(shift + scale*b/sd)
		}
	}
}

// randomBytes fills p with the stream's random bytes for a tile (fast mode packed codes and U8 absmax).
func (s stream) randomBytes(tile int64, p []byte) {
	r := s.rng(tile)
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	if i < len(p) {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], r.Uint64())
		copy(p[i:], tail[:])
	}
}

// uniform returns a value in [lo, hi) from r.
func uniform(r *rand.Rand, lo, hi float64) float32 { return float32(lo + (hi-lo)*r.Float64()) }
