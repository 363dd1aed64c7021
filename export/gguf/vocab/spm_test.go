package vocab

import (
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// spmBytes is a small SentencePiece model: <unk>, <s>, </s>, two byte pieces, a user-defined and an unused
// piece, and scored pieces.
func spmBytes() []byte {
	return testmodel.SentencePieceModelBytes(
		[]string{"<unk>", "<s>", "</s>", "<0x00>", "<0x0A>", "<ud>", "<unused>", "▁hello", "▁world", "▁"},
		[]float32{0, 0, 0, 0, 0, 0, 0, -1, -2.5, -3},
		[]int32{TypeUnknown, TypeControl, TypeControl, TypeByte, TypeByte, TypeUserDefined, TypeUnused, 1, 1, 1})
}

func TestParseSentencePiece(t *testing.T) {
	m, err := ParseSentencePiece(spmBytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Pieces) != 10 || !m.AddDummyPrefix {
		t.Fatalf("%d pieces, add_dummy_prefix %v", len(m.Pieces), m.AddDummyPrefix)
	}
	if p := m.Pieces[8]; p != (Piece{"▁world", -2.5, TypeNormal}) {
		t.Errorf("piece 8 = %+v", p)
	}
	if p := m.Pieces[3]; p != (Piece{"<0x00>", 0, TypeByte}) {
		t.Errorf("piece 3 = %+v", p)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no pieces"},
		{"truncated", spmBytes()[:20], "field"},
		{"bad type", testmodel.SentencePieceModelBytes([]string{"a"}, []float32{0}, []int32{9}), "piece type 9"},
		{"not utf8", testmodel.SentencePieceModelBytes([]string{"\xff"}, []float32{0}, []int32{1}), "UTF-8"},
	} {
		if _, err := ParseSentencePiece(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadSentencePiece(t *testing.T) {
	dir := writeFiles(t, map[string]any{
		"tokenizer.model":   spmBytes(),
		"added_tokens.json": map[string]int{"<extra>": 10, "<far>": 99},
		"tokenizer_config.json": map[string]any{
			"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>",
			"added_tokens_decoder": map[string]any{
				"0":  map[string]any{"content": "<unk>", "special": true},
				"11": map[string]any{"content": "▁user▁name", "special": false},
				"12": map[string]any{"content": "<|im_end|>", "special": false},
			},
			"chat_template": "T"},
		"config.json": map[string]any{"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 40},
		// A tokenizer.json next to tokenizer.model is ignored for the token list.
		"tokenizer.json": bpeTokenizer(nil, nil, nil, nil),
	})
	v, err := Load(dir, 14)
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != "llama" || v.Pre != "default" || v.Merges != nil || len(v.Tokens) != 14 || len(v.Scores) != 14 {
		t.Fatalf("model %q pre %q merges %v, %d tokens %d scores", v.Model, v.Pre, v.Merges, len(v.Tokens), len(v.Scores))
	}
	want := []struct {
		tok   string
		score float32
		typ   int32
	}{
		{"<unk>", -1000, TypeControl}, {"<s>", 0, TypeControl}, {"</s>", 0, TypeControl}, {"<0x00>", 0, TypeByte},
		{"<0x0A>", 0, TypeByte}, {"<ud>", 0, TypeNormal}, {"<unused>", 0, TypeUnused}, {"▁hello", -1, TypeNormal},
		{"▁world", -2.5, TypeNormal}, {"▁", -3, TypeNormal}, {"<extra>", -1000, TypeUserDefined},
		{" user name", -1000, TypeUserDefined}, {"<|im_end|>", -1000, TypeControl}, {"[PAD13]", -10000, TypeUnused},
	}
	for i, w := range want {
		if v.Tokens[i] != w.tok || v.Scores[i] != w.score || v.Types[i] != w.typ {
			t.Errorf("id %d: %q %v %d, want %q %v %d", i, v.Tokens[i], v.Scores[i], v.Types[i], w.tok, w.score, w.typ)
		}
	}
	// pad 40 is out of range for 14 tokens and dropped, as gguf-py does.
	if len(v.Special) != 2 || v.Special["bos"] != 1 || v.Special["eos"] != 2 {
		t.Errorf("special %v", v.Special)
	}
	if v.AddBOS == nil || !*v.AddBOS || v.AddEOS == nil || *v.AddEOS || v.ChatTemplate != "T" {
		t.Errorf("add_bos %v add_eos %v template %q", show(v.AddBOS), show(v.AddEOS), v.ChatTemplate)
	}
	// vocab_size 0: the model's own size; smaller than the model: the tail pieces are dropped.
	if v, err := Load(dir, 0); err != nil || len(v.Tokens) != 10 {
		t.Fatalf("vocab 0: %v", err)
	}
	if v, err := Load(dir, 8); err != nil || len(v.Tokens) != 8 || v.Tokens[7] != "▁hello" {
		t.Fatalf("vocab 8: %v", err)
	}
	bad := writeFiles(t, map[string]any{"tokenizer.model": "not a protobuf at all"})
	if _, err := Load(bad, 0); err == nil || !strings.Contains(err.Error(), "tokenizer.model") {
		t.Fatalf("bad model: err = %v", err)
	}
}

func TestLoadSpacePrefix(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want any
	}{{map[string]any{}, nil}, {map[string]any{"add_prefix_space": false}, false},
		{map[string]any{"add_prefix_space": true}, true}} {
		dir := writeFiles(t, map[string]any{"tokenizer.model": spmBytes(), "tokenizer_config.json": tc.cfg})
		v, err := Load(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if show(v.AddSpacePrefix) != tc.want {
			t.Errorf("%v: add_space_prefix %v, want %v", tc.cfg, show(v.AddSpacePrefix), tc.want)
		}
	}
}

func TestLoadLlamaHF(t *testing.T) {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "<0x00>": 3, "<0xFF>": 4, "▁hi": 5, "h": 6, "i": 7,
		"▁": 8}
	tok := map[string]any{
		"added_tokens": []any{special(0, "<unk>", true), special(1, "<s>", true), special(2, "</s>", true),
			special(9, "<tool>", false), special(10, "<|eot|>", true)},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{}},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{"h i", "▁ hi"},
			"byte_fallback": true},
		"post_processor": llama3Post(),
	}
	cfg := map[string]any{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
		"additional_special_tokens": []string{"<|eot|>"}, "add_bos_token": true}
	v, err := Load(writeFiles(t, map[string]any{"tokenizer.json": tok, "tokenizer_config.json": cfg}), 13)
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != "llama" || v.Pre != "default" || len(v.Tokens) != 13 || v.Merges != nil {
		t.Fatalf("model %q pre %q, %d tokens", v.Model, v.Pre, len(v.Tokens))
	}
	wantTypes := []int32{TypeControl, TypeControl, TypeControl, TypeByte, TypeByte, TypeNormal, TypeNormal,
		TypeNormal, TypeNormal, TypeUserDefined, TypeControl, TypeUnused, TypeUnused}
	for i, w := range wantTypes {
		if v.Types[i] != w || v.Scores[i] != -1000 {
			t.Errorf("id %d %q: type %d score %v, want %d -1000", i, v.Tokens[i], v.Types[i], v.Scores[i], w)
		}
	}
	if v.Tokens[9] != "<tool>" || v.Tokens[12] != "[PAD12]" {
		t.Errorf("tokens %q", v.Tokens)
	}
	if v.Special["bos"] != 1 || v.Special["eos"] != 2 || v.Special["unknown"] != 0 {
		t.Errorf("special %v", v.Special)
	}
	if _, err := Load(writeFiles(t, map[string]any{"tokenizer.json": tok}), 10); err == nil {
		t.Error("11 tokens in vocab_size 10: no error")
	}
}
