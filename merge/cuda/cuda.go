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

// errNoDataPath is why a device that answers cannot be used yet: this build checks the kernels' arithmetic on
// the host and finds devices, but does not launch kernels (docs/cuda.md).
var errNoDataPath = errors.New("this build has no kernel launch path yet (docs/cuda.md)")

// usable says whether a probed device can run merges, and why not.
func usable(pr Probe) error {
	if pr.Err != nil {
		return pr.Err
	}
	return fmt.Errorf("CUDA device %q found, but %w", pr.Device, errNoDataPath)
}

// Provider returns the CUDA backend provider for merge.Options.Backends. The device probe runs once, on first use.
// Until the kernel launch path exists Available is always false, so auto merges on the CPU (logging the reason)
// and --device cuda fails with the reason: no driver, no device, or no launch path.
func Provider() merge.BackendProvider {
	p := sync.OnceValue(func() error { return usable(probe()) })
	return merge.BackendProvider{
		Name:        merge.DeviceCUDA,
		Available:   func() bool { return p() == nil },
		Unavailable: func() string { return p().Error() },
		New: func(*kernels.Impl) (merge.Backend, error) {
			return nil, fmt.Errorf("cuda: %w", p())
		},
	}
}
