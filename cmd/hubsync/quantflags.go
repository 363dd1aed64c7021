package main

import (
	"encoding/json"
	"io"
	"math"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/merge"
)

// quantFlags are the bitsandbytes 4-bit output flags shared by merge, push --merged and watch (--dtype nf4|fp4).
type quantFlags struct {
	DoubleQuant  bool
	Blocksize    int
	ComputeDType string
	Storage      string
	SkipModules  []string
	flags        *pflag.FlagSet
}

func (q *quantFlags) addFlags(f *pflag.FlagSet) {
	q.flags = f
	f.BoolVar(&q.DoubleQuant, "double-quant", true, "with --dtype nf4|fp4: quantize the absmax statistics too (bnb_4bit_use_double_quant)")
	f.IntVar(&q.Blocksize, "blocksize", 64, "with --dtype nf4|fp4: 4-bit block size, a power of two in 32..4096")
	f.StringVar(&q.ComputeDType, "compute-dtype", "", "with --dtype nf4|fp4: bnb_4bit_compute_dtype and the dtype of the tensors kept unquantized: bf16, fp16 or fp32 (default: the base's)")
	f.StringVar(&q.Storage, "quant-storage", "uint8", "with --dtype nf4|fp4: bnb_4bit_quant_storage, uint8 or bf16")
	f.StringSliceVar(&q.SkipModules, "skip-modules", nil, "with --dtype nf4|fp4: modules kept unquantized (llm_int8_skip_modules; default: lm_head)")
}

// changed lists the 4-bit flags given on the command line.
func (q *quantFlags) changed() []string {
	var out []string
	for _, n := range []string{"double-quant", "blocksize", "compute-dtype", "quant-storage", "skip-modules"} {
		if q.flags != nil && q.flags.Changed(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

// outputDType parses --dtype: a float dtype (no 4-bit output), or nf4/fp4 with the 4-bit flags. The returned
// dtype is the merge's DType (the compute dtype of a 4-bit output).
func (q *quantFlags) outputDType(dtype string) (tensor.DType, *merge.QuantOutput, error) {
	qt := merge.ParseQuantType(dtype)
	if qt == "" {
		if ch := q.changed(); len(ch) > 0 {
			return tensor.Invalid, nil, usagef("%s apply to --dtype nf4 or fp4", strings.Join(ch, ", "))
		}
		dt, err := pipeline.ParseDType(dtype)
		if err != nil {
			return tensor.Invalid, nil, usagef("--dtype must be bf16, fp16, fp32, nf4 or fp4, not %q", dtype)
		}
		return dt, nil, nil
	}
	dt, err := pipeline.ParseDType(q.ComputeDType)
	if err != nil {
		return tensor.Invalid, nil, usagef("--compute-dtype must be bf16, fp16 or fp32, not %q", q.ComputeDType)
	}
	var storage tensor.DType
	switch strings.ToLower(q.Storage) {
	case "uint8", "u8", "":
		storage = tensor.U8
	case "bf16", "bfloat16":
		storage = tensor.BF16
	default:
		return tensor.Invalid, nil, usagef("--quant-storage must be uint8 or bf16, not %q", q.Storage)
	}
	if bs := q.Blocksize; bs < 32 || bs > 4096 || bs&(bs-1) != 0 {
		return tensor.Invalid, nil, usagef("--blocksize must be a power of two between 32 and 4096, not %d", bs)
	}
	qo := &merge.QuantOutput{Type: qt, Blocksize: q.Blocksize, DoubleQuant: q.DoubleQuant, Storage: storage}
	if q.flags != nil && q.flags.Changed("skip-modules") {
		qo.SkipModules = append([]string{}, q.SkipModules...)
	}
	return dt, qo, nil
}

// mergeJSON is merge --json's output.
type mergeJSON struct {
	Dir        string         `json:"dir"`
	Tensors    int            `json:"tensors"`
	Merged     int            `json:"merged"`
	Shards     int            `json:"shards"`
	Bytes      int64          `json:"bytes"`
	DType      string         `json:"dtype"`
	Backend    string         `json:"backend"`
	DurationMS int64          `json:"duration_ms"`
	Quantize   *quantJSONInfo `json:"quantization,omitempty"`
}

type quantJSONInfo struct {
	QuantType    string               `json:"quant_type"`
	Blocksize    int                  `json:"blocksize"`
	DoubleQuant  bool                 `json:"double_quant"`
	ComputeDType string               `json:"compute_dtype"`
	Storage      string               `json:"quant_storage"`
	Quantized    int                  `json:"quantized_tensors"`
	RMSE         float64              `json:"rmse"`
	Max          float64              `json:"max_abs_error"`
	PerTensor    []export.TensorError `json:"tensors"`
}

func writeMergeJSON(w io.Writer, res *merge.Result) error {
	out := mergeJSON{Dir: res.Dir, Tensors: res.Tensors, Merged: res.Merged, Shards: res.Shards, Bytes: res.Bytes,
		DType: res.DType.TorchName(), Backend: res.Backend, DurationMS: res.Duration.Milliseconds()}
	if q := res.Quant; q != nil {
		c := q.Report.Config
		out.Quantize = &quantJSONInfo{QuantType: c.QuantType, Blocksize: q.Report.Blocksize, DoubleQuant: c.DoubleQuant,
			ComputeDType: c.ComputeDType.TorchName(), Storage: c.Storage.TorchName(), Quantized: q.Report.Quantized,
			RMSE: finiteOr(q.Report.RMSE), Max: finiteOr(q.Report.Max), PerTensor: q.Tensors}
		for i := range out.Quantize.PerTensor {
			out.Quantize.PerTensor[i].RMSE = finiteOr(out.Quantize.PerTensor[i].RMSE)
			out.Quantize.PerTensor[i].Max = finiteOr(out.Quantize.PerTensor[i].Max)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// finiteOr maps a non-finite error (a weight whose 4-bit form overflowed) to -1, which JSON can carry.
func finiteOr(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return -1
	}
	return v
}

// applyWatch overrides a watch entry's quant keys with the 4-bit flags given on the command line.
func (q *quantFlags) applyWatch(w *config.Quant4Bit) {
	if q.flags == nil {
		return
	}
	if q.flags.Changed("double-quant") {
		v := q.DoubleQuant
		w.DoubleQuant = &v
	}
	if q.flags.Changed("blocksize") {
		w.Blocksize = q.Blocksize
	}
	if q.flags.Changed("compute-dtype") {
		w.ComputeDType = q.ComputeDType
	}
	if q.flags.Changed("quant-storage") {
		w.Storage = q.Storage
	}
	if q.flags.Changed("skip-modules") {
		w.SkipModules = append([]string{}, q.SkipModules...)
	}
}
