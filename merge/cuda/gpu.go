//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "gpu.h"
*/
import "C"

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"unsafe"

	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

//go:generate nvcc -ptx -arch=compute_70 -fmad=false -ftz=false -prec-div=true -prec-sqrt=true -o kernels.ptx kernels.cu

// kernelsPTX is kernels.cu compiled by `go generate` (CI checks that it is current); the driver JIT-compiles it
// for the device at load time.
//
//go:embed kernels.ptx
var kernelsPTX string

// gpuSlots is how many tiles are in flight on the device at once, each on its own stream with its own pinned
// host and device buffers: with several executor goroutines, one tile's copies overlap another's kernels.
const gpuSlots = 4

// gpuTileElems is the CUDA backend's tile size: 4 Mi elements (16 MiB of float32 per buffer) amortise the launch
// and synchronisation costs of a tile.
const gpuTileElems = 4 << 20

// gpuBackend runs tiles on a CUDA device.
type gpuBackend struct {
	g     *C.struct_hs_gpu
	name  string
	fused bool
	slots chan int
	once  sync.Once
}

// openGPU loads the kernels on device 0. fused selects the rank sum's arithmetic (see hs_lowrank).
func openGPU(device string, fused bool) (*gpuBackend, error) {
	ptx := C.CString(kernelsPTX)
	defer C.free(unsafe.Pointer(ptx))
	var msg [512]C.char
	g := C.hs_gpu_open(ptx, gpuSlots, &msg[0], C.int(len(msg)))
	if g == nil {
		return nil, errors.New(C.GoString(&msg[0]))
	}
	b := &gpuBackend{g: g, name: "cuda/0 (" + device + ")", fused: fused, slots: make(chan int, gpuSlots)}
	for i := range gpuSlots {
		b.slots <- i
	}
	return b, nil
}

func (b *gpuBackend) Name() string   { return b.name }
func (b *gpuBackend) TileElems() int { return gpuTileElems }

// Close waits for the tiles in flight and releases the device's buffers, streams and context.
func (b *gpuBackend) Close() error {
	b.once.Do(func() {
		for range gpuSlots {
			<-b.slots
		}
		C.hs_gpu_close(b.g)
	})
	return nil
}

// MergeTile implements merge.Backend. Work receives V' only when a value is not finite (the one case the
// executor reads it), which saves a device-to-host copy of every tile.
func (b *gpuBackend) MergeTile(ctx context.Context, t *merge.Tile) error {
	if err := t.Check(); err != nil {
		return err
	}
	var slot int
	select {
	case slot = <-b.slots:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { b.slots <- slot }()
	var p runtime.Pinner
	defer p.Unpin()
	ct := cTile(&p, t, b.fused)
	var msg [512]C.char
	r := int64(C.hs_gpu_tile(b.g, C.int(slot), &ct, &msg[0], C.int(len(msg))))
	if r < -1 {
		return fmt.Errorf("tile of %s on %s: %s", t.Tensor, b.name, C.GoString(&msg[0]))
	}
	t.NonFinite = int(r)
	return nil
}

// selfCheck runs random tiles of every kind on the device and on the host (hsmath.cuh, which the tests prove
// equal to the Go CPU backend) in both rank-sum modes and requires the same bytes, so a device, driver or PTX JIT
// that computes differently is never used.
func (b *gpuBackend) selfCheck(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(20, 9))
	for i := range 200 {
		c := randCase(rng)
		want := c.build(rng)
		got := clone(want)
		b.fused = i%2 == 0
		if err := want.Check(); err != nil {
			return err
		}
		mergeTileHost(want, b.fused)
		if err := b.MergeTile(ctx, got); err != nil {
			return err
		}
		if got.NonFinite != want.NonFinite || outDiff(c.out, got.Out, want.Out) >= 0 {
			return fmt.Errorf("self-check: tile %v differs from the host arithmetic", c)
		}
		for j := range want.ColSumSq {
			if g, w := got.ColSumSq[j], want.ColSumSq[j]; math.Float64bits(g) != math.Float64bits(w) && (g == g || w == w) {
				return fmt.Errorf("self-check: tile %v: column sums differ from the host arithmetic", c)
			}
		}
	}
	return nil
}

// newGPU opens the device, self-checks it and returns a backend whose rank sum matches kernel k's.
func newGPU(device string, k *kernels.Impl) (merge.Backend, error) {
	b, err := openGPU(device, true)
	if err != nil {
		return nil, err
	}
	if err := b.selfCheck(context.Background()); err != nil {
		b.Close()
		return nil, err
	}
	if k == nil {
		k = kernels.Generic()
	}
	b.fused = fuses(k)
	return b, nil
}
