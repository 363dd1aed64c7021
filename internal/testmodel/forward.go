package testmodel

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// ForwardConfig is what the reference forward pass reads from a model's config.json.
type ForwardConfig struct {
	ModelType   string  `json:"model_type"`
	Hidden      int     `json:"hidden_size"`
	Layers      int     `json:"num_hidden_layers"`
	Heads       int     `json:"num_attention_heads"`
	KVHeads     int     `json:"num_key_value_heads"`
	HeadDim     int     `json:"head_dim"`
	Vocab       int     `json:"vocab_size"`
	RMSNormEps  float64 `json:"rms_norm_eps"`
	RopeTheta   float64 `json:"rope_theta"`
	RopeScaling *struct {
		RopeType       string  `json:"rope_type"`
		Type           string  `json:"type"`
		Factor         float64 `json:"factor"`
		LowFreqFactor  float64 `json:"low_freq_factor"`
		HighFreqFactor float64 `json:"high_freq_factor"`
		OriginalMax    int     `json:"original_max_position_embeddings"`
	} `json:"rope_scaling"`
	// Gemma 2.
	QueryPreAttnScalar    float64 `json:"query_pre_attn_scalar"`
	AttnLogitSoftcapping  float64 `json:"attn_logit_softcapping"`
	FinalLogitSoftcapping float64 `json:"final_logit_softcapping"`
}

// ParseForwardConfig reads the fields of config.json the forward pass needs and fills the defaults transformers
// uses (num_key_value_heads = heads, head_dim = hidden/heads, rope_theta 10000).
func ParseForwardConfig(data []byte) (ForwardConfig, error) {
	var c ForwardConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("testmodel: config.json: %w", err)
	}
	switch c.ModelType {
	case "llama", "mistral", "qwen2", "qwen3", "gemma2":
	default:
		return c, fmt.Errorf("testmodel: the reference forward pass does not know model_type %q", c.ModelType)
	}
	if c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.Vocab <= 0 {
		return c, fmt.Errorf("testmodel: config.json lacks hidden_size, num_hidden_layers, num_attention_heads or vocab_size")
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.KVHeads <= 0 || c.HeadDim <= 0 || c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 {
		return c, fmt.Errorf("testmodel: %d heads, %d KV heads, head_dim %d", c.Heads, c.KVHeads, c.HeadDim)
	}
	return c, nil
}

// ForwardDir runs Forward on the model directory dir (config.json and its safetensors weights, 4-bit ones
// dequantized as ReferenceMerge does).
func ForwardDir(dir string, tokens []int) ([]float64, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("testmodel: %w", err)
	}
	w, err := LoadWeights(dir)
	if err != nil {
		return nil, err
	}
	return Forward(data, w, tokens)
}

// Forward is a float64 reference forward pass of a decoder-only model, written from transformers' modeling code
// for clarity, not speed (tiny models only): it returns the logits of the last position for the token sequence.
// weights are the Hugging Face parameters by checkpoint name (as ReferenceMerge returns them); config is
// config.json.
//
// Per layer: RMSNorm (x·w/√(mean(x²)+eps); Gemma 2: x·(1+w)/…), Q/K/V projections (+ biases when present), Qwen 3's
// per-head q/k RMSNorms, RoPE in transformers' rotate-half layout (dimension i pairs with i+d/2, inverse
// frequency theta^(-2i/d), Llama 3.1's llama3 scaling applied to it), grouped-query causal attention with
// 1/√head_dim (Gemma 2: 1/√query_pre_attn_scalar and tanh soft-capping), the output projection, the gated MLP
// down(act(gate(x))·up(x)) with SiLU (Gemma 2: GeLU-tanh, and the extra post-attention/pre- and post-MLP norms),
// the final norm and lm_head (the embedding when tied; Gemma 2 scales the input embedding by √hidden and
// soft-caps the logits).
func Forward(config []byte, weights map[string]RefTensor, tokens []int) ([]float64, error) {
	c, err := ParseForwardConfig(config)
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("testmodel: forward: no tokens")
	}
	gemma := c.ModelType == "gemma2"
	get := func(name string, shape ...int) ([]float64, error) {
		t, ok := weights[name]
		if !ok {
			return nil, fmt.Errorf("testmodel: forward: missing tensor %s", name)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if len(t.Values) != n || len(t.Shape) != len(shape) {
			return nil, fmt.Errorf("testmodel: forward: %s has shape %v, want %v", name, t.Shape, shape)
		}
		return t.Values, nil
	}
	opt := func(name string, shape ...int) ([]float64, error) {
		if _, ok := weights[name]; !ok {
			return nil, nil
		}
		return get(name, shape...)
	}
	h, hd, nh, nkv := c.Hidden, c.HeadDim, c.Heads, c.KVHeads
	emb, err := get("model.embed_tokens.weight", c.Vocab, h)
	if err != nil {
		return nil, err
	}
	norm := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+c.RMSNormEps)
		out := make([]float64, len(x))
		for i, v := range x {
			s := w[i]
			if gemma {
				s += 1
			}
			out[i] = v * r * s
		}
		return out
	}
	invFreq := ropeInvFreq(c)
	T := len(tokens)
	xs := make([][]float64, T)
	for t, id := range tokens {
		if id < 0 || id >= c.Vocab {
			return nil, fmt.Errorf("testmodel: forward: token %d is outside the vocabulary of %d", id, c.Vocab)
		}
		xs[t] = append([]float64(nil), emb[id*h:(id+1)*h]...)
		if gemma {
			for i := range xs[t] {
				xs[t][i] *= math.Sqrt(float64(h))
			}
		}
	}
	scale := 1 / math.Sqrt(float64(hd))
	if gemma && c.QueryPreAttnScalar > 0 {
		scale = 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		var lw struct {
			inNorm, postNorm, preFF, postFF, qn, kn []float64
			q, k, v, o, gate, up, down              []float64
			bq, bk, bv, bo                          []float64
		}
		for _, x := range []struct {
			dst   *[]float64
			name  string
			shape []int
			opt   bool
		}{
			{&lw.inNorm, "input_layernorm.weight", []int{h}, false},
			{&lw.postNorm, "post_attention_layernorm.weight", []int{h}, false},
			{&lw.preFF, "pre_feedforward_layernorm.weight", []int{h}, !gemma},
			{&lw.postFF, "post_feedforward_layernorm.weight", []int{h}, !gemma},
			{&lw.qn, "self_attn.q_norm.weight", []int{hd}, c.ModelType != "qwen3"},
			{&lw.kn, "self_attn.k_norm.weight", []int{hd}, c.ModelType != "qwen3"},
			{&lw.q, "self_attn.q_proj.weight", []int{nh * hd, h}, false},
			{&lw.k, "self_attn.k_proj.weight", []int{nkv * hd, h}, false},
			{&lw.v, "self_attn.v_proj.weight", []int{nkv * hd, h}, false},
			{&lw.o, "self_attn.o_proj.weight", []int{h, nh * hd}, false},
			{&lw.bq, "self_attn.q_proj.bias", []int{nh * hd}, true},
			{&lw.bk, "self_attn.k_proj.bias", []int{nkv * hd}, true},
			{&lw.bv, "self_attn.v_proj.bias", []int{nkv * hd}, true},
			{&lw.bo, "self_attn.o_proj.bias", []int{h}, true},
			{&lw.gate, "mlp.gate_proj.weight", nil, false},
			{&lw.up, "mlp.up_proj.weight", nil, false},
			{&lw.down, "mlp.down_proj.weight", nil, false},
		} {
			shape := x.shape
			if shape == nil { // the MLP's width comes from the weight itself
				t, ok := weights[p+x.name]
				if !ok || len(t.Shape) != 2 {
					return nil, fmt.Errorf("testmodel: forward: missing or malformed tensor %s%s", p, x.name)
				}
				shape = []int{int(t.Shape[0]), int(t.Shape[1])}
			}
			f := get
			if x.opt {
				f = opt
			}
			if *x.dst, err = f(p+x.name, shape...); err != nil {
				return nil, err
			}
		}
		inter := len(lw.gate) / h
		if len(lw.up) != inter*h || len(lw.down) != inter*h {
			return nil, fmt.Errorf("testmodel: forward: layer %d MLP shapes disagree", l)
		}
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			a := norm(xs[t], lw.inNorm)
			qs[t], ks[t], vs[t] = matVec(lw.q, a, lw.bq), matVec(lw.k, a, lw.bk), matVec(lw.v, a, lw.bv)
			if lw.qn != nil {
				for hh := range nh {
					copy(qs[t][hh*hd:], norm(qs[t][hh*hd:(hh+1)*hd], lw.qn))
				}
				for hh := range nkv {
					copy(ks[t][hh*hd:], norm(ks[t][hh*hd:(hh+1)*hd], lw.kn))
				}
			}
			for hh := range nh {
				rope(qs[t][hh*hd:(hh+1)*hd], invFreq, t)
			}
			for hh := range nkv {
				rope(ks[t][hh*hd:(hh+1)*hd], invFreq, t)
			}
		}
		for t := range T {
			attn := make([]float64, nh*hd)
			for hh := range nh {
				kh := hh / (nh / nkv)
				q := qs[t][hh*hd : (hh+1)*hd]
				scores := make([]float64, t+1)
				maxS := math.Inf(-1)
				for s := 0; s <= t; s++ {
					var d float64
					for i, qv := range q {
						d += qv * ks[s][kh*hd+i]
					}
					d *= scale
					if gemma && c.AttnLogitSoftcapping > 0 {
						d = c.AttnLogitSoftcapping * math.Tanh(d/c.AttnLogitSoftcapping)
					}
					scores[s] = d
					maxS = math.Max(maxS, d)
				}
				var sum float64
				for s := range scores {
					scores[s] = math.Exp(scores[s] - maxS)
					sum += scores[s]
				}
				for s, e := range scores {
					for i := range hd {
						attn[hh*hd+i] += e / sum * vs[s][kh*hd+i]
					}
				}
			}
			o := matVec(lw.o, attn, lw.bo)
			if gemma {
				o = norm(o, lw.postNorm)
			}
			for i := range o {
				xs[t][i] += o[i]
			}
			var m []float64
			if gemma {
				m = norm(xs[t], lw.preFF)
			} else {
				m = norm(xs[t], lw.postNorm)
			}
			g, u := matVec(lw.gate, m, nil), matVec(lw.up, m, nil)
			for i := range g {
				if gemma {
					g[i] = geluTanh(g[i]) * u[i]
				} else {
					g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
				}
			}
			d := matVec(lw.down, g, nil)
			if gemma {
				d = norm(d, lw.postFF)
			}
			for i := range d {
				xs[t][i] += d[i]
			}
		}
	}
	fn, err := get("model.norm.weight", h)
	if err != nil {
		return nil, err
	}
	last := norm(xs[T-1], fn)
	head := emb // tied: no lm_head.weight
	if _, ok := weights["lm_head.weight"]; ok {
		if head, err = get("lm_head.weight", c.Vocab, h); err != nil {
			return nil, err
		}
	}
	logits := matVec(head, last, nil)
	if gemma && c.FinalLogitSoftcapping > 0 {
		for i, v := range logits {
			logits[i] = c.FinalLogitSoftcapping * math.Tanh(v/c.FinalLogitSoftcapping)
		}
	}
	return logits, nil
}

// matVec is W·x (+ b), W row-major [len(W)/len(x), len(x)].
func matVec(w, x, b []float64) []float64 {
	n := len(x)
	out := make([]float64, len(w)/n)
	for r := range out {
		var s float64
		for i, v := range w[r*n : (r+1)*n] {
			s += v * x[i]
		}
		if b != nil {
			s += b[r]
		}
		out[r] = s
	}
	return out
}

// ropeInvFreq is transformers' inverse frequencies theta^(-2i/d), i < d/2, with Llama 3.1's llama3 scaling
// (_compute_llama3_parameters) when config.json asks for it.
func ropeInvFreq(c ForwardConfig) []float64 {
	d := c.HeadDim
	inv := make([]float64, d/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(d))
	}
	rs := c.RopeScaling
	if rs == nil || (rs.RopeType != "llama3" && rs.Type != "llama3") {
		return inv
	}
	factor, low, high, old := rs.Factor, rs.LowFreqFactor, rs.HighFreqFactor, float64(rs.OriginalMax)
	lowWavelen, highWavelen := old/low, old/high
	for i, f := range inv {
		wavelen := 2 * math.Pi / f
		switch {
		case wavelen < highWavelen:
		case wavelen > lowWavelen:
			inv[i] = f / factor
		default:
			smooth := (old/wavelen - low) / (high - low)
			inv[i] = (1-smooth)*f/factor + smooth*f
		}
	}
	return inv
}

// rope rotates one head's vector in place for position pos, in the rotate-half layout: element i pairs with
// element i+d/2 and turns by pos·invFreq[i].
func rope(x, invFreq []float64, pos int) {
	half := len(x) / 2
	for i := range half {
		s, c := math.Sincos(float64(pos) * invFreq[i])
		a, b := x[i], x[i+half]
		x[i], x[i+half] = a*c-b*s, b*c+a*s
	}
}

// geluTanh is GeLU's tanh approximation (gelu_pytorch_tanh).
func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// LoadWeights reads every parameter of the model directory dir into float64 (4-bit weights dequantized as
// ReferenceMerge does), by checkpoint name.
func LoadWeights(dir string) (map[string]RefTensor, error) { return loadReferenceBase(dir) }
