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
	struct hs_staged *bench; // a tile left on the device by hs_gpu_bench_stage
	CUdeviceptr_ cpy;        // hs_gpu_bench_copy's source and destination
	size_t cpy_cap;
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
	int (*cuMemcpyDtoDAsync)(CUdeviceptr_, CUdeviceptr_, size_t, CUstream_);
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
	SYM(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
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
		if (s->cpy) g->cuMemFree(s->cpy);
		free(s->bench);
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

// hs_staged is a tile whose inputs are (being) copied into its slot's device arena: the device-side tile and
// the arena's layout.
struct hs_staged {
	hs_tile d;
	struct { const void *src; size_t len; size_t off; } in[10];
	int nin, i_aux, i_first;
	size_t in_bytes, out_off, out_len, work_off;
	CUdeviceptr_ factor, first;
	unsigned long long first_init;
};

// stage lays tile t out in slot s's arenas (growing them), queues the copy of its inputs to the device on the
// slot's stream and fills st. It returns 0, or a value below -1 with the reason in msg.
static int64_t stage(struct hs_gpu *g, struct hs_slot *s, const hs_tile *t, struct hs_staged *st, char *msg,
                     int msg_len) {
	int64_t n = t->count;
	int64_t last = t->start + n - 1;
	// Input sections, then outputs, each 256-byte aligned: host and device arenas share the layout.
	int nin = 0;
	size_t off = 0;
#define IN(ptr, bytes)                                                                                                 \
	do {                                                                                                           \
		st->in[nin].src = (ptr);                                                                               \
		st->in[nin].len = (bytes);                                                                             \
		st->in[nin].off = off;                                                                                 \
		off += align256(st->in[nin].len);                                                                      \
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
	st->first_init = (unsigned long long)n;
	i_first = nin;
	IN(&st->first_init, 8);
#undef IN
	size_t in_bytes = off;
	size_t out_off = off, out_len = t->dora == 2 ? 0 : (size_t)n * dsize(t->out_dtype);
	off += align256(out_len);
	size_t work_off = off;
	off += align256(4 * (size_t)n);
	size_t factor_off = off;
	off += align256(4 * (size_t)(rows ? t->rows : 1));
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
	for (int i = 0; i < nin; i++) memcpy(s->host + st->in[i].off, st->in[i].src, st->in[i].len);
	CK(g->cuMemcpyHtoDAsync(s->dev, s->host, in_bytes, s->stream), "cuMemcpyHtoDAsync");
	hs_tile *d = &st->d;
	*d = *t;
	CUdeviceptr_ base = s->dev;
	if (t->src_kind == 2) {
		d->packed = (const uint8_t *)(base + st->in[0].off);
		d->scales = (const float *)(base + st->in[1].off);
		d->code = (const float *)(base + st->in[2].off);
		d->raw = NULL;
	} else {
		d->raw = (const uint8_t *)(base + st->in[0].off);
	}
	if (i_coef >= 0) {
		d->coef = (const float *)(base + st->in[i_coef].off);
		d->m = (const float *)(base + st->in[i_m].off);
	}
	if (t->dora == 1) d->row_magnitude = (const float *)(base + st->in[i_aux].off);
	if (t->dora == 2) d->col_sumsq = (double *)(base + st->in[i_aux].off);
	if (t->dora == 3) d->col_factor = (const float *)(base + st->in[i_aux].off);
	d->out = (uint8_t *)(base + out_off);
	d->work = (float *)(base + work_off);
	st->nin = nin;
	st->i_aux = i_aux;
	st->i_first = i_first;
	st->in_bytes = in_bytes;
	st->out_off = out_off;
	st->out_len = out_len;
	st->work_off = work_off;
	st->factor = base + factor_off;
	st->first = base + st->in[i_first].off;
	return 0;
}

// launch queues the kernels of a staged tile on slot s's stream: the base (and V), then the column sums of
// squares (DoRA column norms, which ends there) or the row factors (DoRA rows), then the finish (DoRA scaling,
// rounding, first non-finite index).
static int64_t launch(struct hs_gpu *g, struct hs_slot *s, struct hs_staged *st, char *msg, int msg_len) {
	hs_tile *d = &st->d;
	unsigned grid = (unsigned)((d->count + 255) / 256);
	if (grid > 65535) grid = 65535;
	void *a1[] = {d};
	CK(g->cuLaunchKernel(g->k_base, grid, 1, 1, 256, 1, 1, 0, s->stream, a1, NULL), "launch hs_k_base");
	if (d->dora == 2) {
		void *a[] = {d};
		CK(g->cuLaunchKernel(g->k_col_sumsq, (unsigned)((d->cols + 127) / 128), 1, 1, 128, 1, 1, 0, s->stream, a, NULL),
		   "launch hs_k_col_sumsq");
		return 0;
	}
	if (d->dora == 1) {
		void *a[] = {d, &st->factor};
		CK(g->cuLaunchKernel(g->k_row_factor, (unsigned)((d->rows + 127) / 128), 1, 1, 128, 1, 1, 0, s->stream, a, NULL),
		   "launch hs_k_row_factor");
	}
	void *a4[] = {d, &st->factor, &st->first};
	CK(g->cuLaunchKernel(g->k_finish, grid, 1, 1, 256, 1, 1, 0, s->stream, a4, NULL), "launch hs_k_finish");
	return 0;
}

// hs_gpu_tile computes tile t (host pointers, as hostref.cc takes it) on slot si. It returns the first non-finite
// index or -1, or a value below -1 with the reason in msg. The slot must not be used concurrently.
int64_t hs_gpu_tile(struct hs_gpu *g, int si, const hs_tile *t, char *msg, int msg_len) {
	struct hs_slot *s = &g->slots[si];
	int64_t n = t->count;
	if (n == 0) return -1;
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	struct hs_staged st;
	int64_t rc = stage(g, s, t, &st, msg, msg_len);
	if (rc == 0) rc = launch(g, s, &st, msg, msg_len);
	if (rc != 0) return rc;
	CUdeviceptr_ base = s->dev;
	if (t->dora == 2) {
		size_t aoff = st.in[st.i_aux].off, alen = st.in[st.i_aux].len;
		CK(g->cuMemcpyDtoHAsync(s->host + aoff, base + aoff, alen, s->stream), "cuMemcpyDtoHAsync");
		CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
		memcpy(t->col_sumsq, s->host + aoff, alen);
		return -1;
	}
	size_t foff = st.in[st.i_first].off;
	CK(g->cuMemcpyDtoHAsync(s->host + st.out_off, base + st.out_off, st.out_len, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuMemcpyDtoHAsync(s->host + foff, st.first, 8, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	memcpy(t->out, s->host + st.out_off, st.out_len);
	unsigned long long f;
	memcpy(&f, s->host + foff, 8);
	if (f >= (unsigned long long)n) return -1;
	// Work (V') is needed only to report a non-finite value: fetch it then.
	CK(g->cuMemcpyDtoHAsync(s->host + st.work_off, base + st.work_off, 4 * (size_t)n, s->stream), "cuMemcpyDtoHAsync");
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	memcpy(t->work, s->host + st.work_off, 4 * (size_t)n);
	return (int64_t)f;
}

// hs_gpu_bench_stage copies tile t's inputs into slot si's device arena and waits, for hs_gpu_bench_kernels. It
// returns the tile's kernel traffic (input + output bytes: source, scales, code, LoRA factors, DoRA vector, encoded
// output), or a value below -1 with the reason in msg.
int64_t hs_gpu_bench_stage(struct hs_gpu *g, int si, const hs_tile *t, char *msg, int msg_len) {
	struct hs_slot *s = &g->slots[si];
	if (t->count == 0) {
		snprintf(msg, msg_len, "empty tile");
		return -2;
	}
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	if (!s->bench) s->bench = (struct hs_staged *)calloc(1, sizeof *s->bench);
	if (!s->bench) {
		snprintf(msg, msg_len, "out of memory");
		return -2;
	}
	int64_t rc = stage(g, s, t, s->bench, msg, msg_len);
	if (rc != 0) return rc;
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	int64_t traffic = (int64_t)s->bench->out_len;
	for (int i = 0; i < s->bench->nin; i++)
		if (i != s->bench->i_first) traffic += (int64_t)s->bench->in[i].len;
	return traffic;
}

// hs_gpu_bench_kernels runs the kernels of the tile staged on slot si iters times, device memory only, and waits.
// It returns 0, or a value below -1 with the reason in msg.
int64_t hs_gpu_bench_kernels(struct hs_gpu *g, int si, int iters, char *msg, int msg_len) {
	struct hs_slot *s = &g->slots[si];
	if (!s->bench) {
		snprintf(msg, msg_len, "no tile staged on slot %d", si);
		return -2;
	}
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	for (int i = 0; i < iters; i++) {
		int64_t rc = launch(g, s, s->bench, msg, msg_len);
		if (rc != 0) return rc;
	}
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	return 0;
}

// hs_gpu_bench_copy copies n bytes device to device (cuMemcpyDtoDAsync) iters times on slot si's stream and
// waits; its buffers are allocated on first use (call it with iters = 0 to allocate them outside a timed part).
// It returns 0, or a value below -1 with the reason in msg.
int64_t hs_gpu_bench_copy(struct hs_gpu *g, int si, size_t n, int iters, char *msg, int msg_len) {
	struct hs_slot *s = &g->slots[si];
	CK(g->cuCtxSetCurrent(g->ctx), "cuCtxSetCurrent");
	size_t half = align256(n);
	if (2 * half > s->cpy_cap) {
		if (s->cpy) g->cuMemFree(s->cpy);
		s->cpy = 0;
		s->cpy_cap = 0;
		CK(g->cuMemAlloc(&s->cpy, 2 * half), "cuMemAlloc");
		s->cpy_cap = 2 * half;
	}
	for (int i = 0; i < iters; i++)
		CK(g->cuMemcpyDtoDAsync(s->cpy + half, s->cpy, n, s->stream), "cuMemcpyDtoDAsync");
	CK(g->cuStreamSynchronize(s->stream), "cuStreamSynchronize");
	return 0;
}
