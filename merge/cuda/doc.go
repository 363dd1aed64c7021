// Package cuda is the CUDA merge backend, built only with -tags cuda (the default build leaves this package
// empty and hubsync pure Go).
//
// The per-element arithmetic of a tile lives in hsmath.cuh as __host__ __device__ functions that follow the
// portable Go kernels (merge/kernels/generic.go) operation for operation, so that a merge on a GPU gives the same
// bytes as on a CPU. hostref.cc runs those functions on the host; the tests compare it with the Go CPU backend on
// random tiles of every kind, which needs a C++ compiler but no GPU. The driver is reached through a dlopen'd
// libcuda.so.1, so building and linking need no CUDA installation and no GPU driver: Provider reports the reason
// (no driver, no device) when there is none.
package cuda
