package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// pinFixture writes a complete checkpoint with a nested DeepSpeed-style directory and returns it with its
// Check result and a copy of every file's bytes.
func pinFixture(t *testing.T) (string, Completeness, map[string][]byte) {
	t.Helper()
	dir := writeInstant(t, t.TempDir(), 100)
	writeFile(t, filepath.Join(dir, "global_step100", "zero_pp_rank_0_mp_rank_00_optim_states.pt"), bytes.Repeat([]byte("z"), 3000))
	c, err := Check(dir, CheckOptions{})
	if err != nil || !c.Complete {
		t.Fatalf("fixture: %+v %v", c, err)
	}
	want := map[string][]byte{}
	for _, f := range c.Files {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Rel)))
		if err != nil {
			t.Fatal(err)
		}
		want[f.Rel] = b
	}
	return dir, c, want
}

func checkPinned(t *testing.T, p *Pinned, want map[string][]byte) {
	t.Helper()
	if len(p.Files) != len(want) {
		t.Fatalf("pinned %d files, want %d", len(p.Files), len(want))
	}
	var total int64
	for _, f := range p.Files {
		got, err := os.ReadFile(filepath.Join(p.Dir, filepath.FromSlash(f.Rel)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[f.Rel]) || int64(len(got)) != f.Size {
			t.Errorf("%s: pinned content differs (%d bytes, want %d)", f.Rel, len(got), len(want[f.Rel]))
		}
		total += f.Size
	}
	if total != p.Bytes {
		t.Errorf("Bytes = %d, files sum to %d", p.Bytes, total)
	}
}

// linkHook replaces os.Link inside Pin.
func linkHook(fn func(oldname, newname string) error) PinOption {
	return func(c *pinConfig) { c.link = fn }
}

func TestPinHardLinksSurviveRotation(t *testing.T) {
	src, c, want := pinFixture(t)
	dst := filepath.Join(t.TempDir(), "staging", "checkpoint-100")
	p, err := Pin(context.Background(), src, dst, WithExpected(c.Files))
	if err != nil {
		t.Fatal(err)
	}
	if p.Linked != len(want) || p.Copied != 0 || p.Dir != dst {
		t.Fatalf("linked %d copied %d dir %s", p.Linked, p.Copied, p.Dir)
	}
	a, _ := os.Stat(filepath.Join(src, "adapter_model.safetensors"))
	b, _ := os.Stat(filepath.Join(dst, "adapter_model.safetensors"))
	if !os.SameFile(a, b) {
		t.Error("not a hard link")
	}
	// save_total_limit rotation.
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	checkPinned(t, p, want)
	if _, err := os.Stat(dst + ".partial"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial dir left: %v", err)
	}
}

func TestPinCopy(t *testing.T) {
	src, c, want := pinFixture(t)
	dst := filepath.Join(t.TempDir(), "pinned")
	p, err := Pin(context.Background(), src, dst, WithExpected(c.Files), WithCopy())
	if err != nil {
		t.Fatal(err)
	}
	if p.Copied != len(want) || p.Linked != 0 {
		t.Fatalf("linked %d copied %d", p.Linked, p.Copied)
	}
	a, _ := os.Stat(filepath.Join(src, "optimizer.pt"))
	b, _ := os.Stat(filepath.Join(dst, "optimizer.pt"))
	if os.SameFile(a, b) {
		t.Error("copy shares the inode")
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	checkPinned(t, p, want)
}

func TestPinFallbackToCopy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		wantLinks int // link attempts expected: EXDEV stops trying, EPERM is per file
	}{
		{"EXDEV", syscall.EXDEV, 1},
		{"EPERM", syscall.EPERM, -1},
		{"ENOTSUP", syscall.ENOTSUP, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, c, want := pinFixture(t)
			attempts := 0
			fail := linkHook(func(o, n string) error {
				attempts++
				return &os.LinkError{Op: "link", Old: o, New: n, Err: tc.err}
			})
			p, err := Pin(context.Background(), src, filepath.Join(t.TempDir(), "pinned"), WithExpected(c.Files), fail)
			if err != nil {
				t.Fatal(err)
			}
			if p.Copied != len(want) {
				t.Fatalf("copied %d of %d", p.Copied, len(want))
			}
			wantLinks := tc.wantLinks
			if wantLinks < 0 {
				wantLinks = len(want)
			}
			if attempts != wantLinks {
				t.Errorf("%d link attempts, want %d", attempts, wantLinks)
			}
			checkPinned(t, p, want)
		})
	}
}

// TestPinAcrossFilesystems uses a real second filesystem when there is one (/dev/shm is usually tmpfs).
func TestPinAcrossFilesystems(t *testing.T) {
	src, c, want := pinFixture(t)
	other, err := os.MkdirTemp("/dev/shm", "hubsync-pin-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(other)
	dst := filepath.Join(other, "pinned")
	if err := os.Link(filepath.Join(src, "optimizer.pt"), filepath.Join(other, "probe")); err == nil {
		t.Skip("/dev/shm is on the same filesystem as the temp dir")
	}
	p, err := Pin(context.Background(), src, dst, WithExpected(c.Files))
	if err != nil {
		t.Fatal(err)
	}
	if p.Copied != len(want) {
		t.Fatalf("copied %d of %d across filesystems", p.Copied, len(want))
	}
	checkPinned(t, p, want)
}

func TestPinVanishedMidPin(t *testing.T) {
	src, c, _ := pinFixture(t)
	dst := filepath.Join(t.TempDir(), "pinned")
	first := true
	rotate := linkHook(func(o, n string) error {
		if first {
			first = false
			if err := os.RemoveAll(src); err != nil { // the trainer rotates after the first file
				return err
			}
			return os.ErrNotExist
		}
		return os.Link(o, n)
	})
	_, err := Pin(context.Background(), src, dst, WithExpected(c.Files), rotate)
	if !errors.Is(err, ErrVanished) {
		t.Fatalf("err = %v, want ErrVanished", err)
	}
	if !strings.Contains(err.Error(), "save_total_limit") {
		t.Errorf("error does not explain: %v", err)
	}
	for _, p := range []string{dst, dst + ".partial"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	// Copy path too.
	src2, c2, _ := pinFixture(t)
	if err := os.Remove(filepath.Join(src2, "optimizer.pt")); err != nil {
		t.Fatal(err)
	}
	if _, err := Pin(context.Background(), src2, dst, WithExpected(c2.Files), WithCopy()); !errors.Is(err, ErrVanished) {
		t.Fatalf("copy: err = %v, want ErrVanished", err)
	}
	// The whole directory gone before pinning, no expected list.
	if _, err := Pin(context.Background(), src, dst); !errors.Is(err, ErrVanished) {
		t.Fatalf("gone: err = %v, want ErrVanished", err)
	}
}

func TestPinChangedSince(t *testing.T) {
	for _, copyMode := range []bool{false, true} {
		src, c, _ := pinFixture(t)
		f, err := os.OpenFile(filepath.Join(src, "optimizer.pt"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("more"))
		f.Close()
		opts := []PinOption{WithExpected(c.Files)}
		if copyMode {
			opts = append(opts, WithCopy())
		}
		_, err = Pin(context.Background(), src, filepath.Join(t.TempDir(), "p"), opts...)
		if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "optimizer.pt") {
			t.Fatalf("copy=%v: err = %v, want ErrChanged naming optimizer.pt", copyMode, err)
		}
	}
}

func TestPinExistingDestination(t *testing.T) {
	src, c, want := pinFixture(t)
	dst := filepath.Join(t.TempDir(), "pinned")
	writeFile(t, filepath.Join(dst, "stale"), []byte("old"))
	if _, err := Pin(context.Background(), src, dst, WithExpected(c.Files)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	// An interrupted earlier attempt's partial dir is cleared automatically.
	writeFile(t, filepath.Join(dst+".partial", "junk"), []byte("x"))
	p, err := Pin(context.Background(), src, dst, WithExpected(c.Files), WithReplace())
	if err != nil {
		t.Fatal(err)
	}
	checkPinned(t, p, want)
	if _, err := os.Stat(filepath.Join(dst, "stale")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("old staging content kept")
	}
}

func TestPinWithoutExpectedAndSymlink(t *testing.T) {
	src, _, want := pinFixture(t)
	target := filepath.Join(t.TempDir(), "outside.bin")
	writeFile(t, target, []byte("linked content"))
	if err := os.Symlink(target, filepath.Join(src, "extra.bin")); err != nil {
		t.Skip(err)
	}
	want["extra.bin"] = []byte("linked content")
	p, err := Pin(context.Background(), src, filepath.Join(t.TempDir(), "pinned"))
	if err != nil {
		t.Fatal(err)
	}
	checkPinned(t, p, want)
	st, err := os.Lstat(filepath.Join(p.Dir, "extra.bin"))
	if err != nil || !st.Mode().IsRegular() {
		t.Fatalf("symlink not pinned as a regular file: %v %v", st, err)
	}
}

func TestPinCancelled(t *testing.T) {
	src, c, _ := pinFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "pinned")
	if _, err := Pin(ctx, src, dst, WithExpected(c.Files)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(dst + ".partial"); !errors.Is(err, fs.ErrNotExist) {
		t.Error("partial dir left")
	}
}

func TestPinRejectsEscapingPaths(t *testing.T) {
	src, _, _ := pinFixture(t)
	bad := []FileInfo{{Rel: "../outside", Size: 1}}
	if _, err := Pin(context.Background(), src, filepath.Join(t.TempDir(), "p"), WithExpected(bad)); err == nil {
		t.Fatal("escaping path accepted")
	}
}

func BenchmarkPinCopy(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "checkpoint-1")
	data := bytes.Repeat([]byte{7}, 64<<20)
	writeFileB(b, filepath.Join(dir, "model.safetensors"), data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(b.TempDir(), "p", fmt.Sprint(i))
		if _, err := Pin(context.Background(), dir, dst, WithCopy()); err != nil {
			b.Fatal(err)
		}
	}
}

func writeFileB(b *testing.B, p string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPinLink pins a checkpoint of 200 small files by hard links.
func BenchmarkPinLink(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "checkpoint-1")
	for i := range 200 {
		writeFileB(b, filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte("x"))
	}
	root := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		if _, err := Pin(context.Background(), dir, filepath.Join(root, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(200*b.N)/b.Elapsed().Seconds(), "files/s")
}
