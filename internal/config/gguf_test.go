package config

import (
	"strings"
	"testing"
)

// TestValidateGGUF checks the gguf keys: types parsed (case-insensitive), publish gguf needs a type, GGUF files
// need a merge (not publish adapter) from a 16/32-bit merge (not dtype nf4 alone), gguf_path a clean folder.
func TestValidateGGUF(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(w *Watch)
		want string // "" = valid
	}{
		{"merged with types", func(w *Watch) { w.GGUF = []string{"q4_k_m", "Q8_0"} }, ""},
		{"publish gguf", func(w *Watch) { w.Publish, w.GGUF, w.GGUFPath = PublishGGUF, []string{"f16"}, "gguf" }, ""},
		{"pair keeps gguf on the 16-bit output", func(w *Watch) { w.DType, w.GGUF = "bf16,nf4", []string{"q8_0"} }, ""},
		{"unknown type", func(w *Watch) { w.GGUF = []string{"q3_k_xl"} }, "watch[0].gguf"},
		{"duplicate type", func(w *Watch) { w.GGUF = []string{"q8_0", "Q8_0"} }, "watch[0].gguf"},
		{"publish gguf without types", func(w *Watch) { w.Publish = PublishGGUF }, "no GGUF type"},
		{"adapter only", func(w *Watch) { w.Publish, w.GGUF = PublishAdapter, []string{"f16"} }, "publish is adapter"},
		{"4-bit alone", func(w *Watch) { w.DType, w.GGUF = "nf4", []string{"f16"} }, "16/32-bit"},
		{"pair with publish gguf", func(w *Watch) { w.DType, w.Publish, w.GGUF = "bf16,nf4", PublishGGUF, []string{"f16"} }, "watch[0].dtype"},
		{"bad path", func(w *Watch) { w.GGUF, w.GGUFPath = []string{"f16"}, "../x" }, "watch[0].gguf_path"},
		{"pre without gguf", func(w *Watch) { w.GGUFPre = "qwen2" }, "watch[0].gguf_pre"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			w := DefaultWatch()
			w.Dir, w.Repo = "/out", "me/m"
			tc.edit(&w)
			c.Watch = []Watch{w}
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// The keys parse from YAML.
	c, err := Parse([]byte("watch:\n  - dir: /o\n    repo: me/m\n    publish: gguf\n    gguf: [q4_k_m, q8_0]\n    gguf_path: gguf\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Watch[0]; strings.Join(w.GGUF, ",") != "q4_k_m,q8_0" || w.GGUFPath != "gguf" || w.Publish != PublishGGUF {
		t.Errorf("parsed %+v", w)
	}
}
