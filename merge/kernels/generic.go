package kernels

import (
	"github.com/hubsync/hubsync/internal/tensor"
)

// dequant4Generic dequantizes n = len(dst) bitsandbytes 4-bit codes beginning at flat element index k of a tensor
// (model-formats.md §3.4, §4.4):
//
//   - packed holds the tensor's packed bytes starting at byte k/2: element e lives in byte e/2 − k/2, in the high
//     nibble when e is even and the low nibble when e is odd;
//   - scales holds one float32 scale (absmax, already resolved through double quantization) per block, starting at
//     block k/blocksize: element e uses scales[e/blocksize − k/blocksize];
//   - dst[i] = float32(code[q] · scale), a single float32 multiply, bit-exact with bitsandbytes.
func dequant4Generic(dst []float32, packed []byte, k int64, code *[16]float32, scales []float32, blocksize int) {
	bs := int64(blocksize)
	b0, s0 := k/2, k/bs
	for i := range dst {
		e := k + int64(i)
		b := packed[e/2-b0]
		q := b >> 4
		if e&1 == 1 {
			q = b & 0x0F
		}
		dst[i] = code[q] * scales[e/bs-s0]
	}
}

func roundGeneric(d tensor.DType, x []float32) {
	switch d {
	case tensor.BF16:
		for i, v := range x {
			x[i] = tensor.BF16ToF32(tensor.F32ToBF16(v))
		}
	case tensor.F16:
		for i, v := range x {
			x[i] = tensor.F16ToF32(tensor.F32ToF16(v))
		}
	}
}

// addLowRankGeneric computes dst[i·cols+j] += Σ_{t<r} coef[i·r+t] · m[t·cols+j] for i < rows, j < cols,
// accumulating t in increasing order into the existing dst value.
//
// With coef = scaling·B (rows of the tile) and m = A this is W += scaling·(B·A) for a row tile of a Linear weight;
// with coef = scaling·Aᵀ and m = Bᵀ it is the transposed delta of fan_in_fan_out and embedding LoRA.
func addLowRankGeneric(dst, coef, m []float32, rows, cols, r int) {
	for i := 0; i < rows; i++ {
		row := dst[i*cols : (i+1)*cols]
		c := coef[i*r : (i+1)*r]
		for t := 0; t < r; t++ {
			ct := c[t]
			mt := m[t*cols : (t+1)*cols]
			for j := range row {
				row[j] += ct * mt[j]
			}
		}
	}
}

func encodeGeneric(d tensor.DType, src []float32, dst []byte) int {
	i, err := tensor.EncodeFloats(d, src, dst)
	if err != nil {
		panic("kernels: " + err.Error())
	}
	return i
}

func decodeGeneric(d tensor.DType, src []byte, dst []float32) {
	if err := tensor.DecodeFloats(d, src, dst); err != nil {
		panic("kernels: " + err.Error())
	}
}

func sumSquaresGeneric(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s
}

func addSquaresGeneric(acc []float64, x []float32) {
	for j, v := range x {
		acc[j] += float64(v) * float64(v)
	}
}

func scaleGeneric(x []float32, s []float32) {
	for i := range x {
		x[i] *= s[i]
	}
}
