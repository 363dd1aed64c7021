#ifndef HUBSYNC_HOSTREF_H
#define HUBSYNC_HOSTREF_H
#include "hsmath.cuh"
#ifdef __cplusplus
extern "C" {
#endif
int64_t hs_merge_tile_host(const hs_tile *t);
#ifdef __cplusplus
}
#endif
#endif
