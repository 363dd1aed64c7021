package vocab

import (
	"reflect"
	"strings"
	"testing"
)

func llama3Post() map[string]any {
	return map[string]any{"type": "Sequence", "processors": []any{
		map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 1}},
				map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}}},
	}}
}

func TestLoadSpecial(t *testing.T) {
	added := []map[string]any{special(11, "<|begin_of_text|>", true), special(12, "<|end_of_text|>", true),
		special(13, "<|eot_id|>", true)}
	tok := func(post any) map[string]any {
		return bpeTokenizer(byteLevelPre(reLlama3), []string{"h e"}, added, post)
	}
	for _, tc := range []struct {
		name           string
		files          map[string]any
		special        map[string]uint32
		addBOS, addEOS *bool
		tmpl           string
		named          map[string]string
	}{
		{
			name: "tokenizer_config and template post-processor",
			files: map[string]any{"tokenizer.json": tok(llama3Post()), "tokenizer_config.json": map[string]any{
				"bos_token": "<|begin_of_text|>", "eos_token": map[string]any{"content": "<|eot_id|>"},
				"chat_template": "{{ messages }}"},
				"config.json": map[string]any{"bos_token_id": 11, "eos_token_id": []int{12, 13}, "pad_token_id": 12}},
			special: map[string]uint32{"bos": 11, "eos": 13, "padding": 12},
			addBOS:  boolPtr(true), tmpl: "{{ messages }}",
		},
		{
			name: "add flags from tokenizer_config win",
			files: map[string]any{"tokenizer.json": tok(llama3Post()), "tokenizer_config.json": map[string]any{
				"bos_token": "<|begin_of_text|>", "add_bos_token": false, "add_eos_token": true}},
			special: map[string]uint32{"bos": 11}, addBOS: boolPtr(false), addEOS: boolPtr(true),
		},
		{
			name: "config.json only",
			files: map[string]any{"tokenizer.json": tok(nil),
				"config.json": map[string]any{"bos_token_id": 11, "eos_token_id": 12, "unk_token_id": -0.5}},
			special: map[string]uint32{"bos": 11, "eos": 12},
		},
		{
			name: "trailing special other than eos becomes eos, old eos eot",
			files: map[string]any{"tokenizer.json": tok(map[string]any{"type": "TemplateProcessing",
				"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>"}},
					map[string]any{"Sequence": map[string]any{"id": "A"}},
					map[string]any{"SpecialToken": map[string]any{"id": "<|end_of_text|>"}}}}),
				"tokenizer_config.json": map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}},
			special: map[string]uint32{"bos": 11, "eos": 12, "eot": 13}, addBOS: boolPtr(true), addEOS: boolPtr(true),
		},
		{
			name: "template list and jinja ignored when tokenizer_config has one",
			files: map[string]any{"tokenizer.json": tok(nil), "chat_template.jinja": "jinja",
				"tokenizer_config.json": map[string]any{"chat_template": []any{
					map[string]any{"name": "default", "template": "D"}, map[string]any{"name": "tool use", "template": "T"},
					map[string]any{"name": "rag", "template": "R"}}}},
			special: map[string]uint32{}, tmpl: "D", named: map[string]string{"tool_use": "T", "rag": "R"},
		},
		{
			name: "chat_template.jinja with additional templates",
			files: map[string]any{"tokenizer.json": tok(nil), "tokenizer_config.json": map[string]any{},
				"chat_template.jinja": "J", "additional_chat_templates/tool.jinja": "X", "chat_template.json": map[string]any{"chat_template": "no"}},
			special: map[string]uint32{}, tmpl: "J", named: map[string]string{"tool": "X"},
		},
		{
			name: "chat_template.json",
			files: map[string]any{"tokenizer.json": tok(nil), "tokenizer_config.json": map[string]any{},
				"chat_template.json": map[string]any{"chat_template": "JS"}},
			special: map[string]uint32{}, tmpl: "JS",
		},
		{
			name:    "no tokenizer_config: no chat template",
			files:   map[string]any{"tokenizer.json": tok(nil), "chat_template.jinja": "J"},
			special: map[string]uint32{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Load(writeFiles(t, tc.files), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v.Special, tc.special) {
				t.Errorf("special %v, want %v", v.Special, tc.special)
			}
			if !reflect.DeepEqual(v.AddBOS, tc.addBOS) || !reflect.DeepEqual(v.AddEOS, tc.addEOS) {
				t.Errorf("add_bos %v add_eos %v, want %v %v", show(v.AddBOS), show(v.AddEOS), show(tc.addBOS), show(tc.addEOS))
			}
			if v.ChatTemplate != tc.tmpl || !reflect.DeepEqual(v.NamedTemplates, tc.named) {
				t.Errorf("template %q %v, want %q %v", v.ChatTemplate, v.NamedTemplates, tc.tmpl, tc.named)
			}
		})
	}
}

func show(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestLoadArchFamily(t *testing.T) {
	llamaHF := map[string]any{
		"decoder": map[string]any{"type": "Sequence"},
		"model": map[string]any{"type": "BPE", "vocab": map[string]int{"<0x00>": 0, "a": 1}, "byte_fallback": true,
			"merges": []string{}},
		"pre_tokenizer": map[string]any{"type": "ByteLevel"},
	}
	cfg := map[string]any{"add_prefix_space": true}
	for _, tc := range []struct {
		name      string
		files     map[string]any
		opts      LoadOptions
		model     string
		prefix    any
		wantError string
	}{
		{"llama from config.json", map[string]any{"tokenizer.json": llamaHF, "tokenizer_config.json": cfg,
			"config.json": map[string]any{"model_type": "llama"}}, LoadOptions{}, "llama", true, ""},
		{"no config.json: llama", map[string]any{"tokenizer.json": llamaHF, "tokenizer_config.json": cfg},
			LoadOptions{}, "llama", true, ""},
		{"qwen2 from config.json", map[string]any{"tokenizer.json": llamaHF, "tokenizer_config.json": cfg,
			"config.json": map[string]any{"model_type": "qwen2"}}, LoadOptions{}, "gpt2", nil, ""},
		{"qwen3 option wins", map[string]any{"tokenizer.json": llamaHF, "tokenizer_config.json": cfg,
			"config.json": map[string]any{"model_type": "llama"}}, LoadOptions{Arch: "qwen3"}, "gpt2", nil, ""},
		{"gemma2 spm", map[string]any{"tokenizer.model": spmBytes(), "tokenizer_config.json": cfg},
			LoadOptions{Arch: "gemma2"}, "llama", false, ""},
		{"gemma2 without tokenizer.model", map[string]any{"tokenizer.json": llamaHF, "tokenizer_config.json": cfg,
			"config.json": map[string]any{"model_type": "gemma2"}}, LoadOptions{}, "gpt2", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := LoadWith(writeFiles(t, tc.files), 0, tc.opts)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Model != tc.model || show(v.AddSpacePrefix) != tc.prefix {
				t.Fatalf("model %q add_space_prefix %v, want %q %v", v.Model, show(v.AddSpacePrefix), tc.model, tc.prefix)
			}
		})
	}
}

func TestLoadModelDir(t *testing.T) {
	tok := writeFiles(t, map[string]any{"tokenizer.json": bpeTokenizer(byteLevelPre(reQwen2), []string{"h e"}, nil, nil),
		"tokenizer_config.json": map[string]any{"add_prefix_space": true}})
	model := writeFiles(t, map[string]any{"config.json": map[string]any{"model_type": "qwen2", "eos_token_id": 7}})
	v, err := LoadWith(tok, 0, LoadOptions{ModelDir: model})
	if err != nil {
		t.Fatal(err)
	}
	if v.Special["eos"] != 7 || v.AddSpacePrefix != nil {
		t.Fatalf("special %v add_space_prefix %v: config.json not read from ModelDir", v.Special, show(v.AddSpacePrefix))
	}
	bad := writeFiles(t, map[string]any{"config.json": "{"})
	if _, err := LoadWith(tok, 0, LoadOptions{ModelDir: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad config.json: err = %v", err)
	}
}

// TestLoadConfigBytes: LoadOptions.Config (a merged config that exists on no disk) wins over ModelDir's file.
func TestLoadConfigBytes(t *testing.T) {
	tok := writeFiles(t, map[string]any{"tokenizer.json": bpeTokenizer(byteLevelPre(reQwen2), []string{"h e"}, nil, nil),
		"tokenizer_config.json": map[string]any{"add_prefix_space": true}})
	model := writeFiles(t, map[string]any{"config.json": map[string]any{"model_type": "llama", "eos_token_id": 3}})
	for _, tc := range []struct {
		name    string
		opts    LoadOptions
		wantEOS uint32
	}{
		{"bytes only", LoadOptions{Config: []byte(`{"model_type":"qwen2","eos_token_id":7}`)}, 7},
		{"bytes over ModelDir", LoadOptions{ModelDir: model, Config: []byte(`{"model_type":"qwen2","eos_token_id":7}`)}, 7},
		{"ModelDir", LoadOptions{ModelDir: model}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := LoadWith(tok, 0, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if v.Special["eos"] != tc.wantEOS {
				t.Fatalf("eos = %d, want %d", v.Special["eos"], tc.wantEOS)
			}
		})
	}
	if _, err := LoadWith(tok, 0, LoadOptions{Config: []byte("{")}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("bad config bytes: err = %v", err)
	}
}
