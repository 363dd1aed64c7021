//go:build cuda

// gpu.c is the CUDA data path through the driver API (dlopen'd libcuda.so.1): the embedded PTX of kernels.cu is
// loaded into the primary context, and each slot owns a stream, a pinned host arena and a device arena, so tiles
// on different slots (driven by different goroutines) overlap their copies and kernels.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hsmath.cuh"
#include "gpu.h"

typedef unsigned long long CUdeviceptr_;
typedef void *CUctx_;
typedef void *CUmod_;
typedef void *CUfn_;
typedef void *CUstream_;

struct hs_slot {
	CUstream_ stream;
	unsigned char *host;
	size_t host_cap;
	CUdeviceptr_ dev;
	size_t dev_cap;
};

struct hs_gpu {
	void *lib;
	CUctx_ ctx;
	int dev;
	CUmod_ mod;
	CUfn_ k_base, k_row_factor, k_col_sumsq, k_finish;
	int nslots;
	struct hs_slot *slots;
	int (*cuInit)(unsigned);
	int (*cuDeviceGet)(int *, int);
	int (*cuDevicePrimaryCtxRetain)(CUctx_ *, int);
	int (*cuDevicePrimaryCtxRelease)(int);
	int (*cuCtxSetCurrent)(CUctx_);
	int (*cuModuleLoadData)(CUmod_ *, const void *);
	int (*cuModuleUnload)(CUmod_);
	int (*cuModuleGetFunction)(CUfn_ *, CUmod_, const char *);
	int (*cuStreamCreate)(CUstream_ *, unsigned);
	int (*cuStreamDestroy)(CUstream_);
	int (*cuStreamSynchronize)(CUstream_);
	int (*cuMemAlloc)(CUdeviceptr_ *, size_t);
	int (*cuMemFree)(CUdeviceptr_);
	int (*cuMemHostAlloc)(void **, size_t, unsigned);
	int (*cuMemFreeHost)(void *);
	int (*cuMemcpyHtoDAsync)(CUdeviceptr_, const void *, size_t, CUstream_);
	int (*cuMemcpyDtoHAsync)(void *, CUdeviceptr_, size_t, CUstream_);
	int (*cuLaunchKernel)(CUfn_, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream_,
	                      void **, void **);
	int (*cuGetErrorName)(int, const char **);
};

static int fail(struct hs_gpu *g, int rc, const char *what, char *msg, int msg_len) {
	const char *en = NULL;
	if (g && g->cuGetErrorName) g->cuGetErrorName(rc, &en);
	snprintf(msg, msg_len, "%s: %s (error %d)", what, en ? en : "CUDA error", rc);
	return rc ? rc : -1;
}

#define SYM(name, sym)                                                                                                 \
	do {                                                                                                           \
		*(void **)(&g->name) = dlsym(g->lib, sym);                                                             \
		if (!g->name) {                                                                                        \
			snprintf(msg, msg_len, "libcuda.so.1 lacks %s", sym);                                         \
			hs_gpu_close(g);                                                                               \
			return NULL;                                                                                   \
		}                                                                                                      \
	} while (0)
#define CK(call, what)                                                                                                 \
	do {                                                                                                           \
		int rc_ = (call);                                                                                      \
		if (rc_ != 0) {                                                                                        \
			fail(g, rc_, what, msg, msg_len);                                                              \
			hs_gpu_close(g);                                                                               \
			return NULL;                                                                                   \
		}                                                                                                      \
	} while (0)

struct hs_gpu *hs_gpu_open(const char *ptx, int nslots, char *msg, int msg_len) {
	struct hs_gpu *g = (struct hs_gpu *)calloc(1, sizeof *g);
	if (!g) {
		snprintf(msg, msg_len, "out of memory");
		return NULL;
	}
	g->dev = -1;
	g->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!g->lib) {
		snprintf(msg, msg_len, "no NVIDIA driver: cannot open libcuda.so.1");
		free(g);
		return NULL;
	}
	SYM(cuGetErrorName, "cuGetErrorName");
	SYM(cuInit, "cuInit");
	SYM(cuDeviceGet, "cuDeviceGet");
	SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
	SYM(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
	SYM(cuCtxSetCurrent, "cuCtxSetCurrent");
	SYM(cuModuleLoadData, "cuModuleLoadData");
	SYM(cuModuleUnload, "cuModuleUnload");
	SYM(cuModuleGetFunction, "cuModuleGetFunction");
	SYM(cuStreamCreate, "cuStreamCreate");
	SYM(cuStreamDestroy, "cuStreamDestroy_v2");
	SYM(cuStreamSynchronize, "cuStreamSynchronize");
	SYM(cuMemAlloc, "cuMemAlloc_v2");
	SYM(cuMemFree, "cuMemFree_v2");
	SYM(cuMemHostAlloc, "cuMemHostAlloc");
	SYM(cuMemFreeHost, "cuMemFreeHost");
	SYM(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
	SYM(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
	SYM(cuLaunchKernel, "cuLaunchKernel");
	CK(g->cuInit(0), "cuInit");
	int dev;
	CK(g->cuDeviceGet(&dev, 0), "cuDeviceGet");
	CK(g->cuDevicePrimaryCtxRetain(&g->ctx, dev), "cuDevicePrimaryCtxRetain");
	g->dev = dev;
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	CK(g->cuModuleLoadData(&g->mod, ptx), "cuModuleLoadData (kernels.ptx)");
	CK(g->cuModuleGetFunction(&g->k_base, g->mod, "hs_k_base"), "cuModuleGetFunction hs_k_base");
	CK(g->cuModuleGetFunction(&g->k_row_factor, g->mod, "hs_k_row_factor"), "cuModuleGetFunction hs_k_row_factor");
	CK(g->cuModuleGetFunction(&g->k_col_sumsq, g->mod, "hs_k_col_sumsq"), "cuModuleGetFunction hs_k_col_sumsq");
	CK(g->cuModuleGetFunction(&g->k_finish, g->mod, "hs_k_finish"), "cuModuleGetFunction hs_k_finish");
	g->slots = (struct hs_slot *)calloc(nslots, sizeof *g->slots);
	if (!g->slots) {
		snprintf(msg, msg_len, "out of memory");
		hs_gpu_close(g);
		return NULL;
	}
	g->nslots = nslots;
	for (int i = 0; i < nslots; i++) CK(g->cuStreamCreate(&g->slots[i].stream, 1 /* non-blocking */), "cuStreamCreate");
	return g;
}

void hs_gpu_close(struct hs_gpu *g) {
	if (!g) return;
	if (g->ctx && g->cuCtxSetCurrent) g->cuCtxSetCurrent(g->ctx);
	for (int i = 0; g->slots && i < g->nslots; i++) {
		struct hs_slot *s = &g->slots[i];
		if (s->stream) g->cuStreamDestroy(s->stream);
		if (s->host) g->cuMemFreeHost(s->host);
		if (s->dev) g->cuMemFree(s->dev);
	}
	free(g->slots);
	if (g->mod) g->cuModuleUnload(g->mod);
	if (g->dev >= 0 && g->cuDevicePrimaryCtxRelease) g->cuDevicePrimaryCtxRelease(g->dev);
	if (g->lib) dlclose(g->lib);
	free(g);
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

static size_t dsize(int d) { return d == HS_F32 ? 4 : 2; }

#undef CK
#define CK(call, what)                                                                                                 \
	do {                                                                                                           \
		int rc_ = (call);                                                                                      \
		if (rc_ != 0) return -fail(g, rc_, what, msg, msg_len) - 2;                                            \
	} while (0)

// hs_gpu_tile computes tile t (host pointers, as hostref.cc takes it) on slot si. It returns the first non-finite
// index or -1, or a value below -1 with the reason in msg. The slot must not be used concurrently.
int64_t hs_gpu_tile(struct hs_gpu *g, int si, const hs_tile *t, char *msg, int msg_len) {
	struct hs_slot *s = &g->slots[si];
	int64_t n = t->count;
	if (n == 0) return -1;
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	int64_t last = t->start + n - 1;
	// Input sections, then outputs, each 256-byte aligned: host and device arenas share the layout.
	struct { const void *src; size_t len; size_t off; } in[10];
	int nin = 0;
	size_t off = 0;
#define IN(ptr, bytes)                                                                                                 \
	do {                                                                                                           \
		in[nin].src = (ptr);                                                                                   \
		in[nin].len = (bytes);                                                                                 \
		in[nin].off = off;                                                                                     \
		off += align256(in[nin].len);                                                                          \
		nin++;                                                                                                 \
	} while (0)
	int rows = t->rows > 0 ? 1 : 0;
	if (t->src_kind == 2) {
		IN(t->packed, (size_t)(last / 2 - t->start / 2 + 1));
		IN(t->scales, 4 * (size_t)(last / t->blocksize - t->start / t->blocksize + 1));
		IN(t->code, 64);
	} else {
		IN(t->raw, (size_t)n * dsize(t->src_dtype));
	}
	int i_coef = -1, i_m = -1, i_aux = -1, i_first;
	if (t->r > 0) {
		i_coef = nin;
		IN(t->coef, 4 * (size_t)(t->rows * t->r));
		i_m = nin;
		IN(t->m, 4 * (size_t)(t->r * t->cols));
	}
	if (t->dora == 1) { i_aux = nin; IN(t->row_magnitude, 4 * (size_t)t->rows); }
	if (t->dora == 2) { i_aux = nin; IN(t->col_sumsq, 8 * (size_t)t->cols); }
	if (t->dora == 3) { i_aux = nin; IN(t->col_factor, 4 * (size_t)t->cols); }
	unsigned long long first_init = (unsigned long long)n;
	i_first = nin;
	IN(&first_init, 8);
	size_t in_bytes = off;
	size_t out_off = off, out_len = t->dora == 2 ? 0 : (size_t)n * dsize(t->out_dtype);
	off += align256(out_len);
	size_t work_off = off;
	off += align256(4 * (size_t)n);
	size_t factor_off = off;
	off += align256(4 * (size_t)(rows ? t->rows : 1));
	(void)rows;
	if (off > s->host_cap) {
		if (s->host) g->cuMemFreeHost(s->host);
		s->host = NULL;
		s->host_cap = 0;
		CK(g->cuMemHostAlloc((void **)&s->host, off, 0), "cuMemHostAlloc");
		s->host_cap = off;
	}
	if (off > s->dev_cap) {
		if (s->dev) g->cuMemFree(s->dev);
		s->dev = 0;
		s->dev_cap = 0;
		CK(g->cuMemAlloc(&s->dev, off), "cuMemAlloc");
		s->dev_cap = off;
	}
	for (int i = 0; i < nin; i++) memcpy(s->host + in[i].off, in[i].src, in[i].len);
	CK(g->cuMemcpyHtoDAsync(s->dev, s->host, in_bytes, s->stream), "cuMemcpyHtoDAsync");
	hs_tile d = *t;
	CUdeviceptr_ base = s->dev;
	if (t->src_kind == 2) {
		d.packed = (const uint8_t *)(base + in[0].off);
		d.scales = (const float *)(base + in[1].off);
		d.code = (const float *)(base + in[2].off);
		d.raw = NULL;
	} else {
		d.raw = (const uint8_t *)(base + in[0].off);
	}
	if (i_coef >= 0) {
		d.coef = (const float *)(base + in[i_coef].off);
		d.m = (const float *)(base + in[i_m].off);
	}
	if (t->dora == 1) d.row_magnitude = (const float *)(base + in[i_aux].off);
	if (t->dora == 2) d.col_sumsq = (double *)(base + in[i_aux].off);
	if (t->dora == 3) d.col_factor = (const float *)(base + in[i_aux].off);
	d.out = (uint8_t *)(base + out_off);
	d.work = (float *)(base + work_off);
	CUdeviceptr_ factor = base + factor_off, first = base + in[i_first].off;
	unsigned grid = (unsigned)((n + 255) / 256);
	if (grid > 65535) grid = 65535;
	void *a1[] = {&d};
	CK(g->cuLaunchKernel(g->k_base, grid, 1, 1, 256, 1, 1, 0, s->stream, a1, NULL), "launch hs_k_base");
	if (t->dora == 2) {
		void *a[] = {&d};
		CK(g->cuLaunchKernel(g->k_col_sumsq, (unsigned)((t->cols + 127) / 128), 1, 1, 128, 1, 1, 0, s->stream, a, NULL),
		   "launch hs_k_col_sumsq");
		CK(g->cuMemcpyDtoHAsync(s->host + in[i_aux].off, base + in[i_aux].off, in[i_aux].len, s->stream), "cuMemcpyDtoHAsync");
		CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
		memcpy(t->col_sumsq, s->host + in[i_aux].off, in[i_aux].len);
		return -1;
	}
	if (t->dora == 1) {
		void *a[] = {&d, &factor};
		CK(g->cuLaunchKernel(g->k_row_factor, (unsigned)((t->rows + 127) / 128), 1, 1, 128, 1, 1, 0, s->stream, a, NULL),
		   "launch hs_k_row_factor");
	}
	void *a4[] = {&d, &factor, &first};
	CK(g->cuLaunchKernel(g->k_finish, grid, 1, 1, 256, 1, 1, 0, s->stream, a4, NULL), "launch hs_k_finish");
	CK(g->cuMemcpyDtoHAsync(s->host + out_off, base + out_off, out_len, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuMemcpyDtoHAsync(s->host + in[i_first].off, first, 8, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	memcpy(t->out, s->host + out_off, out_len);
	unsigned long long f;
	memcpy(&f, s->host + in[i_first].off, 8);
	if (f >= (unsigned long long)n) return -1;
	// Work (V') is needed only to report a non-finite value: fetch it then.
	CK(g->cuMemcpyDtoHAsync(s->host + work_off, base + work_off, 4 * (size_t)n, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	memcpy(t->work, s->host + work_off, 4 * (size_t)n);
	return (int64_t)f;
}
