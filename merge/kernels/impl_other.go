//go:build !amd64 || noasm || !gc

package kernels

// archImpls lists assembly implementations; there are none on this architecture, with the noasm tag, or
// without the gc toolchain.
func archImpls() []*Impl { return nil }
