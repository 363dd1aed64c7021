// kernels.cu: the merge's CUDA kernels over hsmath.cuh's per-element functions, in hostref.cc's order (every
// element's V, then DoRA, then rounding with the first non-finite index). `go generate` compiles it to
// kernels.ptx (committed, embedded, loaded by gpu.c through the driver API); CI checks that the PTX is current.
// -fmad=false and the explicit _rn intrinsics keep nvcc from fusing or reordering anything.
#include "hsmath.cuh"

// hs_k_base: work[i] = V[i] (base value plus the low-rank update), grid-stride over the tile.
extern "C" __global__ void hs_k_base(hs_tile t) {
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < t.count; i += (int64_t)gridDim.x * blockDim.x)
		t.work[i] = hs_base_elem(&t, i);
}

// hs_k_row_factor: factor[row] = magnitude / ‖V[row,:]‖, one thread per row summing in column order (the Go
// generic SumSquares order, so the bits match).
extern "C" __global__ void hs_k_row_factor(hs_tile t, float *factor) {
	int64_t row = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
	if (row < t.rows) factor[row] = hs_dora_row_factor(t.row_magnitude[row], hs_sumsq(t.work + row * t.cols, t.cols));
}

// hs_k_col_sumsq: col_sumsq[j] += Σ_row V[row,j]², one thread per column, rows in order.
extern "C" __global__ void hs_k_col_sumsq(hs_tile t) {
	int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
	if (j >= t.cols) return;
	double acc = t.col_sumsq[j];
	for (int64_t row = 0; row < t.rows; row++) {
		double x = (double)t.work[row * t.cols + j];
		acc = hs_dadd(acc, hs_dmul(x, x));
	}
	t.col_sumsq[j] = acc;
}

// hs_k_finish applies the DoRA scale (row factors or column factors), rounds and stores every element and lowers
// *first (initialised to count) to the first non-finite index.
extern "C" __global__ void hs_k_finish(hs_tile t, const float *factor, unsigned long long *first) {
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < t.count; i += (int64_t)gridDim.x * blockDim.x) {
		float v = t.work[i];
		if (t.dora == 1) v = hs_mul(v, factor[i / t.cols]);
		else if (t.dora == 3) v = hs_mul(v, t.col_factor[i % t.cols]);
		t.work[i] = v;
		if (hs_encode(t.out_dtype, v, t.out, i)) atomicMin(first, (unsigned long long)i);
	}
}
