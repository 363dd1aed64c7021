package gguf

import (
	"fmt"
	"strings"

	"github.com/hubsync/hubsync/internal/ggml"
)

// nDims is ggml_n_dims: the dimension count without trailing 1s (at least 1).
func nDims(dims []uint64) int {
	n := len(dims)
	for n > 1 && dims[n-1] == 1 {
		n--
	}
	return n
}

// converted reports whether the type is one convert_hf_to_gguf writes itself (f32, f16, bf16, q8_0); the
// others are what llama_model_quantize makes from hubsync's 16-bit file.
func (t FileType) converted() bool {
	return t == FileF32 || t == FileF16 || t == FileBF16 || t == FileQ8_0
}

// baseType is the tensor type of a file type's bulk weights (llama_model_quantize's default_type, or the
// converter's outtype).
func (t FileType) baseType() ggml.Type {
	switch t {
	case FileF32:
		return ggml.F32
	case FileF16:
		return ggml.F16
	case FileBF16:
		return ggml.BF16
	case FileQ8_0:
		return ggml.Q8_0
	case FileQ4_0:
		return ggml.Q4_0
	case FileQ4_KM:
		return ggml.Q4_K
	case FileQ5_KM:
		return ggml.Q5_K
	case FileQ6_K:
		return ggml.Q6_K
	}
	return ggml.F32
}

// mixState is llama_model_quantize's quantize_state_impl: what it counts over the whole model before and while
// choosing tensor types.
type mixState struct {
	ft           FileType
	hasOutput    bool
	nAttnV       int
	iAttnV       int
	nFFNDown     int
	iFFNDown     int
	is70B        bool
	quantizeOnly bool
}

// newMixState counts over the file's tensor names (in file order) as llama_model_quantize_impl does.
func newMixState(ft FileType, hp *hparams, names []string) *mixState {
	s := &mixState{ft: ft, nFFNDown: hp.nLayer}
	for _, n := range names {
		if strings.Contains(n, "attn_v.weight") || strings.Contains(n, "attn_qkv.weight") || strings.Contains(n, "attn_kv_b.weight") {
			s.nAttnV++
		} else if n == "output.weight" {
			s.hasOutput = true
		}
	}
	// llama.cpp's model type: LLM_TYPE_70B is 80 layers (llama with grouped-query attention, qwen2).
	switch hp.arch.name {
	case "llama":
		s.is70B = hp.nLayer == 80 && hp.nHead != hp.nHeadKV
	case "qwen2":
		s.is70B = hp.nLayer == 80
	}
	return s
}

// useMoreBits is llama-quant.cpp's use_more_bits.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// tensorType chooses a tensor's type. Tensors must be visited in file order (the counters of attn_v and
// ffn_down advance as in llama_model_quantize). Converter types follow convert_hf_to_gguf's prepare_tensors;
// the others follow llama_model_quantize on the converter's 16-bit file.
func (s *mixState) tensorType(name string, dims []uint64) (ggml.Type, error) {
	is1D := nDims(dims) <= 1
	keepF32 := is1D || strings.HasSuffix(name, "_norm.weight") || !strings.HasSuffix(name, ".weight") ||
		strings.Contains(name, "ffn_gate_inp.weight")
	if s.ft.converted() {
		t := s.ft.baseType()
		if keepF32 {
			return ggml.F32, nil
		}
		if _, err := t.RowSize(int(dims[0])); err != nil {
			return ggml.F16, nil // gguf-py's QuantError fallback
		}
		return t, nil
	}
	// llama_model_quantize: which tensors are quantized at all (the others keep the 16-bit file's type, F32).
	quantize := strings.HasSuffix(name, "weight") && nDims(dims) >= 2 && !strings.Contains(name, "_norm.weight") &&
		!strings.Contains(name, "ffn_gate_inp.weight") && !strings.Contains(name, "pos_embd") && !strings.Contains(name, "token_types")
	if !quantize {
		return ggml.F32, nil
	}
	t := s.getType(name, dims)
	nx := int(dims[0])
	if nx%t.BlockElems() == 0 {
		return t, nil
	}
	// tensor_type_fallback
	switch t {
	case ggml.Q4_K:
		t = ggml.Q5_0
	case ggml.Q5_K:
		t = ggml.Q5_1
	case ggml.Q6_K:
		t = ggml.Q8_0
	default:
		return 0, fmt.Errorf("gguf: tensor %s: rows of %d elements cannot be stored as %s (blocks of %d) and llama.cpp has no fallback for it", name, nx, t, t.BlockElems())
	}
	if nx%t.BlockElems() != 0 {
		t = ggml.F16
	}
	return t, nil
}

// getType is llama_tensor_get_type for the file types hubsync writes (no MoE, no imatrix, no overrides).
func (s *mixState) getType(name string, dims []uint64) ggml.Type {
	t := s.ft.baseType()
	nx := int(dims[0])
	switch {
	case name == "output.weight" || (!s.hasOutput && name == "token_embd.weight"):
		if nx%t.BlockElems() != 0 {
			t = ggml.Q8_0
		} else if t != ggml.Q8_0 {
			t = ggml.Q6_K
		}
	case name == "token_embd.weight":
		// keeps the default type
	case strings.Contains(name, "attn_v.weight"):
		if (s.ft == FileQ4_KM || s.ft == FileQ5_KM) && useMoreBits(s.iAttnV, s.nAttnV) {
			t = ggml.Q6_K
		}
		if s.is70B && (t == ggml.Q4_K) {
			t = ggml.Q5_K
		}
		s.iAttnV++
	case strings.Contains(name, "ffn_down"):
		if (s.ft == FileQ4_KM || s.ft == FileQ5_KM) && useMoreBits(s.iFFNDown, s.nFFNDown) {
			t = ggml.Q6_K
		}
		s.iFFNDown++
	case strings.Contains(name, "attn_qkv.weight"):
		switch s.ft {
		case FileQ4_KM:
			t = ggml.Q5_K
		case FileQ5_KM:
			t = ggml.Q6_K
		}
	}
	return t
}
