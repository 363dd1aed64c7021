//go:build !amd64 || noasm

package kernels

// archImpls lists assembly implementations; there are none on this architecture or with the noasm tag.
func archImpls() []*Impl { return nil }
