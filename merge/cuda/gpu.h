#ifndef HUBSYNC_GPU_H
#define HUBSYNC_GPU_H
#include "hsmath.cuh"
struct hs_gpu;
struct hs_gpu *hs_gpu_open(const char *ptx, int nslots, char *msg, int msg_len);
void hs_gpu_close(struct hs_gpu *g);
int64_t hs_gpu_tile(struct hs_gpu *g, int slot, const hs_tile *t, char *msg, int msg_len);
int64_t hs_gpu_bench_stage(struct hs_gpu *g, int slot, const hs_tile *t, char *msg, int msg_len);
int64_t hs_gpu_bench_kernels(struct hs_gpu *g, int slot, int iters, char *msg, int msg_len);
int64_t hs_gpu_bench_copy(struct hs_gpu *g, int slot, size_t n, int iters, char *msg, int msg_len);
#endif
