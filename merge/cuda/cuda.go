//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "driver.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hubsync/hubsync/merge"
	"github.com/hubsync/hubsync/merge/kernels"
)

// Probe is the outcome of looking for a CUDA device.
type Probe struct {
	// Device is the first device's name when one answered.
	Device string
	// Err says why there is none: no driver (libcuda.so.1 missing), a driver that fails, or no device.
	Err error
}

// probe opens the driver through dlopen and asks for a device; it never fails to return.
func probe() Probe {
	var name, msg [256]C.char
	rc := C.hs_probe(&name[0], C.int(len(name)), &msg[0], C.int(len(msg)))
	if rc != 0 {
		return Probe{Err: errors.New(C.GoString(&msg[0]))}
	}
	return Probe{Device: C.GoString(&name[0])}
}

// Provider returns the CUDA backend provider for merge.Options.Backends. On first use it looks for a device and,
// when one answers, loads the kernels and self-checks them against the host arithmetic; Available is true only
// when all of that worked, so auto merges on the CPU otherwise (logging the reason) and --device cuda fails with
// the reason: no driver, no device, or a device that failed to load or check the kernels.
func Provider() merge.BackendProvider {
	p := sync.OnceValue(func() Probe {
		pr := probe()
		if pr.Err != nil {
			return pr
		}
		b, err := newGPU(pr.Device, nil)
		if err != nil {
			pr.Err = fmt.Errorf("CUDA device %q: %w", pr.Device, err)
			return pr
		}
		b.Close()
		return pr
	})
	return merge.BackendProvider{
		Name:      merge.DeviceCUDA,
		Available: func() bool { return p().Err == nil },
		Unavailable: func() string {
			if err := p().Err; err != nil {
				return err.Error()
			}
			return ""
		},
		New: func(k *kernels.Impl) (merge.Backend, error) {
			pr := p()
			if pr.Err != nil {
				return nil, fmt.Errorf("cuda: %w", pr.Err)
			}
			b, err := newGPU(pr.Device, k)
			if err != nil {
				return nil, fmt.Errorf("cuda (%s): %w", pr.Device, err)
			}
			return b, nil
		},
	}
}
