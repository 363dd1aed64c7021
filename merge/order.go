package merge

import (
	"sort"
	"strconv"
	"strings"
)

// segmentRank orders the module-path segments of Llama/Mistral/Qwen2-style models the way the modules are
// registered (and so the way transformers' state_dict lists them): embeddings, layers, final norm, lm_head; inside
// a layer attention (q, k, v, o), MLP (gate, up, down), then the norms; a module's weight before its bias.
// Segments not listed sort after listed ones at the same depth, alphabetically.
var segmentRank = map[string]int{
	"model":                      0,
	"transformer":                0,
	"embed_tokens":               1,
	"wte":                        1,
	"wpe":                        2,
	"layers":                     3,
	"h":                          3,
	"self_attn":                  10,
	"attn":                       10,
	"q_proj":                     11,
	"k_proj":                     12,
	"v_proj":                     13,
	"o_proj":                     14,
	"q_norm":                     15,
	"k_norm":                     16,
	"mlp":                        20,
	"gate_proj":                  21,
	"up_proj":                    22,
	"down_proj":                  23,
	"input_layernorm":            30,
	"post_attention_layernorm":   31,
	"pre_feedforward_layernorm":  32,
	"post_feedforward_layernorm": 33,
	"norm":                       40,
	"ln_f":                       40,
	"lm_head":                    50,
	"weight":                     60,
	"bias":                       61,
}

// naturalLess orders tensor names in HF module order: segment by segment, numeric segments by value (layers.2
// before layers.10), known segments by segmentRank, others alphabetically after them.
func naturalLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if x == y {
			continue
		}
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				return xn < yn
			}
			return x < y // "01" vs "1"
		case xerr == nil:
			return true
		case yerr == nil:
			return false
		}
		xr, xok := segmentRank[x]
		yr, yok := segmentRank[y]
		switch {
		case xok && yok && xr != yr:
			return xr < yr
		case xok && !yok:
			return true
		case !xok && yok:
			return false
		}
		return x < y
	}
	return len(as) < len(bs)
}

// sortNatural sorts names in place with naturalLess.
func sortNatural(names []string) {
	sort.SliceStable(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
}
