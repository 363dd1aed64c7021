package vocab

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ggufSpecialKind maps gguf-py's special-token type names to Vocab.Special kinds (the GGUF key stems); cls has
// no GGUF key and is dropped, as gguf-py's add_to_gguf does.
var ggufSpecialKind = map[string]string{
	"bos": "bos", "eos": "eos", "unk": "unknown", "sep": "seperator", "pad": "padding", "mask": "mask",
	"eot": "eot", "eom": "eom",
}

// specialState is gguf-py's SpecialVocab while it loads.
type specialState struct {
	types   []string
	ids     map[string]int
	order   []string
	add     map[string]bool
	nVocab  int // 0: no range check (the BPE path)
	tmpl    any // chat template: string or []any of {name, template}
	hasTmpl bool
}

func (s *specialState) set(typ string, v any) error {
	id, ok := jsonInt(v)
	if !ok {
		return nil
	}
	if id < 0 {
		return fmt.Errorf("invalid value for special token type %s: %d", typ, id)
	}
	if s.nVocab > 0 && id >= s.nVocab {
		return nil // gguf-py warns and skips
	}
	if _, done := s.ids[typ]; done {
		return nil
	}
	s.ids[typ] = id
	s.order = append(s.order, typ)
	return nil
}

// applySpecial fills v's special ids, add_bos/add_eos, add_space_prefix and chat template from tokenizer.json's
// post-processor, tokenizer_config.json, config.json and the chat template files, as gguf-py's SpecialVocab and
// the set_vocab of the model's converter class (fam) do.
func (sf *sideFiles) applySpecial(v *Vocab, fam family) error {
	st := &specialState{types: []string{"bos", "eos", "unk", "sep", "pad", "cls", "mask"},
		ids: map[string]int{}, add: map[string]bool{}}
	if v.Model == "llama" {
		st.nVocab = len(v.Tokens)
	}
	cfgPath := filepath.Join(sf.dir, fileConfig)
	if err := sf.fromTokenizer(st); err != nil {
		return fmt.Errorf("vocab: %s: %w", cfgPath, err)
	}
	if sf.model != nil {
		for _, typ := range st.types {
			val, ok := sf.model[typ+"_token_id"]
			if !ok {
				if tc, isObj := sf.model["text_config"].(map[string]any); isObj {
					val = tc[typ+"_token_id"]
				}
			}
			if err := st.set(typ, val); err != nil {
				return fmt.Errorf("vocab: %s: %w", filepath.Join(sf.modelDir, fileModelCfg), err)
			}
		}
	}
	v.Special = map[string]uint32{}
	for _, typ := range st.order {
		if kind, ok := ggufSpecialKind[typ]; ok {
			v.Special[kind] = uint32(st.ids[typ])
		}
	}
	if b, ok := st.add["bos"]; ok {
		v.AddBOS = boolPtr(b)
	}
	if b, ok := st.add["eos"]; ok {
		v.AddEOS = boolPtr(b)
	}
	switch {
	case fam == familyGemma && v.Model == "llama":
		v.AddSpacePrefix = boolPtr(false)
	case fam == familyLlama && sf.cfg != nil:
		if b, ok := sf.cfg["add_prefix_space"].(bool); ok {
			v.AddSpacePrefix = boolPtr(b)
		}
	}
	if st.hasTmpl {
		if err := setChatTemplate(v, st.tmpl); err != nil {
			return fmt.Errorf("vocab: %s: %w", cfgPath, err)
		}
	}
	return nil
}

// fromTokenizer is SpecialVocab._try_load_from_tokenizer_json without the merges (loadBPE reads them).
func (sf *sideFiles) fromTokenizer(st *specialState) error {
	var added []addedToken
	cfg := sf.cfg
	if sf.tok != nil {
		added = sf.tok.AddedTokens
		if cfg != nil {
			cfg = maps.Clone(cfg)
		}
		bos, cls := cfgValue(cfg, "bos_token"), cfgValue(cfg, "cls_token")
		eos, sep := cfgValue(cfg, "eos_token"), cfgValue(cfg, "sep_token")
		if !truthy(bos) && truthy(cls) && cfg != nil {
			cfg["bos_token"], bos = cls, cls
		}
		if !truthy(eos) && truthy(sep) && cfg != nil {
			cfg["eos_token"], eos = sep, sep
		}
		for _, p := range postProcessors(sf.tok.PostProcessor) {
			switch p["type"] {
			case "RobertaProcessing":
				st.add["bos"], st.add["eos"], st.add["sep"] = true, true, true
				if !truthy(cls) && cfg != nil {
					cls = firstOf(p["cls"], bos)
					cfg["cls_token"] = cls
				}
				if !truthy(sep) && cfg != nil {
					sep = firstOf(p["sep"], eos)
					cfg["sep_token"] = sep
				}
			case "TemplateProcessing":
				single, _ := p["single"].([]any)
				if len(single) <= 1 {
					continue
				}
				if first := specialTokenID(single[0]); first != "" {
					if cfg == nil {
						bos = first
					}
					st.add["bos"] = pyEq(first, bos) || pyEq(first, cls)
				}
				if last := specialTokenID(single[len(single)-1]); last != "" {
					if cfg == nil {
						eos = last
					} else if !pyEq(last, eos) {
						switch {
						case !slices.Contains(st.types, "eot"):
							st.types = append(st.types, "eot")
							cfg["eot_token"] = eos
						case !slices.Contains(st.types, "eom"):
							st.types = append(st.types, "eom")
							cfg["eom_token"] = eos
						}
						cfg["eos_token"], eos = last, last
					}
					st.add["eos"] = pyEq(last, eos)
				}
			}
		}
	}
	if cfg == nil {
		return nil
	}
	if tmpl, ok := cfg["chat_template"]; ok {
		st.tmpl, st.hasTmpl = tmpl, tmpl != nil
	} else {
		alt, err := sf.altChatTemplate()
		if err != nil {
			return err
		}
		st.tmpl, st.hasTmpl = alt, alt != nil
	}
	for _, typ := range st.types {
		if b, ok := cfg["add_"+typ+"_token"].(bool); ok {
			st.add[typ] = b
		}
		content, ok := tokenContent(cfg[typ+"_token"])
		if !ok {
			continue
		}
		for _, a := range added {
			if a.Content == content {
				if err := st.set(typ, json.Number(fmt.Sprint(a.ID))); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

// altChatTemplate reads chat_template.jinja (with additional_chat_templates/*.jinja as named ones), else
// chat_template.json's "chat_template"; nil when neither exists.
func (sf *sideFiles) altChatTemplate() (any, error) {
	jinja := filepath.Join(sf.dir, "chat_template.jinja")
	if data, err := readOptional(jinja); err != nil {
		return nil, err
	} else if data != nil {
		extra, _ := filepath.Glob(filepath.Join(sf.dir, "additional_chat_templates", "*.jinja"))
		if len(extra) == 0 {
			return string(data), nil
		}
		slices.Sort(extra)
		list := []any{map[string]any{"name": "default", "template": string(data)}}
		for _, p := range extra {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("vocab: %w", err)
			}
			list = append(list, map[string]any{"name": strings.TrimSuffix(filepath.Base(p), ".jinja"),
				"template": string(b)})
		}
		return list, nil
	}
	m, err := readJSONObject(filepath.Join(sf.dir, "chat_template.json"))
	if err != nil || m == nil {
		return nil, err
	}
	return m["chat_template"], nil
}

// setChatTemplate stores a template the way gguf-py's add_chat_template does: a string is the default; a list
// of {name, template} gives the "default" one and named ones (names with characters other than ASCII letters and
// digits written as "_").
func setChatTemplate(v *Vocab, t any) error {
	switch t := t.(type) {
	case string:
		v.ChatTemplate = t
	case []any:
		for _, c := range t {
			m, ok := c.(map[string]any)
			if !ok {
				return fmt.Errorf("chat_template: list entry is not an object")
			}
			name, _ := m["name"].(string)
			tmpl, ok := m["template"].(string)
			name = sanitizeName(name)
			if name == "" || !ok {
				continue
			}
			if name == "default" {
				v.ChatTemplate = tmpl
				continue
			}
			if v.NamedTemplates == nil {
				v.NamedTemplates = map[string]string{}
			}
			v.NamedTemplates[name] = tmpl
		}
	case nil:
	default:
		// gguf-py warns "Bad type for chat_template field" and ignores it.
	}
	return nil
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, s)
}

// postProcessors returns the post-processor, or the members of a Sequence post-processor.
func postProcessors(raw json.RawMessage) []map[string]any {
	m, err := decodeObject(raw)
	if err != nil {
		return nil
	}
	list, ok := m["processors"].([]any)
	if !ok {
		return []map[string]any{m}
	}
	var out []map[string]any
	for _, p := range list {
		if pm, ok := p.(map[string]any); ok {
			out = append(out, pm)
		}
	}
	return out
}

// specialTokenID returns a TemplateProcessing piece's SpecialToken id ("" for a Sequence piece).
func specialTokenID(piece any) string {
	m, _ := piece.(map[string]any)
	st, _ := m["SpecialToken"].(map[string]any)
	id, _ := st["id"].(string)
	return id
}

func cfgValue(cfg map[string]any, k string) any {
	if cfg == nil {
		return nil
	}
	return cfg[k]
}

// truthy is Python truthiness for decoded JSON values.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case string:
		return t != ""
	case bool:
		return t
	case map[string]any:
		return len(t) > 0
	case []any:
		return len(t) > 0
	case json.Number:
		return t.String() != "0"
	}
	return true
}

// pyEq compares a template token id with a tokenizer_config value as Python's == does (a dict never equals a
// string).
func pyEq(id string, v any) bool {
	s, ok := v.(string)
	return ok && s == id
}

// firstOf is processor.get(key, [def])[0] for RobertaProcessing's cls/sep ([token, id] pairs).
func firstOf(v any, def any) any {
	if l, ok := v.([]any); ok && len(l) > 0 {
		return l[0]
	}
	return def
}
