// fakecuda.c is a stand-in libcuda.so.1 for the tests: "device" memory is host memory, streams run synchronously
// and the four kernels of kernels.cu run as host loops over hsmath.cuh, so gpu.c's data path (arena layout, copies,
// pointer translation, the non-finite index, the column-norm pass) is tested without a GPU.
// Built by TestFakeDriver: cc -shared -fPIC -I.. -o libcuda.so.1 fakecuda.c
#include <stdlib.h>
#include <string.h>
#include "../hsmath.cuh"

typedef unsigned long long dptr;

int cuInit(unsigned f) { (void)f; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return 0; }
int cuDeviceGetName(char *name, int len, int d) { (void)d; strncpy(name, "fake", len); return 0; }
int cuGetErrorName(int rc, const char **s) { (void)rc; *s = "FAKE_ERROR"; return 0; }
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)1; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
int cuCtxSetCurrent(void *c) { (void)c; return 0; }
int cuModuleLoadData(void **m, const void *img) { *m = (void *)1; return strstr((const char *)img, ".entry hs_k_base") ? 0 : 218; }
int cuModuleUnload(void *m) { (void)m; return 0; }
static const char *names[] = {"hs_k_base", "hs_k_row_factor", "hs_k_col_sumsq", "hs_k_finish"};
int cuModuleGetFunction(void **f, void *m, const char *name) {
	(void)m;
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0) { *f = (void *)names[i]; return 0; }
	return 500;
}
int cuStreamCreate(void **s, unsigned f) { (void)f; *s = malloc(1); return 0; }
int cuStreamDestroy_v2(void *s) { free(s); return 0; }
int cuStreamSynchronize(void *s) { (void)s; return 0; }
int cuMemAlloc_v2(dptr *p, size_t n) { void *q = malloc(n); memset(q, 0xA5, n); *p = (dptr)q; return q ? 0 : 2; }
int cuMemFree_v2(dptr p) { free((void *)p); return 0; }
int cuMemHostAlloc(void **p, size_t n, unsigned f) { (void)f; *p = malloc(n); memset(*p, 0x5A, n); return *p ? 0 : 2; }
int cuMemFreeHost(void *p) { free(p); return 0; }
int cuMemcpyHtoDAsync_v2(dptr d, const void *s, size_t n, void *st) { (void)st; memcpy((void *)d, s, n); return 0; }
int cuMemcpyDtoHAsync_v2(void *d, dptr s, size_t n, void *st) { (void)st; memcpy(d, (const void *)s, n); return 0; }
int cuMemcpyDtoDAsync_v2(dptr d, dptr s, size_t n, void *st) { (void)st; memmove((void *)d, (const void *)s, n); return 0; }

int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh,
                   void *st, void **params, void **extra) {
	(void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)sh; (void)st; (void)extra;
	hs_tile *t = (hs_tile *)params[0];
	if (f == names[0]) {
		for (int64_t i = 0; i < t->count; i++) t->work[i] = hs_base_elem(t, i);
	} else if (f == names[1]) {
		float *factor = *(float **)params[1];
		for (int64_t r = 0; r < t->rows; r++)
			factor[r] = hs_dora_row_factor(t->row_magnitude[r], hs_sumsq(t->work + r * t->cols, t->cols));
	} else if (f == names[2]) {
		for (int64_t j = 0; j < t->cols; j++) {
			double acc = t->col_sumsq[j];
			for (int64_t r = 0; r < t->rows; r++) {
				double x = (double)t->work[r * t->cols + j];
				acc = hs_dadd(acc, hs_dmul(x, x));
			}
			t->col_sumsq[j] = acc;
		}
	} else if (f == names[3]) {
		const float *factor = *(const float **)params[1];
		unsigned long long *first = *(unsigned long long **)params[2];
		for (int64_t i = 0; i < t->count; i++) {
			float v = t->work[i];
			if (t->dora == 1) v = hs_mul(v, factor[i / t->cols]);
			else if (t->dora == 3) v = hs_mul(v, t->col_factor[i % t->cols]);
			t->work[i] = v;
			if (hs_encode(t->out_dtype, v, t->out, i) && (unsigned long long)i < *first) *first = (unsigned long long)i;
		}
	} else {
		return 400;
	}
	return 0;
}
