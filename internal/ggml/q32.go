package ggml

// Ports of ggml-quants.c's 32-element block quantizers (quantize_row_q{8_0,4_0,4_1,5_0,5_1}_ref) and their
// dequantizers. Each function handles one block: x has 32 values, y is the block's bytes. Every product that
// feeds an add is wrapped in float32(...) so the Go compiler cannot fuse it into an FMA (GOAMD64=v3, arm64);
// the C reference is compiled without FMA contraction.

const qk32 = 32

// quantQ8_0 is quantize_row_q8_0_ref: d = amax/127, codes roundf(x·(1/d)) with the unrounded 1/d.
func quantQ8_0(y []byte, x []float32) {
	var amax float32
	for _, v := range x[:qk32] {
		if a := absf(v); !(amax > a) { // MAX(amax, fabsf(v)) = amax > a ? amax : a
			amax = a
		}
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putU16(y, fp16(d))
	for j, v := range x[:qk32] {
		y[2+j] = byte(int8(cvtt(roundf(float32(v * id)))))
	}
}

func dequantQ8_0(y []float32, x []byte) {
	d := fp16ToF32(getU16(x))
	for j := range qk32 {
		y[j] = float32(int8(x[2+j])) * d
	}
}

// signedMax returns the element of largest magnitude with its sign (the first one on ties), as Q4_0/Q5_0 do.
func signedMax(x []float32) float32 {
	var amax, max float32
	for _, v := range x {
		if a := absf(v); amax < a {
			amax, max = a, v
		}
	}
	return max
}

// minMax returns the smallest and largest element (FLT_MAX / -FLT_MAX start, strict comparisons), as Q4_1/Q5_1 do.
func minMax(x []float32) (lo, hi float32) {
	lo, hi = 3.40282346638528859811704183484516925440e+38, -3.40282346638528859811704183484516925440e+38
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// quantQ4_0 is quantize_row_q4_0_ref: d = max/-8 (signed max), nibble = min(15, (int8)(x·id + 8.5)).
func quantQ4_0(y []byte, x []float32) {
	d := signedMax(x[:qk32]) / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putU16(y, fp16(d))
	for j := range qk32 / 2 {
		x0 := float32(x[j] * id)
		x1 := float32(x[j+16] * id)
		y[2+j] = uint8(min(15, int8(cvtt(x0+8.5)))) | uint8(min(15, int8(cvtt(x1+8.5))))<<4
	}
}

func dequantQ4_0(y []float32, x []byte) {
	d := fp16ToF32(getU16(x))
	for j := range qk32 / 2 {
		q := x[2+j]
		y[j] = float32(int(q&0xF)-8) * d
		y[j+16] = float32(int(q>>4)-8) * d
	}
}

// quantQ4_1 is quantize_row_q4_1_ref: d = (max-min)/15, m = min, nibble = min(15, (int8)((x-min)·id + 0.5)).
func quantQ4_1(y []byte, x []float32) {
	lo, hi := minMax(x[:qk32])
	d := (hi - lo) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putU16(y, fp16(d))
	putU16(y[2:], fp16(lo))
	for j := range qk32 / 2 {
		x0 := float32((x[j] - lo) * id)
		x1 := float32((x[j+16] - lo) * id)
		y[4+j] = uint8(min(15, int8(cvtt(x0+0.5)))) | uint8(min(15, int8(cvtt(x1+0.5))))<<4
	}
}

func dequantQ4_1(y []float32, x []byte) {
	d := fp16ToF32(getU16(x))
	m := fp16ToF32(getU16(x[2:]))
	for j := range qk32 / 2 {
		q := x[4+j]
		y[j] = float32(float32(q&0xF)*d) + m
		y[j+16] = float32(float32(q>>4)*d) + m
	}
}

// quantQ5_0 is quantize_row_q5_0_ref: d = max/-16, code = min(31, (int8)(x·id + 16.5)); the fifth bits go to qh.
func quantQ5_0(y []byte, x []float32) {
	d := signedMax(x[:qk32]) / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putU16(y, fp16(d))
	var qh uint32
	for j := range qk32 / 2 {
		x0 := float32(x[j] * id)
		x1 := float32(x[j+16] * id)
		xi0 := uint8(min(31, int8(cvtt(x0+16.5))))
		xi1 := uint8(min(31, int8(cvtt(x1+16.5))))
		y[6+j] = xi0&0xF | (xi1&0xF)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	y[2], y[3], y[4], y[5] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

func dequantQ5_0(y []float32, x []byte) {
	d := fp16ToF32(getU16(x))
	qh := uint32(x[2]) | uint32(x[3])<<8 | uint32(x[4])<<16 | uint32(x[5])<<24
	for j := range qk32 / 2 {
		q := x[6+j]
		h0 := int(qh>>j&1) << 4
		h1 := int(qh>>(j+16)&1) << 4
		y[j] = float32(int(q&0xF)|h0-16) * d
		y[j+16] = float32(int(q>>4)|h1-16) * d
	}
}

// quantQ5_1 is quantize_row_q5_1_ref: d = (max-min)/31, m = min, code = (uint8)((x-min)·id + 0.5).
func quantQ5_1(y []byte, x []float32) {
	lo, hi := minMax(x[:qk32])
	d := (hi - lo) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putU16(y, fp16(d))
	putU16(y[2:], fp16(lo))
	var qh uint32
	for j := range qk32 / 2 {
		x0 := float32((x[j] - lo) * id)
		x1 := float32((x[j+16] - lo) * id)
		xi0 := uint8(cvtt(x0 + 0.5))
		xi1 := uint8(cvtt(x1 + 0.5))
		y[8+j] = xi0&0xF | (xi1&0xF)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	y[4], y[5], y[6], y[7] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

func dequantQ5_1(y []float32, x []byte) {
	d := fp16ToF32(getU16(x))
	m := fp16ToF32(getU16(x[2:]))
	qh := uint32(x[4]) | uint32(x[5])<<8 | uint32(x[6])<<16 | uint32(x[7])<<24
	for j := range qk32 / 2 {
		q := x[8+j]
		h0 := uint8(qh>>j&1) << 4
		h1 := uint8(qh>>(j+16)&1) << 4
		y[j] = float32(float32(q&0xF|h0)*d) + m
		y[j+16] = float32(float32(q>>4|h1)*d) + m
	}
}
