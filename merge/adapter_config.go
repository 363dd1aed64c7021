package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// AdapterConfig is the part of a PEFT adapter_config.json that the merge uses (model-formats.md §5.2).
type AdapterConfig struct {
	// PeftType is "LORA" (the only type merged).
	PeftType string
	// R and LoraAlpha are the default rank and alpha.
	R         int
	LoraAlpha float64
	// UseRSLoRA scales by alpha/sqrt(r) instead of alpha/r.
	UseRSLoRA bool
	// RankPattern and AlphaPattern override r and alpha per module; their order is the JSON's order.
	RankPattern  []Pattern
	AlphaPattern []Pattern
	// FanInFanOut means the target weights are stored [in, out] (GPT-2 Conv1D): the delta is transposed.
	FanInFanOut bool
	// Bias is "none", "all" or "lora_only".
	Bias string
	// LoraBias means lora_B has a bias vector.
	LoraBias bool
	// UseDoRA means every LoRA module has a magnitude vector.
	UseDoRA bool
	// ModulesToSave lists modules saved in full.
	ModulesToSave []string
	// TargetModules lists the targeted module names (a regex target is one element).
	TargetModules []string
	// BaseModelNameOrPath is the base the adapter was trained on.
	BaseModelNameOrPath string
}

// Pattern is one rank_pattern or alpha_pattern entry.
type Pattern struct {
	// Key is the pattern as written (a regular expression).
	Key string
	// Value is the rank or alpha.
	Value float64
	re    *regexp.Regexp
}

// unsupportedFields are LoraConfig fields that select a variant whose weights do not merge as plain LoRA (or
// cannot be merged at all). Each is refused when its value is "set" (not null, false, 0, "", [] or {}).
var unsupportedFields = [...]struct{ name, why string }{
	{"target_parameters", "LoRA on nn.Parameter targets (MoE experts) is not merged by hubsync"},
	{"layer_replication", "layer replication changes the model's layer structure"},
	{"use_qalora", "QA-LoRA merges into a group-quantized base"},
	{"alora_invocation_tokens", "activated LoRA only applies after its invocation tokens and cannot be merged"},
	{"trainable_token_indices", "trainable-token deltas are not merged by hubsync"},
	{"arrow_config", "Arrow routes between experts per token and cannot be merged"},
	{"use_bdlora", "block-diagonal LoRA stores its factors differently"},
	{"kasa_config", "KaSA truncates the base weight and adds a diagonal factor"},
	{"monteclora_config", "MonteCLoRA adds sampled factors"},
	{"velora_config", "VeLoRA adapters are not merged by hubsync"},
}

// ParseAdapterConfig parses adapter_config.json. Object key order is preserved for rank_pattern and
// alpha_pattern (PEFT takes the first matching key in that order). It refuses non-LoRA PEFT types and the LoRA
// variants listed in unsupportedFields, naming the field. Errors do not name the file; the caller adds it.
func ParseAdapterConfig(raw []byte) (*AdapterConfig, error) {
	fields, err := orderedObject(raw)
	if err != nil {
		return nil, err
	}
	c := &AdapterConfig{PeftType: "LORA", R: 8, LoraAlpha: 8, Bias: "none"}
	get := func(k string) (json.RawMessage, bool) {
		for _, f := range fields {
			if f.key == k {
				return f.val, true
			}
		}
		return nil, false
	}
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.key] {
			return nil, &fieldError{f.key, "appears twice"}
		}
		seen[f.key] = true
	}
	if v, ok := get("peft_type"); ok && !isNull(v) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, &fieldError{"peft_type", "is not a string"}
		}
		if s != "LORA" {
			return nil, &fieldError{"peft_type", fmt.Sprintf("is %q; hubsync merges LORA adapters only", s)}
		}
	}
	for _, u := range unsupportedFields {
		if v, ok := get(u.name); ok && isSet(v) {
			return nil, &fieldError{u.name, fmt.Sprintf("is set (%s): %s", compact(v), u.why)}
		}
	}
	if v, ok := get("r"); ok && !isNull(v) {
		r, err := jsonPositiveInt(v)
		if err != nil {
			return nil, &fieldError{"r", err.Error()}
		}
		c.R = r
	}
	if v, ok := get("lora_alpha"); ok && !isNull(v) {
		a, err := jsonFinite(v)
		if err != nil {
			return nil, &fieldError{"lora_alpha", err.Error()}
		}
		c.LoraAlpha = a
	}
	for _, b := range []struct {
		key string
		dst *bool
	}{{"use_rslora", &c.UseRSLoRA}, {"fan_in_fan_out", &c.FanInFanOut}, {"lora_bias", &c.LoraBias}, {"use_dora", &c.UseDoRA}} {
		if v, ok := get(b.key); ok && !isNull(v) {
			if err := json.Unmarshal(v, b.dst); err != nil {
				return nil, &fieldError{b.key, "is not true or false"}
			}
		}
	}
	if v, ok := get("bias"); ok && !isNull(v) {
		if err := json.Unmarshal(v, &c.Bias); err != nil || (c.Bias != "none" && c.Bias != "all" && c.Bias != "lora_only") {
			return nil, &fieldError{"bias", fmt.Sprintf("is %s, not \"none\", \"all\" or \"lora_only\"", compact(v))}
		}
	}
	if c.RankPattern, err = parsePatterns(get, "rank_pattern", true); err != nil {
		return nil, err
	}
	if c.AlphaPattern, err = parsePatterns(get, "alpha_pattern", false); err != nil {
		return nil, err
	}
	if v, ok := get("modules_to_save"); ok && !isNull(v) {
		if err := json.Unmarshal(v, &c.ModulesToSave); err != nil {
			return nil, &fieldError{"modules_to_save", "is not a list of strings"}
		}
	}
	if v, ok := get("target_modules"); ok && !isNull(v) {
		var s string
		if json.Unmarshal(v, &s) == nil {
			c.TargetModules = []string{s}
		} else if err := json.Unmarshal(v, &c.TargetModules); err != nil {
			return nil, &fieldError{"target_modules", "is neither a string nor a list of strings"}
		}
	}
	if v, ok := get("base_model_name_or_path"); ok && !isNull(v) {
		if err := json.Unmarshal(v, &c.BaseModelNameOrPath); err != nil {
			return nil, &fieldError{"base_model_name_or_path", "is not a string"}
		}
	}
	return c, nil
}

// fieldError is a problem with one adapter_config.json field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + " " + e.msg }

// RankFor returns module's rank: the value of the first rank_pattern key matching it, else r.
func (c *AdapterConfig) RankFor(module string) int {
	if p := matchPattern(c.RankPattern, module); p != nil {
		return int(p.Value)
	}
	return c.R
}

// AlphaFor returns module's alpha: the value of the first alpha_pattern key matching it, else lora_alpha.
func (c *AdapterConfig) AlphaFor(module string) float64 {
	if p := matchPattern(c.AlphaPattern, module); p != nil {
		return p.Value
	}
	return c.LoraAlpha
}

// Scaling returns module's LoRA scaling, alpha/r or alpha/sqrt(r) with use_rslora, with the module's rank.
func (c *AdapterConfig) Scaling(module string) (scaling float64, rank int) {
	r := c.RankFor(module)
	a := c.AlphaFor(module)
	if c.UseRSLoRA {
		return a / math.Sqrt(float64(r)), r
	}
	return a / float64(r), r
}

// matchPattern implements PEFT's get_pattern_key: the first key K, in order, for which re.match(r"(.*\.)?(K)$",
// module) succeeds.
func matchPattern(ps []Pattern, module string) *Pattern {
	for i := range ps {
		if ps[i].re.MatchString(module) {
			return &ps[i]
		}
	}
	return nil
}

// compilePatternKey builds the Go equivalent of Python's re.match(rf"(.*\.)?({key})$", name): anchored at the
// start (re.match) and at the end ($; module names never end in a newline, so Python's "before a trailing
// newline" case does not arise).
func compilePatternKey(key string) (*regexp.Regexp, error) {
	return regexp.Compile(`\A(?:(.*\.)?(` + key + `))\z`)
}

func parsePatterns(get func(string) (json.RawMessage, bool), field string, integer bool) ([]Pattern, error) {
	v, ok := get(field)
	if !ok || isNull(v) {
		return nil, nil
	}
	entries, err := orderedObject(v)
	if err != nil {
		return nil, &fieldError{field, "is not a JSON object"}
	}
	var out []Pattern
	for _, e := range entries {
		re, err := compilePatternKey(e.key)
		if err != nil {
			return nil, &fieldError{field, fmt.Sprintf("key %q is not a regular expression hubsync can evaluate: %v", e.key, err)}
		}
		p := Pattern{Key: e.key, re: re}
		if integer {
			r, err := jsonPositiveInt(e.val)
			if err != nil {
				return nil, &fieldError{field, fmt.Sprintf("key %q: %v", e.key, err)}
			}
			p.Value = float64(r)
		} else {
			a, err := jsonFinite(e.val)
			if err != nil {
				return nil, &fieldError{field, fmt.Sprintf("key %q: %v", e.key, err)}
			}
			p.Value = a
		}
		out = append(out, p)
	}
	return out, nil
}

type jsonField struct {
	key string
	val json.RawMessage
}

// orderedObject decodes a JSON object into its fields in document order.
func orderedObject(raw []byte) ([]jsonField, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []jsonField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("not valid JSON: object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		out = append(out, jsonField{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("not valid JSON: trailing data after the object")
	}
	return out, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// isSet reports whether a JSON value is "truthy" in Python's sense: not null, false, 0, "", [] or {}.
func isSet(v json.RawMessage) bool {
	s := string(bytes.TrimSpace(v))
	switch s {
	case "null", "false", "0", "0.0", `""`:
		return false
	}
	if len(s) >= 2 && (s[0] == '[' || s[0] == '{') {
		inner := strings.TrimSpace(s[1 : len(s)-1])
		return inner != ""
	}
	return true
}

func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return string(v)
	}
	s := b.String()
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// jsonNumber decodes a JSON number literal (a quoted number is refused, unlike json.Number's decoding).
func jsonNumber(v json.RawMessage) (json.Number, bool) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || !(t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		return "", false
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(t))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		return "", false
	}
	return n, true
}

func jsonPositiveInt(v json.RawMessage) (int, error) {
	n, ok := jsonNumber(v)
	if !ok {
		return 0, fmt.Errorf("is %s, not a positive integer", compact(v))
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || f != math.Trunc(f) || f < 1 || f > 1<<20 {
		return 0, fmt.Errorf("is %s, not a positive integer", n)
	}
	return int(f), nil
}

func jsonFinite(v json.RawMessage) (float64, error) {
	n, ok := jsonNumber(v)
	if !ok {
		return 0, fmt.Errorf("is %s, not a number", compact(v))
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("is %s, not a finite number", n)
	}
	return f, nil
}
