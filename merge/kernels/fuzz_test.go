package kernels

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// FuzzBitExact feeds arbitrary bytes to the bit-exact kernels of every implementation and compares them with
// generic: as packed 4-bit codes and scales for Dequant4 (start k and block size from the fuzzer), and as float32
// bit patterns for Round, Encode, Decode and Scale.
func FuzzBitExact(f *testing.F) {
	seed := make([]byte, 4*97)
	for i := range seed {
		seed[i] = byte(i*37 + 11)
	}
	f.Add(seed, uint16(0), uint8(0))
	f.Add(seed, uint16(1), uint8(1))
	f.Add(seed[:64], uint16(17), uint8(2))
	f.Add([]byte{0x00, 0x00, 0x80, 0x7f, 0xff, 0xff, 0x7f, 0x7f, 0x00, 0x80, 0x7f, 0x47, 0x01, 0, 0, 0}, uint16(3), uint8(3))
	blocksizes := []int{32, 64, 128, 256, 4096, 48, 40}
	impls := Available()
	f.Fuzz(func(t *testing.T, data []byte, k16 uint16, bsSel uint8) {
		if len(data) > 1<<12 {
			data = data[:1<<12] // longer inputs add nothing but time
		}
		x := make([]float32, len(data)/4)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}

		// Dequant4: the window [k, k+n) of a tensor whose packed bytes are data, scales taken from x.
		bs := blocksizes[int(bsSel)%len(blocksizes)]
		k := int64(k16) % int64(2*len(data)+1)
		n := 2*len(data) - int(k)
		if n > 0 && len(x) > 0 {
			nblocks := int((k+int64(n)-1)/int64(bs)) + 1
			scales := make([]float32, nblocks)
			for i := range scales {
				scales[i] = x[i%len(x)]
			}
			var code [16]float32
			for i := range code {
				code[i] = x[(i+1)%len(x)]
			}
			checkDequant(t, impls, data, &code, scales, bs, k, n, "fuzz")
		}

		for _, d := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
			checkRoundEncode(t, impls, d, x, "fuzz "+d.String())
		}

		if len(x) > 1 {
			a, s := x[:len(x)/2], x[len(x)/2:len(x)/2*2]
			want := append([]float32(nil), a...)
			Generic().Scale(want, s)
			for _, im := range impls {
				got := append([]float32(nil), a...)
				im.Scale(got, s)
				if i := sameFloats(got, want); i >= 0 {
					t.Fatalf("%s Scale: element %d = %g, want %g", im.Name, i, got[i], want[i])
				}
			}
		}
	})
}
