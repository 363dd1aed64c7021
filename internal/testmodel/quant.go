package testmodel

import (
	"math"
)

// nf4Bits is the NF4 codebook as float32 bits, indexed by 4-bit code (model-formats.md §4.1).
var nf4Bits = [16]uint32{
	0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
	0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
}

// fp4Bits is bitsandbytes' FP4 codebook as float32 bits, indexed by 4-bit code in bit-pattern order (§4.2).
var fp4Bits = [16]uint32{
	0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
	0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
}

// dynamicMapBits is bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(), the nested_quant_map of every
// double-quant checkpoint) as float32 bits, sorted ascending (model-formats.md Appendix A).
var dynamicMapBits = [256]uint32{
	0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
	0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
	0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
	0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
	0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
	0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
	0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
	0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
	0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
	0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
	0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
	0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
	0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
	0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
	0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
	0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
	0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
	0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
	0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
	0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
	0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
	0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
	0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
	0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
	0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
	0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
	0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
	0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
	0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
	0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
	0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
	0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
}

// Codebook returns the 16 float32 values of a 4-bit codebook (NF4 or FP4), indexed by code.
// It panics for QuantNone.
func Codebook(q Quant) [16]float32 {
	var bits *[16]uint32
	switch q {
	case QuantNF4:
		bits = &nf4Bits
	case QuantFP4:
		bits = &fp4Bits
	default:
		panic("testmodel: Codebook of " + string(q))
	}
	var out [16]float32
	for i, b := range bits {
		out[i] = math.Float32frombits(b)
	}
	return out
}

// DynamicMap returns bitsandbytes' signed dynamic 8-bit map (256 float32 values, ascending), the
// nested_quant_map of double-quant checkpoints.
func DynamicMap() [256]float32 {
	var out [256]float32
	for i, b := range dynamicMapBits {
		out[i] = math.Float32frombits(b)
	}
	return out
}

// nf4Thresholds are the thresholds of bitsandbytes' dQuantizeNF4 decision tree, ascending (model-formats.md
// §4.6). The CUDA kernel compares against float literals (0.0397...f), so they are float32 constants; every
// comparison is a strict >.
var nf4Thresholds = [15]float32{-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
	-0.33967943489551544, -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683, 0.5016634166240692,
	0.6427869200706482, 0.8614784181118011}

// b2u is 1 for true; the compiler turns it into a flag-setting instruction, so the code search has no branches
// to mispredict on random weights.
func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// quantizeNF4 is bitsandbytes' dQuantizeNF4 decision tree. The tree is a binary search over the ascending
// thresholds with strict > tests, so its code is the number of thresholds x exceeds (NaN exceeds none: code 0).
func quantizeNF4(x float32) byte {
	t := &nf4Thresholds
	return b2u(x > t[0]) + b2u(x > t[1]) + b2u(x > t[2]) + b2u(x > t[3]) + b2u(x > t[4]) + b2u(x > t[5]) +
		b2u(x > t[6]) + b2u(x > t[7]) + b2u(x > t[8]) + b2u(x > t[9]) + b2u(x > t[10]) + b2u(x > t[11]) +
		b2u(x > t[12]) + b2u(x > t[13]) + b2u(x > t[14])
}

// fp4Thresholds are dQuantizeFP4's thresholds on |x|, ascending (float32 constants, strict >), and fp4ByRank the
// code of each interval between them.
var (
	fp4Thresholds = [7]float32{0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333}
	fp4ByRank     = [8]byte{0, 1, 6, 7, 4, 5, 2, 3}
)

// quantizeFP4 is bitsandbytes' dQuantizeFP4: sign bit 8 for x < 0, then its tree on |x| (a binary search over the
// ascending thresholds, so the interval is the number of thresholds |x| exceeds).
func quantizeFP4(x float32) byte {
	sign := b2u(x < 0) << 3
	a := abs32(x)
	t := &fp4Thresholds
	k := b2u(a > t[0]) + b2u(a > t[1]) + b2u(a > t[2]) + b2u(a > t[3]) + b2u(a > t[4]) + b2u(a > t[5]) + b2u(a > t[6])
	return fp4ByRank[k] + sign
}

// quantizeDynamic is bitsandbytes' dQuantize (non-stochastic) binary search over a sorted 256-entry code, with
// the final choice between the pivot and its neighbour by the float32 midpoint (§4.6 step 4).
func quantizeDynamic(code *[256]float32, x float32) byte {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = code[pivot]
	}
	if upperPivot == 255 {
		upper = code[upperPivot]
	}
	if lowerPivot == 0 {
		lower = code[lowerPivot]
	}
	if x > val {
		mid := float32(float32(upper+val) * 0.5)
		if x > mid {
			return byte(upperPivot)
		}
		return byte(pivot)
	}
	mid := float32(float32(lower+val) * 0.5)
	if x < mid {
		return byte(lowerPivot)
	}
	return byte(pivot)
}

// quantizer quantizes float32 data block by block into packed 4-bit codes (§4.6 steps 1–3).
type quantizer struct {
	fp4       bool
	blocksize int
}

func newQuantizer(q Quant, blocksize int) quantizer {
	return quantizer{fp4: q == QuantFP4, blocksize: blocksize}
}

// code is the 4-bit code of a scaled value.
func (qz quantizer) code(y float32) byte {
	if qz.fp4 {
		return quantizeFP4(y)
	}
	return quantizeNF4(y)
}

// abs32 is |v| for a float32, without a round trip through float64.
func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// blockAbsmax is max|x| over a block.
func blockAbsmax(x []float32) float32 {
	var amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax = a
		}
	}
	return amax
}

// quantize quantizes x, which starts on a block boundary and (unless it is the tensor's tail) holds whole blocks
// and an even number of elements. It writes ceil(len(x)/2) packed bytes to packed and one absmax per block
// (ceil(len(x)/blocksize)) to absmax. An odd tail's last low nibble encodes a 0 pad, as the CUDA kernel's padded
// load does.
func (qz quantizer) quantize(x []float32, packed []byte, absmax []float32) {
	bs := qz.blocksize
	for b := 0; b*bs < len(x); b++ {
		blk := x[b*bs : min((b+1)*bs, len(x))]
		amax := blockAbsmax(blk)
		absmax[b] = amax
		r := float32(1) / amax // an all-zero block gives +Inf and NaN codes, as the kernel does
		out := packed[b*bs/2:]
		even := len(blk) &^ 1
		if qz.fp4 {
			for j := 0; j < even; j += 2 {
				out[j/2] = quantizeFP4(blk[j]*r)<<4 | quantizeFP4(blk[j+1]*r)
			}
		} else {
			for j := 0; j < even; j += 2 {
				out[j/2] = quantizeNF4(blk[j]*r)<<4 | quantizeNF4(blk[j+1]*r)
			}
		}
		if even < len(blk) {
			out[even/2] = qz.code(blk[even]*r)<<4 | qz.code(0*r)
		}
	}
}

// Quantize4Bit quantizes a flat float32 array the way bitsandbytes' CUDA quantize_4bit does (model-formats.md
// §4.6): per block of blocksize elements (the last one may be partial) absmax = max|x|, codes from x·(1/absmax)
// through the NF4 or FP4 decision tree, packed two per byte with the even element in the high nibble.
// It returns ceil(n/2) packed bytes and ceil(n/blocksize) absmax values.
func Quantize4Bit(q Quant, blocksize int, x []float32) (packed []byte, absmax []float32) {
	packed = make([]byte, (len(x)+1)/2)
	absmax = make([]float32, (len(x)+blocksize-1)/blocksize)
	newQuantizer(q, blocksize).quantize(x, packed, absmax)
	return packed, absmax
}

// nestedBlocksize is bitsandbytes' fixed block size for double quantization.
const nestedBlocksize = 256

// NestedQuant is the double-quantized form of a 4-bit weight's absmax statistics.
type NestedQuant struct {
	Codes  []byte    // one 8-bit code per 4-bit block (stored as the weight's U8 "absmax")
	Absmax []float32 // one scale per 256 codes (nested_absmax)
	Offset float32   // mean of the original absmax (nested_offset)
}

// DoubleQuantize quantizes absmax as bitsandbytes' compress_statistics does (§4.6 step 4): offset = mean(absmax)
// in float32 (summed in float64, which torch's reduction approximates to the last ulp), then absmax−offset in
// blocks of 256 through the signed dynamic map.
func DoubleQuantize(absmax []float32) NestedQuant {
	var sum float64
	for _, a := range absmax {
		sum += float64(a)
	}
	var offset float32
	if len(absmax) > 0 {
		offset = float32(sum / float64(len(absmax)))
	}
	code := DynamicMap()
	nq := NestedQuant{Codes: make([]byte, len(absmax)),
		Absmax: make([]float32, (len(absmax)+nestedBlocksize-1)/nestedBlocksize), Offset: offset}
	v := make([]float32, nestedBlocksize)
	for b := range nq.Absmax {
		blk := absmax[b*nestedBlocksize : min((b+1)*nestedBlocksize, len(absmax))]
		var amax float32
		for i, a := range blk {
			v[i] = a - offset
			amax = max(amax, float32(math.Abs(float64(v[i]))))
		}
		nq.Absmax[b] = amax
		r := float32(1) / amax
		for i := range blk {
			nq.Codes[b*nestedBlocksize+i] = quantizeDynamic(&code, float32(v[i]*r))
		}
	}
	return nq
}

// Scales returns the float32 block scales the dequantizer derives from double-quantized statistics (§4.4 step 1):
// fl32(fl32(map[code]·nested_absmax[b/256]) + offset).
func (nq NestedQuant) Scales() []float32 {
	code := DynamicMap()
	out := make([]float32, len(nq.Codes))
	for i, c := range nq.Codes {
		out[i] = float32(float32(code[c]*nq.Absmax[i/nestedBlocksize]) + nq.Offset)
	}
	return out
}

// Dequantize4Bit reverses Quantize4Bit in float32 as bitsandbytes does (§4.4 step 2): element k is
// fl32(codebook[nibble k] · scale[k/blocksize]). n is the element count (the packed data may hold one pad nibble).
func Dequantize4Bit(q Quant, blocksize int, packed []byte, scales []float32, n int) []float32 {
	cb := Codebook(q)
	out := make([]float32, n)
	for k := range out {
		c := packed[k/2]
		if k%2 == 0 {
			c >>= 4
		} else {
			c &= 0x0F
		}
		out[k] = float32(cb[c] * scales[k/blocksize])
	}
	return out
}
