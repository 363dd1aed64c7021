package xet

// gearScanRef is the previous gearhash loop (unrolled by 4, one mask test per byte), kept as the reference the
// differential tests and BenchmarkGearScan compare gearScan against.
func gearScanRef(h uint64, data []byte) (int, uint64) {
	t := &gearTable
	i := 0
	for ; i+4 <= len(data); i += 4 {
		d := data[i : i+4 : i+4]
		h = t[d[0]] + h*2
		if h < 1<<48 {
			return i + 1, h
		}
		h = t[d[1]] + h*2
		if h < 1<<48 {
			return i + 2, h
		}
		h = t[d[2]] + h*2
		if h < 1<<48 {
			return i + 3, h
		}
		h = t[d[3]] + h*2
		if h < 1<<48 {
			return i + 4, h
		}
	}
	for ; i < len(data); i++ {
		h = t[data[i]] + h*2
		if h < 1<<48 {
			return i + 1, h
		}
	}
	return -1, h
}
