// hsmath.cuh: the per-element arithmetic of a merge tile, shared by the CUDA kernels (kernels.cu, compiled by
// nvcc) and the host reference (hostref.cc, compiled by the C++ compiler through cgo) that the tests compare
// against the portable Go kernels (merge/kernels/generic.go) bit for bit.
//
// Every operation follows the Go code exactly: one float32 multiply for the dequantization, the rank sum in
// increasing t either fused (fmaf, as the amd64 assembly) or as a separate multiply and add (as the generic Go
// kernel on amd64), float64 sums of squares in element order, and torch's round-to-nearest-even conversions.
// Device code spells every operation with an explicit _rn intrinsic so nvcc can neither contract nor reorder it;
// host code is compiled with -ffp-contract=off. Nothing here may be built with fast-math or flush-to-zero.
#ifndef HUBSYNC_HSMATH_CUH
#define HUBSYNC_HSMATH_CUH

#include <stdint.h>
#include <string.h>
#include <math.h>

#ifdef __CUDACC__
#define HS_HD __host__ __device__ __forceinline__
#else
#define HS_HD static inline
#endif

// Output and source dtypes (the Go side maps tensor.DType onto these).
enum { HS_F32 = 0, HS_F16 = 1, HS_BF16 = 2 };

HS_HD uint32_t hs_bits(float f) {
#ifdef __CUDA_ARCH__
	return __float_as_uint(f);
#else
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
#endif
}

HS_HD float hs_float(uint32_t u) {
#ifdef __CUDA_ARCH__
	return __uint_as_float(u);
#else
	float f;
	memcpy(&f, &u, 4);
	return f;
#endif
}

// hs_mul, hs_add, hs_fma and hs_div are single IEEE float32 operations with round-to-nearest-even.
HS_HD float hs_mul(float a, float b) {
#ifdef __CUDA_ARCH__
	return __fmul_rn(a, b);
#else
	return a * b;
#endif
}

HS_HD float hs_add(float a, float b) {
#ifdef __CUDA_ARCH__
	return __fadd_rn(a, b);
#else
	return a + b;
#endif
}

HS_HD float hs_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
	return __fmaf_rn(a, b, c);
#else
	return fmaf(a, b, c);
#endif
}

HS_HD float hs_div(float a, float b) {
#ifdef __CUDA_ARCH__
	return __fdiv_rn(a, b);
#else
	return a / b;
#endif
}

HS_HD double hs_dmul(double a, double b) {
#ifdef __CUDA_ARCH__
	return __dmul_rn(a, b);
#else
	return a * b;
#endif
}

HS_HD double hs_dadd(double a, double b) {
#ifdef __CUDA_ARCH__
	return __dadd_rn(a, b);
#else
	return a + b;
#endif
}

// hs_f32_to_bf16 is tensor.F32ToBF16: round-to-nearest-even, NaN to 0x7FC0.
HS_HD uint16_t hs_f32_to_bf16(float f) {
	if (f != f) return 0x7FC0;
	uint32_t u = hs_bits(f);
	u += 0x7FFFu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

HS_HD float hs_bf16_to_f32(uint16_t h) { return hs_float((uint32_t)h << 16); }

// hs_f32_to_f16 is tensor.F32ToF16 (c10's fp16_ieee_from_fp32_value): both products round to float32.
HS_HD uint16_t hs_f32_to_f16(float f) {
	const float scale_to_inf = hs_float(0x77800000u);  // 2^112
	const float scale_to_zero = hs_float(0x08800000u); // 2^-110
	float base = hs_mul(hs_mul(hs_float(hs_bits(f) & 0x7FFFFFFFu), scale_to_inf), scale_to_zero);
	uint32_t w = hs_bits(f);
	uint32_t shl1w = w + w;
	uint32_t sign = w & 0x80000000u;
	uint32_t bias = shl1w & 0xFF000000u;
	if (bias < 0x71000000u) bias = 0x71000000u;
	base = hs_add(hs_float((bias >> 1) + 0x07800000u), base);
	uint32_t bits = hs_bits(base);
	uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
	uint32_t mantissa_bits = bits & 0x00000FFFu;
	uint32_t nonsign = exp_bits + mantissa_bits;
	if (shl1w > 0xFF000000u) nonsign = 0x7E00u;
	return (uint16_t)((sign >> 16) | nonsign);
}

// hs_f16_to_f32 is tensor.F16ToF32 (exact, subnormals, Inf and NaN included).
HS_HD float hs_f16_to_f32(uint16_t h) {
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = ((uint32_t)h >> 10) & 0x1Fu;
	uint32_t man = (uint32_t)h & 0x3FFu;
	if (exp == 0x1Fu) return hs_float(sign | 0x7F800000u | man << 13);
	if (exp != 0) return hs_float(sign | (exp + 112u) << 23 | man << 13);
	if (man == 0) return hs_float(sign);
	float v = hs_mul((float)man, hs_float(0x33800000u)) /* 2^-24 */;
	return hs_float(sign | hs_bits(v));
}

// hs_round rounds x to dtype d (BF16 or F16) and widens it back; F32 is returned unchanged.
HS_HD float hs_round(int d, float x) {
	if (d == HS_BF16) return hs_bf16_to_f32(hs_f32_to_bf16(x));
	if (d == HS_F16) return hs_f16_to_f32(hs_f32_to_f16(x));
	return x;
}

// hs_dequant4 is element e (a flat tensor index) of a bitsandbytes 4-bit tensor whose tile starts at flat index k:
// packed starts at byte k/2 (high nibble first), scales at block k/blocksize; code[q]·scale is one float32 multiply.
HS_HD float hs_dequant4(const uint8_t *packed, int64_t k, int64_t e, const float *code, const float *scales,
                        int64_t blocksize) {
	uint8_t b = packed[e / 2 - k / 2];
	uint8_t q = (e & 1) ? (uint8_t)(b & 0x0F) : (uint8_t)(b >> 4);
	return hs_mul(code[q], scales[e / blocksize - k / blocksize]);
}

// hs_decode widens element i of little-endian raw values of dtype d.
HS_HD float hs_decode(int d, const uint8_t *raw, int64_t i) {
	if (d == HS_F32) {
		const uint8_t *p = raw + 4 * i;
		return hs_float((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
	}
	const uint8_t *p = raw + 2 * i;
	uint16_t h = (uint16_t)(p[0] | p[1] << 8);
	return d == HS_BF16 ? hs_bf16_to_f32(h) : hs_f16_to_f32(h);
}

// hs_lowrank adds Σ_{t<r} coef[t]·m[t·cols+j] to w, t in increasing order: fused, acc = fma(coef[t], m, acc) (the
// amd64 assembly, and Go wherever the compiler fuses); else acc = acc + coef[t]·m with two roundings (generic Go
// on amd64).
HS_HD float hs_lowrank(float w, const float *coef, const float *m, int64_t cols, int64_t j, int r, int fused) {
	if (fused) {
		for (int t = 0; t < r; t++) w = hs_fma(coef[t], m[(int64_t)t * cols + j], w);
	} else {
		for (int t = 0; t < r; t++) w = hs_add(w, hs_mul(coef[t], m[(int64_t)t * cols + j]));
	}
	return w;
}

// hs_sumsq is kernels' generic SumSquares: Σ x[i]² in float64, in element order.
HS_HD double hs_sumsq(const float *x, int64_t n) {
	double s = 0;
	for (int64_t i = 0; i < n; i++) s = hs_dadd(s, hs_dmul((double)x[i], (double)x[i]));
	return s;
}

// hs_dora_row_factor is a DoRA row's scale: magnitude / float32(√sumsq).
HS_HD float hs_dora_row_factor(float magnitude, double sumsq) {
#ifdef __CUDA_ARCH__
	float norm = __double2float_rn(__dsqrt_rn(sumsq));
#else
	float norm = (float)sqrt(sumsq);
#endif
	return hs_div(magnitude, norm);
}

// hs_encode rounds v to d, stores it little-endian at element i of out and reports whether the stored value is not
// finite (tensor.EncodeFloats).
HS_HD int hs_encode(int d, float v, uint8_t *out, int64_t i) {
	if (d == HS_F32) {
		uint32_t u = hs_bits(v);
		uint8_t *p = out + 4 * i;
		p[0] = (uint8_t)u;
		p[1] = (uint8_t)(u >> 8);
		p[2] = (uint8_t)(u >> 16);
		p[3] = (uint8_t)(u >> 24);
		return (u & 0x7F800000u) == 0x7F800000u;
	}
	uint16_t h;
	int nonfinite;
	if (d == HS_BF16) {
		h = hs_f32_to_bf16(v);
		nonfinite = (h & 0x7F80u) == 0x7F80u;
	} else {
		h = hs_f32_to_f16(v);
		nonfinite = (h & 0x7C00u) == 0x7C00u;
	}
	uint8_t *p = out + 2 * i;
	p[0] = (uint8_t)h;
	p[1] = (uint8_t)(h >> 8);
	return nonfinite;
}

// hs_tile is everything a tile needs, in the layout of merge.Tile (pointers into host or device memory).
typedef struct {
	int64_t start, count;
	int64_t rows, cols;
	int src_kind;  // 1 float, 2 packed 4-bit
	int src_dtype; // HS_F32, HS_F16, HS_BF16 (float source)
	const uint8_t *raw;
	const uint8_t *packed;
	const float *scales;
	const float *code;
	int64_t blocksize;
	int base_round; // HS_F16 or HS_BF16 to round the dequantized base, else HS_F32
	int r;
	int fused;
	const float *coef;
	const float *m;
	int dora; // 0 none, 1 rows, 2 column norms, 3 columns
	const float *row_magnitude;
	const float *col_factor;
	double *col_sumsq;
	int out_dtype;
	uint8_t *out;
	float *work;
} hs_tile;

// hs_base_elem is V[i] before DoRA: the base value (dequantized and rounded, or widened) plus the low-rank update.
HS_HD float hs_base_elem(const hs_tile *t, int64_t i) {
	float w;
	if (t->src_kind == 2) {
		w = hs_dequant4(t->packed, t->start, t->start + i, t->code, t->scales, t->blocksize);
		if (t->base_round == HS_BF16 || t->base_round == HS_F16) w = hs_round(t->base_round, w);
	} else {
		w = hs_decode(t->src_dtype, t->raw, i);
	}
	if (t->r > 0) {
		int64_t row = i / t->cols, j = i % t->cols;
		w = hs_lowrank(w, t->coef + row * t->r, t->m, t->cols, j, t->r, t->fused);
	}
	return w;
}

#endif
