//go:build amd64 && !noasm && gc

package kernels

import "golang.org/x/sys/cpu"

// features is the subset of CPU features the assembly kernels need.
type features struct {
	avx2   bool // AVX2 + FMA + F16C (and OS support for YMM state)
	avx512 bool // AVX512F + BW + VL on top of avx2 (and OS support for ZMM/opmask state)
}

func hostFeatures() features {
	x := cpu.X86
	f := features{avx2: x.HasAVX2 && x.HasFMA && x.HasF16C}
	f.avx512 = f.avx2 && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL
	return f
}

// archImpls lists the assembly implementations this CPU supports, best first.
func archImpls() []*Impl { return implsFor(hostFeatures()) }

// implsFor lists the assembly implementations a CPU with features f can run, best first.
func implsFor(f features) []*Impl {
	var out []*Impl
	if f.avx512 {
		out = append(out, avx512Impl)
	}
	if f.avx2 {
		out = append(out, avx2Impl)
	}
	return out
}

var avx2Impl = (&simd{
	dequant4:   dequant4AVX2,
	roundBF16:  roundBF16AVX2,
	roundF16:   roundF16AVX2,
	encodeBF16: encodeBF16AVX2,
	encodeF16:  encodeF16AVX2,
	encodeF32:  encodeF32AVX2,
	decodeBF16: decodeBF16AVX2,
	decodeF16:  decodeF16AVX2,
	sumSquares: sumSquaresAVX2,
	addSquares: addSquaresAVX2,
	scale:      scaleAVX2,
}).impl("avx2")

var avx512Impl = (&simd{
	avx512:     true,
	dequant4:   dequant4AVX512,
	roundBF16:  roundBF16AVX512,
	roundF16:   roundF16AVX512,
	encodeBF16: encodeBF16AVX512,
	encodeF16:  encodeF16AVX512,
	encodeF32:  encodeF32AVX512,
	decodeBF16: decodeBF16AVX512,
	decodeF16:  decodeF16AVX512,
	sumSquares: sumSquaresAVX512,
	addSquares: addSquaresAVX512,
	scale:      scaleAVX512,
}).impl("avx512")
