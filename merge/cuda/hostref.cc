//go:build cuda

// hostref.cc runs a whole tile on the host through the same __host__ __device__ functions the CUDA kernels use
// (hsmath.cuh), in the kernels' order: every element's V, then DoRA, then rounding and the first non-finite index.
// The tests compare its bytes with the Go CPU backend's.
// No contraction of a*b+c into an FMA behind the Go code's back, whatever CXXFLAGS say.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-fast-math")
#endif
#include "hsmath.cuh"
#include "hostref.h"

extern "C" int64_t hs_merge_tile_host(const hs_tile *t) {
	int64_t n = t->count;
	for (int64_t i = 0; i < n; i++) t->work[i] = hs_base_elem(t, i);
	switch (t->dora) {
	case 1: // rows
		for (int64_t row = 0; row < t->rows; row++) {
			float *v = t->work + row * t->cols;
			float f = hs_dora_row_factor(t->row_magnitude[row], hs_sumsq(v, t->cols));
			for (int64_t j = 0; j < t->cols; j++) v[j] = hs_mul(v[j], f);
		}
		break;
	case 2: // column norms: accumulate in row order, write nothing
		for (int64_t j = 0; j < t->cols; j++) {
			double acc = t->col_sumsq[j];
			for (int64_t row = 0; row < t->rows; row++) {
				double x = (double)t->work[row * t->cols + j];
				acc = hs_dadd(acc, hs_dmul(x, x));
			}
			t->col_sumsq[j] = acc;
		}
		return -1;
	case 3: // columns
		for (int64_t i = 0; i < n; i++) t->work[i] = hs_mul(t->work[i], t->col_factor[i % t->cols]);
		break;
	}
	int64_t first = -1;
	for (int64_t i = 0; i < n; i++) {
		if (hs_encode(t->out_dtype, t->work[i], t->out, i) && first < 0) first = i;
	}
	return first;
}
