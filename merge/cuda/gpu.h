#ifndef HUBSYNC_GPU_H
#define HUBSYNC_GPU_H
#include "hsmath.cuh"
struct hs_gpu;
struct hs_gpu *hs_gpu_open(const char *ptx, int nslots, char *msg, int msg_len);
void hs_gpu_close(struct hs_gpu *g);
int64_t hs_gpu_tile(struct hs_gpu *g, int slot, const hs_tile *t, char *msg, int msg_len);
#endif
