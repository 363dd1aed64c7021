//go:build cuda

package cuda

/*
#cgo CXXFLAGS: -O2
#cgo LDFLAGS: -lm
#include "hostref.h"
*/
import "C"

import (
	"runtime"
	"unsafe"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// hsDType maps a tensor dtype onto hsmath.cuh's codes (HS_F32 for anything else).
func hsDType(d tensor.DType) C.int {
	switch d {
	case tensor.F16:
		return C.HS_F16
	case tensor.BF16:
		return C.HS_BF16
	}
	return C.HS_F32
}

// ptr returns a pinned pointer to s[0] (nil for an empty slice).
func ptr[T any](p *runtime.Pinner, s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	p.Pin(&s[0])
	return unsafe.Pointer(&s[0])
}

// cTile fills a C tile description from t; every Go slice it points into is pinned by p until p.Unpin.
func cTile(p *runtime.Pinner, t *merge.Tile, fused bool) C.hs_tile {
	ct := C.hs_tile{
		start: C.int64_t(t.Start), count: C.int64_t(t.Count), rows: C.int64_t(t.Rows), cols: C.int64_t(t.Cols),
		src_dtype: hsDType(t.Source.DType), blocksize: C.int64_t(t.Source.Blocksize),
		base_round: hsDType(t.BaseRound), r: C.int(t.R), dora: C.int(t.DoRA), out_dtype: hsDType(t.OutDType),
	}
	if fused {
		ct.fused = 1
	}
	switch t.Source.Kind {
	case merge.SourceFloat:
		ct.src_kind = 1
	case merge.SourcePacked4:
		ct.src_kind = 2
	}
	ct.raw = (*C.uint8_t)(ptr(p, t.Source.Raw))
	ct.packed = (*C.uint8_t)(ptr(p, t.Source.Packed))
	ct.scales = (*C.float)(ptr(p, t.Source.Scales))
	if t.Source.Code != nil {
		ct.code = (*C.float)(ptr(p, t.Source.Code[:]))
	}
	ct.coef = (*C.float)(ptr(p, t.Coef))
	ct.m = (*C.float)(ptr(p, t.M))
	ct.row_magnitude = (*C.float)(ptr(p, t.RowMagnitude))
	ct.col_factor = (*C.float)(ptr(p, t.ColFactor))
	ct.col_sumsq = (*C.double)(ptr(p, t.ColSumSq))
	ct.out = (*C.uint8_t)(ptr(p, t.Out))
	ct.work = (*C.float)(ptr(p, t.Work))
	return ct
}

// mergeTileHost computes t on the host with hsmath.cuh's functions (the CUDA kernels' arithmetic); fused selects
// the fused rank sum. The caller has validated t as the CPU backend does.
func mergeTileHost(t *merge.Tile, fused bool) {
	var p runtime.Pinner
	defer p.Unpin()
	ct := cTile(&p, t, fused)
	t.NonFinite = int(C.hs_merge_tile_host(&ct))
}
