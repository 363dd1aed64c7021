//go:build unix

package merge

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/testmodel"
)

// Issue 14.9: a FIFO (or any non-regular file) as an input file is refused up front, naming the file, instead
// of blocking the open forever.
func TestNonRegularInputFilesRefused(t *testing.T) {
	dir := t.TempDir()
	base0, ad0 := mergeCase{base: testmodel.Tiny(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 41}}.generate(t, dir)
	for i, tc := range []struct {
		name string
		file func(base, adapter string) string
	}{
		{"adapter weights", func(_, a string) string { return filepath.Join(a, "adapter_model.safetensors") }},
		{"adapter config", func(_, a string) string { return filepath.Join(a, "adapter_config.json") }},
		{"base config", func(b, _ string) string { return filepath.Join(b, "config.json") }},
		{"base weights", func(b, _ string) string { return filepath.Join(b, "model.safetensors") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(dir, "fifo", string(rune('a'+i)))
			base, adapter := filepath.Join(root, "base"), filepath.Join(root, "adapter")
			copyDir(t, base0, base)
			copyDir(t, ad0, adapter)
			p := tc.file(base, adapter)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("test model lacks %s: %v", p, err)
			}
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			// A bound on the test, not an assertion: before the fix the open blocked forever.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err := Run(ctx, Options{Base: base, Adapter: adapter, Out: filepath.Join(root, "out", "merged"), Threads: 2})
			if err == nil || ctx.Err() != nil {
				t.Fatalf("err = %v (ctx %v), want a refusal", err, ctx.Err())
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "named pipe") {
				t.Errorf("error %q does not name %s as a named pipe", err, p)
			}
			if !IsBadInput(err) {
				t.Errorf("error is not marked as bad input: %v", err)
			}
		})
	}
}
