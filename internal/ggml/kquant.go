package ggml

// Ports of ggml-quants.c's super-block quantizers (quantize_row_q{4,5,6}_K_ref, no importance matrix), their
// helpers (make_qx_quants, make_qkx2_quants, get_scale_min_k4) and dequantizers. As in q32.go, each product
// that feeds an add, a subtract or nearest_int is wrapped in float32(...) to keep the Go compiler from fusing
// it into an FMA, which the C reference (built without -march) never does.

const (
	qkK         = 256
	groupMaxEps = float32(1e-15) // GROUP_MAX_EPS
)

// makeQxQuants is make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL), the only form the ref quantizers use
// (Q6_K): the signed scale search with weights x², 19 trial scales around -nmax/max. L receives codes + nmax.
func makeQxQuants(nmax int, x []float32, L []int8) float32 {
	var max, amax float32
	for _, v := range x {
		if a := absf(v); a > amax {
			amax, max = a, v
		}
	}
	if amax < groupMaxEps {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	fn := float32(nmax)
	clamp := func(l int32) int32 { return max32(int32(-nmax), min32(int32(nmax-1), l)) }
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clamp(nearestInt(float32(iscale * v)))
		L[i] = int8(l + int32(nmax))
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fn + float32(0.1*float32(is))) / max
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := clamp(nearestInt(float32(iscale * v)))
			w := float32(v * v)
			fl := float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				L[i] = int8(clamp(nearestInt(float32(iscale*v))) + int32(nmax))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// makeQkx2Quants is make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep,
// use_mad=false): an affine (scale, min ≤ 0) weighted least-squares fit tried at nstep+1 trial scales. It
// returns the scale and the_min (= -min ≥ 0).
func makeQkx2Quants(nmax int, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		for i := range n {
			L[i] = 0
		}
		return 0, -lo
	}
	fn := float32(nmax)
	clamp := func(l int32) int32 { return max32(0, min32(int32(nmax), l)) }
	iscale := fn / (hi - lo)
	scale = 1 / iscale
	var bestError float32
	for i, v := range x {
		l := clamp(nearestInt(float32(iscale * (v - lo))))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(L[i]))+lo) - v
		diff = float32(diff * diff)
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+fn) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := clamp(nearestInt(float32(iscale * (v - lo))))
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(float32(w*fl) * fl)
			sumXL += float32(float32(w*fl) * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i, v := range x {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - v
				diff = float32(diff * diff)
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L[:n], Laux[:n])
				bestError = curError
				scale = thisScale
				lo = thisMin
			}
		}
	}
	return scale, -lo
}

func min32(a, b int32) int32 {
	if a < b {
		return a
	}
	return b
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// scaleMinK4 is get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K/Q5_K block's 12 packed bytes.
func scaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// quantK4K5 is the body shared by quantize_row_q4_K_ref (nmax 15, rmin -1, nstep 20) and
// quantize_row_q5_K_ref (nmax 31, rmin -0.5, nstep 15): 8 sub-blocks of 32, each fitted by make_qkx2_quants
// with weights sqrt(mean(x²)) + |x|, 6-bit scales/mins relative to the block's fp16 d/dmin, codes recomputed
// from the fp16-rounded values. It fills hdr (d, dmin, 12 scale bytes) and L (256 codes).
func quantK4K5(hdr []byte, L *[qkK]uint8, x []float32, nmax int, rmin float32, nstep int) {
	var (
		weights      [32]float32
		laux         [32]uint8
		scales, mins [qkK / 32]float32
		maxScale     float32
		maxMin       float32
	)
	for j := range qkK / 32 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrtf(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + absf(v)
		}
		scales[j], mins[j] = makeQkx2Quants(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := hdr[4:16]
	for j := range qkK / 32 {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xF | (lm&0xF)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putU16(hdr, fp16(maxScale/63))
	putU16(hdr[2:], fp16(maxMin/63))
	dAll, mAll := fp16ToF32(getU16(hdr)), fp16ToF32(getU16(hdr[2:]))
	for j := range qkK / 32 {
		s, m := scaleMinK4(j, sc)
		d := float32(dAll * float32(s))
		if d == 0 {
			continue // keeps the first-pass codes, as the C does
		}
		dm := float32(mAll * float32(m))
		for ii, v := range x[32*j : 32*j+32] {
			L[32*j+ii] = uint8(max32(0, min32(int32(nmax), nearestInt((v+dm)/d))))
		}
	}
}

// quantQ4_K is quantize_row_q4_K_ref for one 256-element block (144 bytes).
func quantQ4_K(y []byte, x []float32) {
	var L [qkK]uint8
	quantK4K5(y[:16], &L, x, 15, -1, 20)
	q := y[16:144]
	for j := 0; j < qkK; j += 64 {
		for l := range 32 {
			q[l] = L[j+l] | L[j+l+32]<<4
		}
		q = q[32:]
	}
}

// quantQ5_K is quantize_row_q5_K_ref for one 256-element block (176 bytes).
func quantQ5_K(y []byte, x []float32) {
	var L [qkK]uint8
	quantK4K5(y[:16], &L, x, 31, -0.5, 15)
	qh, ql := y[16:48], y[48:176]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < qkK; n += 64 {
		for j := range 32 {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
		ql = ql[32:]
	}
}

// quantQ6_K is quantize_row_q6_K_ref for one 256-element block (210 bytes): 16 sub-blocks of 16 fitted by
// make_qx_quants(nmax 32, rmse_type 1), int8 sub-block scales relative to d = max_scale/-128, d stored last.
func quantQ6_K(y []byte, x []float32) {
	var (
		L                     [qkK]int8
		scales                [qkK / 16]float32
		maxScale, maxAbsScale float32
	)
	for ib := range qkK / 16 {
		s := makeQxQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if a := absf(s); a > maxAbsScale {
			maxAbsScale, maxScale = a, s
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(y[:210])
		return
	}
	iscale := -128 / maxScale
	putU16(y[208:], fp16(1/iscale))
	sc := y[192:208]
	for ib := range qkK / 16 {
		sc[ib] = byte(int8(min32(127, nearestInt(float32(iscale*scales[ib])))))
	}
	dAll := fp16ToF32(getU16(y[208:]))
	for j := range qkK / 16 {
		d := float32(dAll * float32(int8(sc[j])))
		if d == 0 {
			continue
		}
		for ii, v := range x[16*j : 16*j+16] {
			L[16*j+ii] = int8(max32(-32, min32(31, nearestInt(v/d))) + 32)
		}
	}
	ql, qh := y[0:128], y[128:192]
	for j := 0; j < qkK; j += 128 {
		for l := range 32 {
			q1 := uint8(L[j+l]) & 0xF
			q2 := uint8(L[j+l+32]) & 0xF
			q3 := uint8(L[j+l+64]) & 0xF
			q4 := uint8(L[j+l+96]) & 0xF
			ql[l] = q1 | q3<<4
			ql[l+32] = q2 | q4<<4
			qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
		}
		ql = ql[64:]
		qh = qh[32:]
	}
}

// dequantQ4_K is dequantize_row_q4_K for one block.
func dequantQ4_K(y []float32, x []byte) {
	d, dmin := fp16ToF32(getU16(x)), fp16ToF32(getU16(x[2:]))
	sc, q := x[4:16], x[16:144]
	for j, is := 0, 0; j < qkK; j, is = j+64, is+2 {
		s1, m1 := scaleMinK4(is, sc)
		s2, m2 := scaleMinK4(is+1, sc)
		d1, mm1 := float32(d*float32(s1)), float32(dmin*float32(m1))
		d2, mm2 := float32(d*float32(s2)), float32(dmin*float32(m2))
		for l := range 32 {
			y[j+l] = float32(d1*float32(q[l]&0xF)) - mm1
			y[j+32+l] = float32(d2*float32(q[l]>>4)) - mm2
		}
		q = q[32:]
	}
}

// dequantQ5_K is dequantize_row_q5_K for one block.
func dequantQ5_K(y []float32, x []byte) {
	d, dmin := fp16ToF32(getU16(x)), fp16ToF32(getU16(x[2:]))
	sc, qh, ql := x[4:16], x[16:48], x[48:176]
	u1, u2 := uint8(1), uint8(2)
	for j, is := 0, 0; j < qkK; j, is = j+64, is+2 {
		s1, m1 := scaleMinK4(is, sc)
		s2, m2 := scaleMinK4(is+1, sc)
		d1, mm1 := float32(d*float32(s1)), float32(dmin*float32(m1))
		d2, mm2 := float32(d*float32(s2)), float32(dmin*float32(m2))
		for l := range 32 {
			h1, h2 := uint8(0), uint8(0)
			if qh[l]&u1 != 0 {
				h1 = 16
			}
			if qh[l]&u2 != 0 {
				h2 = 16
			}
			y[j+l] = float32(d1*float32(ql[l]&0xF+h1)) - mm1
			y[j+32+l] = float32(d2*float32(ql[l]>>4+h2)) - mm2
		}
		ql = ql[32:]
		u1 <<= 2
		u2 <<= 2
	}
}

// dequantQ6_K is dequantize_row_q6_K for one block.
func dequantQ6_K(y []float32, x []byte) {
	d := fp16ToF32(getU16(x[208:]))
	ql, qh, sc := x[0:128], x[128:192], x[192:208]
	for n := 0; n < qkK; n += 128 {
		for l := range 32 {
			is := l / 16
			q1 := int8(ql[l]&0xF|(qh[l]>>0&3)<<4) - 32
			q2 := int8(ql[l+32]&0xF|(qh[l]>>2&3)<<4) - 32
			q3 := int8(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int8(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			y[n+l] = float32(d*float32(int8(sc[is]))) * float32(q1)
			y[n+l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
			y[n+l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
			y[n+l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}
