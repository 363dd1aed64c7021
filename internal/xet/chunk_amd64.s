// The gearhash scan loop for amd64 (declared in chunk_amd64.go).

//go:build amd64 && !noasm && gc

#include "textflag.h"

// func gearScanAsm(h uint64, p *byte, n int, table *[256]uint64) (i int, hout uint64, cut bool)
//
// Per byte: a byte load, a table load, one LEA for h = table[b] + 2h (the only instruction on the dependency
// chain) and a fused compare-and-branch against 1<<48 held in R11. Eight bytes per iteration; n is rounded
// down to a multiple of 8 and the caller hashes the rest.
TEXT ·gearScanAsm(SB), NOSPLIT, $0-49
	MOVQ h+0(FP), DX
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ table+24(FP), R8
	MOVQ SI, DI
	ANDQ $-8, CX
	ADDQ SI, CX
	MOVQ $0x1000000000000, R11
	CMPQ SI, CX
	JAE  none

loop:
	MOVBQZX 0(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut1
	MOVBQZX 1(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut2
	MOVBQZX 2(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut3
	MOVBQZX 3(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut4
	MOVBQZX 4(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut5
	MOVBQZX 5(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut6
	MOVBQZX 6(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut7
	MOVBQZX 7(SI), AX
	MOVQ    (R8)(AX*8), AX
	LEAQ    (AX)(DX*2), DX
	CMPQ    DX, R11
	JCS     cut8
	ADDQ $8, SI
	CMPQ SI, CX
	JB   loop

none:
	SUBQ DI, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $0, cut+48(FP)
	RET

cut1:
	SUBQ DI, SI
	ADDQ $1, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut2:
	SUBQ DI, SI
	ADDQ $2, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut3:
	SUBQ DI, SI
	ADDQ $3, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut4:
	SUBQ DI, SI
	ADDQ $4, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut5:
	SUBQ DI, SI
	ADDQ $5, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut6:
	SUBQ DI, SI
	ADDQ $6, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut7:
	SUBQ DI, SI
	ADDQ $7, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET

cut8:
	SUBQ DI, SI
	ADDQ $8, SI
	MOVQ SI, i+32(FP)
	MOVQ DX, hout+40(FP)
	MOVB $1, cut+48(FP)
	RET
