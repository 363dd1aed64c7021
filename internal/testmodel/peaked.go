package testmodel

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// Peak rewrites, in place, the 16-bit base generated in dir so that its logits have a clear winner: every
// self_attn.o_proj and mlp.down_proj weight is multiplied by 2^-shift (exact in bf16 and, away from the
// subnormals, in f16), so the layers add only a small correction to the residual stream and the last position's
// hidden state is dominated by the last token's own embedding. With tied embeddings (spec.Tied) the logit of
// token j is then about E_j·(g⊙E_t)/rms(E_t): the last token t scores about hidden·σ, every other token a sum of
// hidden random products of standard deviation √hidden·σ, so t wins by a margin that grows as √hidden
// (hidden 256: about 16 standard deviations of the other logits). Random test models have flat logits otherwise,
// where quantization noise may swap the two best tokens; tests that compare top-1 tokens across types use this.
//
// The tensor layout, file sizes and the sidecar are unchanged (only the values of those matrices change), so
// LoadBaseInfo, ForwardDir and every reader see a regular base. 4-bit bases are refused.
func Peak(dir string, shift int) error {
	if shift < 1 || shift > 20 {
		return fmt.Errorf("testmodel: peak shift %d out of 1..20", shift)
	}
	info, err := LoadBaseInfo(dir)
	if err != nil {
		return err
	}
	if info.Spec.Quant != QuantNone {
		return fmt.Errorf("testmodel: %s: Peak needs a 16-bit base, this one is %v", dir, info.Spec.Quant)
	}
	files := map[string][]string{}
	for _, t := range info.Tensors {
		if strings.HasSuffix(t.Name, "self_attn.o_proj.weight") || strings.HasSuffix(t.Name, "mlp.down_proj.weight") {
			files[t.File] = append(files[t.File], t.Name)
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("testmodel: %s: no o_proj or down_proj weights", dir)
	}
	scale := math.Ldexp(1, -shift)
	for name, tensors := range files {
		if err := scaleTensors(filepath.Join(dir, name), tensors, scale); err != nil {
			return err
		}
	}
	return nil
}

// scaleTensors multiplies the named bf16, f16 or f32 tensors of the safetensors file at path by scale, in place.
func scaleTensors(path string, names []string, scale float64) (err error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	byName := map[string]safetensors.TensorInfo{}
	for _, ti := range f.Tensors {
		byName[ti.Name] = ti
	}
	bufs := map[string][]byte{}
	for _, n := range names {
		ti, ok := byName[n]
		if !ok {
			f.Close()
			return fmt.Errorf("testmodel: %s: no tensor %s", path, n)
		}
		b, err := f.ReadTensor(ti)
		if err != nil {
			f.Close()
			return fmt.Errorf("testmodel: %s: %w", path, err)
		}
		if err := scaleValues(ti.DType, b, scale); err != nil {
			f.Close()
			return fmt.Errorf("testmodel: %s: %s: %w", path, n, err)
		}
		bufs[n] = b
	}
	off := f.DataOffset()
	f.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	defer func() {
		if cerr := w.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("testmodel: %w", cerr)
		}
	}()
	for n, b := range bufs {
		if _, err := w.WriteAt(b, off+byName[n].Begin); err != nil {
			return fmt.Errorf("testmodel: %s: %w", path, err)
		}
	}
	return nil
}

// scaleValues multiplies little-endian values of dtype dt in b by scale, in place.
func scaleValues(dt tensor.DType, b []byte, scale float64) error {
	switch dt {
	case tensor.BF16:
		for i := 0; i+2 <= len(b); i += 2 {
			v := tensor.BF16ToF32(binary.LittleEndian.Uint16(b[i:]))
			v = float32(float64(v) * scale)
			binary.LittleEndian.PutUint16(b[i:], tensor.F32ToBF16(v))
		}
	case tensor.F16:
		for i := 0; i+2 <= len(b); i += 2 {
			v := tensor.F16ToF32(binary.LittleEndian.Uint16(b[i:]))
			binary.LittleEndian.PutUint16(b[i:], tensor.F32ToF16(float32(float64(v)*scale)))
		}
	case tensor.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(float64(v)*scale)))
		}
	default:
		return fmt.Errorf("dtype %v cannot be scaled", dt)
	}
	return nil
}
