//go:build cuda

package cuda

/*
#include "gpu.h"
*/
import "C"

import (
	"errors"
	"runtime"

	"github.com/hubsync/hubsync/merge"
)

// The benchmark's access to the device (cgo cannot be used in test files): slot 0 must not be running tiles.

// benchStage copies t's inputs into slot 0's device arena and returns the tile's kernel traffic (input + output
// bytes).
func (b *gpuBackend) benchStage(t *merge.Tile) (int64, error) {
	if err := t.Check(); err != nil {
		return 0, err
	}
	var p runtime.Pinner
	defer p.Unpin()
	ct := cTile(&p, t, b.fused)
	var msg [512]C.char
	r := int64(C.hs_gpu_bench_stage(b.g, 0, &ct, &msg[0], C.int(len(msg))))
	if r < -1 {
		return 0, errors.New(C.GoString(&msg[0]))
	}
	return r, nil
}

// benchKernels runs the staged tile's kernels iters times on the device and waits.
func (b *gpuBackend) benchKernels(iters int) error {
	var msg [512]C.char
	if r := C.hs_gpu_bench_kernels(b.g, 0, C.int(iters), &msg[0], C.int(len(msg))); r < -1 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// benchCopy copies n bytes device to device iters times and waits (iters 0 only allocates the buffers).
func (b *gpuBackend) benchCopy(n int64, iters int) error {
	var msg [512]C.char
	if r := C.hs_gpu_bench_copy(b.g, 0, C.size_t(n), C.int(iters), &msg[0], C.int(len(msg))); r < -1 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}
