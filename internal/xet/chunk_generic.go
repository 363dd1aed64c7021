//go:build !amd64 || noasm || !gc

package xet

// gearScan runs the gearhash over data from state h and returns the 1-based position of the first byte after
// which h&gearMask == 0 (or -1) and the state after the bytes it hashed. Without the amd64 assembly it is
// gearScanGo.
func gearScan(h uint64, data []byte) (int, uint64) { return gearScanGo(h, data) }
