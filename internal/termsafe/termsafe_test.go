package termsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain text", "plain text"},
		{"héllo wörld ✓", "héllo wörld ✓"},
		{"\x1b[2J\x1b[Hdone", `\x1b[2J\x1b[Hdone`},
		{"ok\rfake success", `ok\rfake success`},
		{"a\nb\tc", `a\nb\tc`},
		{"bell\x07 del\x7f nul\x00", `bell\x07 del\x7f nul\x00`},
		{"csi\u009b31m c1\u0085", `csi\u009b31m c1\u0085`},
		{"evil\u202egpj.exe", `evil\u202egpj.exe`},
		{"isolate\u2066x\u2069", `isolate\u2066x\u2069`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"\x1b]0;title\x07", `\x1b]0;title\x07`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzString: the output never holds a control character, a C1 control, a bidi override or invalid UTF-8, and
// clean input is returned unchanged.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "abc", "\x1b[31mred", "\u009b", "\xff", "\u202e", "a\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f || unsafeRune(r) {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
		if !strings.ContainsAny(s, "\\") && out == s != clean(s) {
			t.Fatalf("String(%q) = %q, clean = %v", s, out, clean(s))
		}
	})
}
