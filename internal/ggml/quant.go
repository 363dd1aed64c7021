package ggml

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// block codecs: quantize one block of BlockElems values into BlockBytes bytes, and back.
type codec struct {
	quant   func(y []byte, x []float32)
	dequant func(y []float32, x []byte)
}

var codecs = map[Type]codec{
	Q8_0: {quantQ8_0, dequantQ8_0},
	Q4_0: {quantQ4_0, dequantQ4_0},
	Q4_1: {quantQ4_1, dequantQ4_1},
	Q5_0: {quantQ5_0, dequantQ5_0},
	Q5_1: {quantQ5_1, dequantQ5_1},
	Q4_K: {quantQ4_K, dequantQ4_K},
	Q5_K: {quantQ5_K, dequantQ5_K},
	Q6_K: {quantQ6_K, dequantQ6_K},
}

// check validates a (type, bytes, values, ncols) quadruple and returns the row size.
func check(op string, t Type, nbytes, nvals, ncols int) (int, error) {
	rs, err := t.RowSize(ncols)
	if err != nil {
		return 0, err
	}
	if ncols == 0 || nvals%ncols != 0 || nbytes != nvals/ncols*rs {
		return 0, fmt.Errorf("ggml: %s %s: %d values in rows of %d do not match %d bytes", op, t, nvals, ncols, nbytes)
	}
	return rs, nil
}

// Quantize encodes len(src)/ncols rows of ncols float32 values each (row-major) as type t into dst, which must
// hold exactly rows × RowSize(ncols) bytes. The bytes equal ggml_quantize_chunk's without an importance matrix
// (llama.cpp v0.5.0): F32 is copied, F16 and BF16 are rounded to nearest even as ggml does, and the block types
// are the quantize_row_*_ref algorithms. Rows are independent, so any split of the rows gives the same bytes.
func Quantize(t Type, dst []byte, src []float32, ncols int) error {
	if _, err := check("quantize", t, len(dst), len(src), ncols); err != nil {
		return err
	}
	quantize(t, dst, src)
	return nil
}

// quantize encodes whole blocks; the lengths were checked.
func quantize(t Type, dst []byte, src []float32) {
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
		return
	case F16:
		for i, v := range src {
			putU16(dst[2*i:], fp16(v))
		}
		return
	case BF16:
		for i, v := range src {
			putU16(dst[2*i:], bf16(v))
		}
		return
	}
	c := codecs[t]
	be, bb := t.BlockElems(), t.BlockBytes()
	for i, o := 0, 0; i < len(src); i, o = i+be, o+bb {
		c.quant(dst[o:o+bb], src[i:i+be])
	}
}

// Dequantize decodes len(dst)/ncols rows of type t from src into dst (the inverse of Quantize up to the
// quantization error), computing each value as ggml's dequantize_row_* does.
func Dequantize(t Type, dst []float32, src []byte, ncols int) error {
	if _, err := check("dequantize", t, len(src), len(dst), ncols); err != nil {
		return err
	}
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		return nil
	case F16:
		for i := range dst {
			dst[i] = fp16ToF32(getU16(src[2*i:]))
		}
		return nil
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(getU16(src[2*i:])) << 16)
		}
		return nil
	}
	c := codecs[t]
	be, bb := t.BlockElems(), t.BlockBytes()
	for i, o := 0, 0; i < len(dst); i, o = i+be, o+bb {
		c.dequant(dst[i:i+be], src[o:o+bb])
	}
	return nil
}

// parallelChunkRows bounds how many rows one goroutine quantizes before it looks at the context again.
const parallelChunkRows = 16

// QuantizeParallel is Quantize with the rows spread over up to workers goroutines (workers < 1 means 1). The
// bytes are identical for every worker count, because each row is quantized independently. It stops early and
// returns ctx.Err() when ctx is cancelled; dst is then partly written.
func QuantizeParallel(ctx context.Context, t Type, dst []byte, src []float32, ncols, workers int) error {
	rs, err := check("quantize", t, len(dst), len(src), ncols)
	if err != nil {
		return err
	}
	rows := len(src) / ncols
	if workers < 1 {
		workers = 1
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if workers == 1 || rows < 2 {
		for r := 0; r < rows; r += parallelChunkRows {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := min(rows, r+parallelChunkRows)
			quantize(t, dst[r*rs:e*rs], src[r*ncols:e*ncols])
		}
		return nil
	}
	// Small tiles are cut finer so that every worker gets rows; the bytes do not depend on the cut.
	chunk := max(1, min(parallelChunkRows, rows/(4*workers)))
	chunks := (rows + chunk - 1) / chunk
	next := make(chan int, chunks)
	for c := range chunks {
		next <- c * chunk
	}
	close(next)
	var (
		wg      sync.WaitGroup
		stopped atomic.Bool
	)
	for range min(workers, chunks) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				if ctx.Err() != nil {
					stopped.Store(true)
					return
				}
				e := min(rows, r+chunk)
				quantize(t, dst[r*rs:e*rs], src[r*ncols:e*ncols])
			}
		}()
	}
	wg.Wait()
	if stopped.Load() {
		return ctx.Err()
	}
	return nil
}
