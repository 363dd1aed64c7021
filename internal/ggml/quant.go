package ggml

import (
	"errors"
	"fmt"
)

// errNotImplemented is returned by Quantize until the quantizers land.
var errNotImplemented = errors.New("ggml: quantizer not implemented yet")

// Quantize encodes len(src)/ncols rows of ncols float32 values each (row-major) as type t into dst, which must
// hold exactly rows × RowSize(ncols) bytes. The bytes equal ggml_quantize_chunk's without an importance matrix.
func Quantize(t Type, dst []byte, src []float32, ncols int) error {
	rs, err := t.RowSize(ncols)
	if err != nil {
		return err
	}
	if ncols == 0 || len(src)%ncols != 0 || len(dst) != len(src)/ncols*rs {
		return fmt.Errorf("ggml: %s: %d values in rows of %d into %d bytes", t, len(src), ncols, len(dst))
	}
	return errNotImplemented
}
