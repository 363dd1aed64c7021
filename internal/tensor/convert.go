package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// F32ToBF16 rounds f to bfloat16 with round-to-nearest-even, exactly as c10's round_to_nearest_even does:
// NaN becomes 0x7FC0, overflow rounds to ±Inf, subnormals are kept (no flush).
func F32ToBF16(f float32) uint16 {
	if f != f {
		return 0x7FC0
	}
	u := math.Float32bits(f)
	u += 0x7FFF + ((u >> 16) & 1)
	return uint16(u >> 16)
}

// BF16ToF32 widens a bfloat16 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToF16 rounds f to IEEE half precision with round-to-nearest-even including subnormals, exactly as
// c10's fp16_ieee_from_fp32_value does: |x| ≥ 65520 becomes ±Inf, NaN becomes 0x7E00 with its sign kept.
func F32ToF16(f float32) uint16 {
	const scaleToInf = 0x1.0p+112
	const scaleToZero = 0x1.0p-110
	// The two products must each round to float32, as in the C original.
	base := float32(float32(abs32(f)*scaleToInf) * scaleToZero)
	w := math.Float32bits(f)
	shl1w := w + w
	sign := w & 0x80000000
	bias := shl1w & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits((bias>>1)+0x07800000) + base
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x00007C00
	mantissaBits := bits & 0x00000FFF
	nonsign := expBits + mantissaBits
	if shl1w > 0xFF000000 {
		nonsign = 0x7E00
	}
	return uint16(sign>>16) | uint16(nonsign)
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ 0x80000000) }

// F16ToF32 widens an IEEE half exactly (subnormals, Inf and NaN included).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	man := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: value = man · 2^-24, exactly representable in float32.
	v := float32(man) * 0x1p-24
	return math.Float32frombits(sign | math.Float32bits(v))
}

// RoundTo rounds a float32 to dtype d and widens it back, the value a tensor stored in d would hold.
// F32 is returned unchanged. It panics for a dtype that is not F32, F16 or BF16.
func RoundTo(d DType, f float32) float32 {
	switch d {
	case F32:
		return f
	case BF16:
		return BF16ToF32(F32ToBF16(f))
	case F16:
		return F16ToF32(F32ToF16(f))
	}
	panic(fmt.Sprintf("tensor: RoundTo unsupported dtype %s", d))
}

// DecodeFloats widens little-endian F32, F16 or BF16 elements from src into dst (len(dst) elements).
func DecodeFloats(d DType, src []byte, dst []float32) error {
	es := d.Size()
	if d != F32 && d != F16 && d != BF16 {
		return fmt.Errorf("cannot decode %s as floating point", d)
	}
	if len(src) < len(dst)*es {
		return fmt.Errorf("short buffer: %d bytes for %d %s elements", len(src), len(dst), d)
	}
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
	return nil
}

// EncodeFloats rounds float32 values to d (F32, F16 or BF16) and stores them little-endian into dst.
// It reports the index of the first element that is not finite after rounding, or -1.
func EncodeFloats(d DType, src []float32, dst []byte) (firstNonFinite int, err error) {
	es := d.Size()
	if d != F32 && d != F16 && d != BF16 {
		return -1, fmt.Errorf("cannot encode floating point as %s", d)
	}
	if len(dst) < len(src)*es {
		return -1, fmt.Errorf("short buffer: %d bytes for %d %s elements", len(dst), len(src), d)
	}
	firstNonFinite = -1
	switch d {
	case F32:
		for i, v := range src {
			u := math.Float32bits(v)
			if u&0x7F800000 == 0x7F800000 && firstNonFinite < 0 {
				firstNonFinite = i
			}
			binary.LittleEndian.PutUint32(dst[4*i:], u)
		}
	case BF16:
		for i, v := range src {
			h := F32ToBF16(v)
			if h&0x7F80 == 0x7F80 && firstNonFinite < 0 {
				firstNonFinite = i
			}
			binary.LittleEndian.PutUint16(dst[2*i:], h)
		}
	case F16:
		for i, v := range src {
			h := F32ToF16(v)
			if h&0x7C00 == 0x7C00 && firstNonFinite < 0 {
				firstNonFinite = i
			}
			binary.LittleEndian.PutUint16(dst[2*i:], h)
		}
	}
	return firstNonFinite, nil
}
