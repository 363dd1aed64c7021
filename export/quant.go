package export

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/hubsync/hubsync/internal/tensor"
)

// QuantConfig is a bitsandbytes 4-bit output's quantization settings, as transformers' BitsAndBytesConfig holds
// them (model-formats.md §3.5).
type QuantConfig struct {
	// QuantType is "nf4" or "fp4".
	QuantType string
	// DoubleQuant is bnb_4bit_use_double_quant.
	DoubleQuant bool
	// ComputeDType is bnb_4bit_compute_dtype (F32, F16 or BF16).
	ComputeDType tensor.DType
	// Storage is bnb_4bit_quant_storage (U8 or BF16).
	Storage tensor.DType
	// SkipModules is llm_int8_skip_modules (nil: null, transformers' default choice).
	SkipModules []string
}

// SetQuantizationConfig returns config.json (RewriteConfig's output) with the "quantization_config" object
// transformers' save_pretrained writes for a bitsandbytes 4-bit model: BitsAndBytesConfig.to_dict with sorted keys,
// as PretrainedConfig.to_json_string writes it. Everything else is preserved.
func SetQuantizationConfig(raw []byte, q QuantConfig) ([]byte, error) {
	if q.QuantType != "nf4" && q.QuantType != "fp4" {
		return nil, fmt.Errorf("config.json: quant type %q is not nf4 or fp4", q.QuantType)
	}
	compute, storage := q.ComputeDType.TorchName(), q.Storage.TorchName()
	if compute == "" || storage == "" {
		return nil, fmt.Errorf("config.json: compute dtype %s or quant storage %s has no torch name", q.ComputeDType, q.Storage)
	}
	root, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if root.kind != '{' {
		return nil, fmt.Errorf("config.json: top-level value is not a JSON object")
	}
	var skip bytes.Buffer
	if q.SkipModules == nil {
		skip.WriteString("null")
	} else {
		skip.WriteByte('[')
		for i, m := range q.SkipModules {
			if i > 0 {
				skip.WriteString(", ")
			}
			writePyString(&skip, m)
		}
		skip.WriteByte(']')
	}
	fields := map[string]string{
		"_load_in_4bit":                    "true",
		"_load_in_8bit":                    "false",
		"bnb_4bit_compute_dtype":           pyStr(compute),
		"bnb_4bit_quant_storage":           pyStr(storage),
		"bnb_4bit_quant_type":              pyStr(q.QuantType),
		"bnb_4bit_use_double_quant":        strconv.FormatBool(q.DoubleQuant),
		"llm_int8_enable_fp32_cpu_offload": "false",
		"llm_int8_has_fp16_weight":         "false",
		"llm_int8_skip_modules":            skip.String(),
		"llm_int8_threshold":               "6.0",
		"load_in_4bit":                     "true",
		"load_in_8bit":                     "false",
		"quant_method":                     pyStr("bitsandbytes"),
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		writePyString(&b, k)
		b.WriteString(": ")
		b.WriteString(fields[k])
	}
	b.WriteByte('}')
	qn, err := parseJSON(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("config.json: quantization_config: %w", err)
	}
	root.set("quantization_config", qn, true)
	var out bytes.Buffer
	root.write(&out, 0)
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func pyStr(s string) string {
	var b bytes.Buffer
	writePyString(&b, s)
	return b.String()
}

// TensorError is the measured quantization error of one 4-bit tensor against the 16-bit merge.
type TensorError struct {
	Name string  `json:"name"`
	RMSE float64 `json:"rmse"`
	Max  float64 `json:"max_abs_error"`
}

// QuantReport is a 4-bit output's quantization settings and measured error, for the model card.
type QuantReport struct {
	Config QuantConfig
	// Blocksize is the 4-bit block size.
	Blocksize int
	// Quantized and Kept count the 4-bit weights and the tensors kept in the compute dtype.
	Quantized, Kept int
	// RMSE and Max are over every quantized element; Worst is the tensor with the largest RMSE.
	RMSE, Max float64
	Worst     TensorError
}

// quantLines writes the card's 4-bit section.
func (r *QuantReport) quantLines(b *bytes.Buffer) {
	fmt.Fprintf(b, "\n## 4-bit quantization\n\n")
	fmt.Fprintf(b, "The merged weights were re-quantized to bitsandbytes %s (blocksize %d, double quantization %t, "+
		"quant storage %s, compute dtype %s); transformers loads it with bitsandbytes installed. Re-quantizing "+
		"after the merge loses precision: the error below is measured against the 16-bit merge.\n\n",
		r.Config.QuantType, r.Blocksize, r.Config.DoubleQuant, r.Config.Storage.TorchName(), r.Config.ComputeDType.TorchName())
	fmt.Fprintf(b, "- 4-bit weights: %d; kept in %s: %d\n", r.Quantized, r.Config.ComputeDType.TorchName(), r.Kept)
	fmt.Fprintf(b, "- Quantization error (all 4-bit weights): RMSE %s, max |error| %s\n", fmtErr(r.RMSE), fmtErr(r.Max))
	if r.Worst.Name != "" {
		fmt.Fprintf(b, "- Largest per-tensor RMSE: %s in %s (max |error| %s)\n", fmtErr(r.Worst.RMSE), code(r.Worst.Name), fmtErr(r.Worst.Max))
	}
}

func fmtErr(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
