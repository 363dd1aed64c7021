//go:build amd64 && !noasm && gc

package xet

// gearScanAsm hashes data[0:n&^7] (p is &data[0]) from state h and stops after the first byte where
// h < 1<<48. It returns the bytes hashed, the state after them and whether it stopped at a cut.
//
//go:noescape
func gearScanAsm(h uint64, p *byte, n int, table *[256]uint64) (i int, hout uint64, cut bool)

// gearScan runs the gearhash over data from state h and returns the 1-based position of the first byte after
// which h&gearMask == 0 (or -1) and the state after the bytes it hashed. The assembly loop does whole groups
// of 8 bytes, gearScanGo the rest.
func gearScan(h uint64, data []byte) (int, uint64) {
	if len(data) < 8 {
		return gearScanGo(h, data)
	}
	i, h, cut := gearScanAsm(h, &data[0], len(data), &gearTable)
	if cut {
		return i, h
	}
	p, h := gearScanGo(h, data[i:])
	if p >= 0 {
		p += i
	}
	return p, h
}
