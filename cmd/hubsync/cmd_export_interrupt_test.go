package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tempCancelCtx is a context that cancels itself at the first check (Done or Err) made after a file matching
// glob exists: export gguf is interrupted deterministically once its temporary file is being written.
type tempCancelCtx struct {
	glob string
	once sync.Once
	done chan struct{}
	hit  bool
	mu   sync.Mutex
}

func (c *tempCancelCtx) check() {
	if m, _ := filepath.Glob(c.glob); len(m) > 0 {
		c.once.Do(func() {
			c.mu.Lock()
			c.hit = true
			c.mu.Unlock()
			close(c.done)
		})
	}
}

func (c *tempCancelCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *tempCancelCtx) Value(any) any               { return nil }
func (c *tempCancelCtx) Done() <-chan struct{}       { c.check(); return c.done }
func (c *tempCancelCtx) Err() error {
	c.check()
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// TestExportGGUFInterrupted: `export gguf` cancelled (as SIGINT cancels main's context) while its temporary
// file is being written exits non-zero, leaves no file at --out and no temporary file beside it: for a single
// type, and for two types into a directory it created, interrupted in the second file (the finished first one
// and the directory go too).
func TestExportGGUFInterrupted(t *testing.T) {
	hubcliIsolate(t)
	f := newCkptFixture(t, 40)
	ckpt := filepath.Join(f.outputs, "checkpoint-40")
	for _, tc := range []struct {
		name, out, types string
		tmpGlob          string
	}{
		{"one type", "m-Q8_0.gguf", "q8_0", ".m-Q8_0.gguf.tmp-*"},
		{"two types", "outdir", "f16,q8_0", "outdir/.outdir-Q8_0.gguf.tmp-*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, tc.out)
			ctx := &tempCancelCtx{glob: filepath.Join(dir, tc.tmpGlob), done: make(chan struct{})}
			var stdout, stderr bytes.Buffer
			code := run(ctx, []string{"export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", out,
				"--type", tc.types}, strings.NewReader(""), &stdout, &stderr)
			ctx.mu.Lock()
			hit := ctx.hit
			ctx.mu.Unlock()
			if !hit {
				t.Fatalf("the export never wrote a temporary file matching %s (exit %d)\n%s", tc.tmpGlob, code, stderr.String())
			}
			if code == 0 {
				t.Fatalf("exit 0 after the interrupt\n%s", stdout.String())
			}
			if !strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("stderr %q does not say the export was cancelled", stderr.String())
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s exists after the interrupt (%v)", out, err)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("left behind: %s", e.Name())
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr.String()))
		})
	}
}
