package ggml

import (
	"math"

	"github.com/hubsync/hubsync/internal/tensor"
)

// fp16 is ggml_compute_fp32_to_fp16: IEEE round-to-nearest-even with subnormals, ±Inf from 65520 on, NaN →
// 0x7E00 with its sign kept. internal/tensor's F32ToF16 is the same algorithm (c10 and ggml both use the FP16
// library's bit trick), so it is reused.
func fp16(f float32) uint16 { return tensor.F32ToF16(f) }

// fp16ToF32 widens a half exactly, as GGML_FP16_TO_FP32 does.
func fp16ToF32(h uint16) float32 { return tensor.F16ToF32(h) }

// bf16 is ggml_compute_fp32_to_bf16: round-to-nearest-even on the upper 16 bits, except that a NaN keeps its
// sign and top payload bits and is forced quiet (| 0x40). internal/tensor's F32ToBF16 rounds the same way but
// canonicalises NaN to 0x7FC0, so only the NaN rule lives here.
func bf16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 {
		return uint16(u>>16) | 0x40
	}
	return tensor.F32ToBF16(f)
}

// nearestInt is ggml's nearest_int: adding 1.5·2^23 leaves round(f) (ties to even) in the low mantissa bits.
// Valid for |f| ≤ 4194303; outside that it returns the same garbage the C code does. Callers must pass an
// already rounded float32 (wrap products in float32(...)) so that the add is never fused with a multiply.
func nearestInt(f float32) int32 {
	v := f + 12582912.0
	return int32(math.Float32bits(v)&0x007FFFFF) - 0x00400000
}

// cvtt is C's float → int conversion as x86-64 executes it (cvttss2si): truncation toward zero, and the
// "integer indefinite" value math.MinInt32 for NaN and out-of-range inputs. A C cast to int8_t/uint8_t then
// keeps the low byte, which callers get with int8(...) / uint8(...).
func cvtt(f float32) int32 {
	if !(f > -2147483904.0 && f < 2147483648.0) { // NaN or outside int32 after truncation
		return math.MinInt32
	}
	return int32(f)
}

// roundf is C's roundf (halves away from zero); math.Round on the exact float64 widening gives the same value.
func roundf(f float32) float32 { return float32(math.Round(float64(f))) }

// sqrtf is C's sqrtf: the correctly rounded float32 square root (float64 sqrt then rounding is exact for it).
func sqrtf(f float32) float32 { return float32(math.Sqrt(float64(f))) }

func absf(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ 0x80000000) }

func putU16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func getU16(b []byte) uint16    { return uint16(b[0]) | uint16(b[1])<<8 }
