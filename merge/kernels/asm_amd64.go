//go:build amd64 && !noasm && gc

package kernels

//go:generate sh -c "cd _generate && go run . -out .."

// Assembly kernels, generated into avx2_amd64.s and avx512_amd64.s by _generate/gen.go. Each exists once per
// instruction set with the suffix AVX2 or AVX512. Lengths are element counts; the simple kernels process
// n rounded down to a multiple of 16 (sumSquares: 32) and leave the rest to the Go wrappers in simd_amd64.go,
// which also check every bound before passing pointers.

// dequant4 writes groups×16 float32 values code[q]·scale to dst, reading 8 packed bytes per group from src (high
// nibble first). The first group's flat index is a multiple of 16; scales[0] is its block's scale, which covers
// first more groups, and every later block covers blockGroups groups.
//
//go:noescape
func dequant4AVX2(dst *float32, src *byte, code *[16]float32, scales *float32, groups, first, blockGroups int)

// roundBF16 rounds x[0:n] to bfloat16 (c10 round_to_nearest_even, NaN → 0x7FC00000) in place.
//
//go:noescape
func roundBF16AVX2(x *float32, n int)

// roundF16 rounds x[0:n] to IEEE half (VCVTPS2PH with round-to-nearest-even) and widens it back, in place.
//
//go:noescape
func roundF16AVX2(x *float32, n int)

// encodeBF16 stores src[0:n] rounded to bfloat16 into dst[0:2n]; the result is non-zero if some rounded value
// is not finite.
//
//go:noescape
func encodeBF16AVX2(dst *byte, src *float32, n int) (nonFinite int)

// encodeF16 stores src[0:n] rounded to IEEE half into dst[0:2n]; the result is non-zero if some rounded value
// is not finite.
//
//go:noescape
func encodeF16AVX2(dst *byte, src *float32, n int) (nonFinite int)

// encodeF32 copies src[0:n] into dst[0:4n]; the result is non-zero if some value is not finite.
//
//go:noescape
func encodeF32AVX2(dst *byte, src *float32, n int) (nonFinite int)

// decodeBF16 widens n bfloat16 values from src into dst.
//
//go:noescape
func decodeBF16AVX2(dst *float32, src *byte, n int)

// decodeF16 widens n IEEE halves from src into dst.
//
//go:noescape
func decodeF16AVX2(dst *float32, src *byte, n int)

// addLowRank computes dst[i·cols+j] = fma(coef[i·ldc+t], m[t·cols+j], dst[i·cols+j]) for t = 0..r-1 in order,
// for rows, cols, r ≥ 1. pack is scratch space for r×lowRankPanel float32 (the current column panel of m).
//
//go:noescape
func addLowRankAVX2(dst, coef, m, pack *float32, rows, cols, r, ldc int)

// sumSquares returns Σ x[i]² over x[0:n] in float64 lanes.
//
//go:noescape
func sumSquaresAVX2(x *float32, n int) (sum float64)

// addSquares adds x[j]² to acc[j] for j < n (one float64 FMA: exact product, one rounding).
//
//go:noescape
func addSquaresAVX2(acc *float64, x *float32, n int)

// scale multiplies x[i] by s[i] for i < n.
//
//go:noescape
func scaleAVX2(x, s *float32, n int)

// The AVX-512 versions have the same contracts as the AVX2 ones above.

//go:noescape
func dequant4AVX512(dst *float32, src *byte, code *[16]float32, scales *float32, groups, first, blockGroups int)

//go:noescape
func roundBF16AVX512(x *float32, n int)

//go:noescape
func roundF16AVX512(x *float32, n int)

//go:noescape
func encodeBF16AVX512(dst *byte, src *float32, n int) (nonFinite int)

//go:noescape
func encodeF16AVX512(dst *byte, src *float32, n int) (nonFinite int)

//go:noescape
func encodeF32AVX512(dst *byte, src *float32, n int) (nonFinite int)

//go:noescape
func decodeBF16AVX512(dst *float32, src *byte, n int)

//go:noescape
func decodeF16AVX512(dst *float32, src *byte, n int)

//go:noescape
func addLowRankAVX512(dst, coef, m, pack *float32, rows, cols, r, ldc int)

//go:noescape
func sumSquaresAVX512(x *float32, n int) (sum float64)

//go:noescape
func addSquaresAVX512(acc *float64, x *float32, n int)

//go:noescape
func scaleAVX512(x, s *float32, n int)
