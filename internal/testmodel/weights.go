package testmodel

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// quantData is what a 4-bit weight's statistics tensors and blob are made of.
type quantData struct {
	absmax []float32   // per-block absmax (no double quant, not fast mode)
	nested NestedQuant // double quant (in fast mode only Absmax and Offset are set; Codes stream)
	blob   []byte      // the quant_state JSON
}

// stateCache computes 4-bit statistics and keeps them while they fit in a memory budget, so that writing a file
// (whose F32 statistics precede the U8 codes) does not need a pass over the data for each component.
type stateCache struct {
	spec   BaseSpec
	budget int64
	used   int64
	m      map[string]*quantData
}

func newStateCache(spec BaseSpec, budget int64) *stateCache {
	return &stateCache{spec: spec, budget: budget, m: map[string]*quantData{}}
}

// weightStream is the random stream of a base weight or bias.
func (s BaseSpec) weightStream(name string, kind valueKind) stream {
	st := newStream(s.Seed, name, kind, s.DType)
	st.fast = s.FastRandomCodes
	return st
}

// blobLen is the length of the quant-state blob of a 4-bit weight. Only a double-quant weight needs its
// statistics for that (the offset's digits); they are computed and cached on the way (cheaply in fast mode).
func (c *stateCache) blobLen(name string, shape []int64) (int, error) {
	s := c.spec
	if s.DoubleQuant {
		return len(c.get(name, shape).blob), nil
	}
	qs := QuantState{QuantType: string(s.Quant), Blocksize: s.Blocksize, DType: s.DType, Shape: shape}
	return len(qs.Encode()), nil
}

// get returns the statistics of the 4-bit weight name with logical shape shape.
func (c *stateCache) get(name string, shape []int64) *quantData {
	if d, ok := c.m[name]; ok {
		return d
	}
	s := c.spec
	n, _ := tensor.NumElements(shape)
	nblocks := (n + int64(s.Blocksize) - 1) / int64(s.Blocksize)
	qs := QuantState{QuantType: string(s.Quant), Blocksize: s.Blocksize, DType: s.DType, Shape: shape}
	d := &quantData{}
	switch {
	case s.FastRandomCodes:
		if s.DoubleQuant {
			r := newStream(s.Seed, name+CompNestedAbsmax, valBias, tensor.F32).rng(0)
			d.nested.Offset = uniform(r, 0.07, 0.09)
			d.nested.Absmax = make([]float32, (nblocks+nestedBlocksize-1)/nestedBlocksize)
			for i := range d.nested.Absmax {
				d.nested.Absmax[i] = uniform(r, 0.02, 0.04)
			}
		}
	default:
		absmax := make([]float32, nblocks)
		st := s.weightStream(name, valWeight)
		qz := newQuantizer(s.Quant, s.Blocksize)
		buf := make([]float32, min(n, tileElems))
		for tile := int64(0); tile*tileElems < n; tile++ {
			cnt := min(n-tile*tileElems, tileElems)
			x := buf[:cnt]
			st.fill(tile, x)
			qz.absmax(x, absmax[tile*tileElems/int64(s.Blocksize):])
		}
		if s.DoubleQuant {
			d.nested = DoubleQuantize(absmax)
		} else {
			d.absmax = absmax
		}
	}
	if s.DoubleQuant {
		qs.Nested, qs.NestedBlocksize, qs.NestedDType, qs.NestedOffset = true, nestedBlocksize, "float32",
			d.nested.Offset
	}
	d.blob = qs.Encode()
	size := int64(len(d.absmax))*4 + int64(len(d.nested.Codes)) + int64(len(d.nested.Absmax))*4
	if c.used+size <= c.budget {
		c.m[name] = d
		c.used += size
	}
	return d
}

// absmax computes per-block absmax values of x (which starts on a block boundary) into out.
func (qz quantizer) absmax(x []float32, out []float32) {
	bs := qz.blocksize
	for b := 0; b*bs < len(x); b++ {
		out[b] = blockAbsmax(x[b*bs : min((b+1)*bs, len(x))])
	}
}

// baseWriter produces the bytes of every tensor of a planned base.
type baseWriter struct {
	info   *BaseInfo
	states *stateCache
	byName map[string]Tensor
	kinds  map[string]ModuleKind // by weight name
}

func newBaseWriter(info *BaseInfo, states *stateCache) *baseWriter {
	bw := &baseWriter{info: info, states: states, byName: map[string]Tensor{}, kinds: map[string]ModuleKind{}}
	for _, t := range info.Tensors {
		bw.byName[t.Name] = t
	}
	for _, m := range info.Modules {
		bw.kinds[m.WeightName()] = m.Kind
	}
	return bw
}

// fill is the safetensors.FillFunc of the base's weight files.
func (bw *baseWriter) fill(ctx context.Context, ti safetensors.TensorInfo, w io.Writer) error {
	t, ok := bw.byName[ti.Name]
	if !ok {
		return fmt.Errorf("tensor %q was not planned", ti.Name)
	}
	wt, _ := bw.info.Weight(t.Weight)
	s := bw.info.Spec
	comp := strings.TrimPrefix(t.Name, t.Weight)
	if comp == "" && !wt.Quantized {
		kind := valWeight
		switch {
		case strings.HasSuffix(t.Name, ".bias"):
			kind = valBias
		case bw.kinds[t.Name] == KindNorm:
			kind = valNorm
		}
		return writeFloats(ctx, w, s.weightStream(t.Name, kind), t.DType, ti.NumElements())
	}
	n, _ := tensor.NumElements(wt.Shape)
	if comp == "" {
		return bw.writeCodes(ctx, w, wt.Name, n, ti.Size())
	}
	d := bw.states.get(wt.Name, wt.Shape)
	switch comp {
	case CompAbsmax:
		switch {
		case s.DoubleQuant && s.FastRandomCodes:
			return writeRandomBytes(ctx, w, newStream(s.Seed, t.Name, valBias, tensor.U8), ti.Size())
		case s.DoubleQuant:
			_, err := w.Write(d.nested.Codes)
			return err
		case s.FastRandomCodes:
			st := newStream(s.Seed, t.Name, valMagnitude, tensor.F32)
			st.mean, st.fast = 0.08, true
			return writeFloats(ctx, w, st, tensor.F32, ti.NumElements())
		}
		return writeF32(w, d.absmax)
	case CompQuantMap:
		cb := Codebook(s.Quant)
		return writeF32(w, cb[:])
	case CompNestedAbsmax:
		return writeF32(w, d.nested.Absmax)
	case CompNestedQuantMap:
		m := DynamicMap()
		return writeF32(w, m[:])
	case quantStateKey(s.Quant):
		_, err := w.Write(d.blob)
		return err
	}
	return fmt.Errorf("tensor %q: unknown component %q", t.Name, comp)
}

// writeCodes writes the packed 4-bit codes of weight name (n elements, size bytes on disk).
func (bw *baseWriter) writeCodes(ctx context.Context, w io.Writer, name string, n, size int64) error {
	s := bw.info.Spec
	packedLen := (n + 1) / 2
	if s.FastRandomCodes {
		st := newStream(s.Seed, name, valWeight, tensor.U8)
		buf := make([]byte, min(packedLen, tileElems/2))
		for tile := int64(0); tile*tileElems/2 < packedLen; tile++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			p := buf[:min(packedLen-tile*tileElems/2, tileElems/2)]
			st.randomBytes(tile, p)
			if n%2 == 1 && (tile+1)*tileElems/2 >= packedLen {
				p[len(p)-1] = p[len(p)-1]&0xF0 | newQuantizer(s.Quant, s.Blocksize).code(0)
			}
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
	} else {
		st := s.weightStream(name, valWeight)
		qz := newQuantizer(s.Quant, s.Blocksize)
		x := make([]float32, min(n, tileElems))
		packed := make([]byte, (len(x)+1)/2)
		absmax := make([]float32, (len(x)+s.Blocksize-1)/s.Blocksize)
		for tile := int64(0); tile*tileElems < n; tile++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			cnt := min(n-tile*tileElems, tileElems)
			st.fill(tile, x[:cnt])
			p := packed[:(cnt+1)/2]
			qz.quantize(x[:cnt], p, absmax)
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
	}
	if size != packedLen {
		return fmt.Errorf("packed size %d does not match the planned %d bytes", packedLen, size)
	}
	return nil
}

// writeFloats writes n values of a stream encoded as dtype, tile by tile.
func writeFloats(ctx context.Context, w io.Writer, st stream, dtype tensor.DType, n int64) error {
	x := make([]float32, min(n, tileElems))
	b := make([]byte, len(x)*dtype.Size())
	for tile := int64(0); tile*tileElems < n; tile++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		cnt := min(n-tile*tileElems, tileElems)
		st.fill(tile, x[:cnt])
		if _, err := tensor.EncodeFloats(dtype, x[:cnt], b); err != nil {
			return err
		}
		if _, err := w.Write(b[:cnt*int64(dtype.Size())]); err != nil {
			return err
		}
	}
	return nil
}

// writeRandomBytes writes n random bytes of a stream.
func writeRandomBytes(ctx context.Context, w io.Writer, st stream, n int64) error {
	buf := make([]byte, min(n, tileElems))
	for tile := int64(0); tile*tileElems < n; tile++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := buf[:min(n-tile*tileElems, tileElems)]
		st.randomBytes(tile, p)
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// writeF32 writes float32 values little-endian.
func writeF32(w io.Writer, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	_, err := w.Write(b)
	return err
}
