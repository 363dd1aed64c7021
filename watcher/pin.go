package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hubsync/hubsync/internal/fsutil"

	"github.com/rs/zerolog"
)

// ErrVanished marks a pin that failed because a checkpoint file disappeared (typically the trainer's
// save_total_limit rotation deleting the checkpoint before it was pinned).
var ErrVanished = errors.New("checkpoint file vanished")

// ErrChanged marks a pin that failed because a checkpoint file's size differs from the one seen when the
// checkpoint was found complete.
var ErrChanged = errors.New("checkpoint file changed since it was found complete")

// Pinned is a checkpoint pinned into a staging directory.
type Pinned struct {
	// Dir is the staging directory holding the pinned files.
	Dir string
	// Files are the pinned files, sorted by Rel.
	Files []PinnedFile
	// Linked and Copied count the files hard-linked and copied.
	Linked, Copied int
	// Bytes is the files' total size.
	Bytes int64
}

// PinnedFile is one pinned file.
type PinnedFile struct {
	Rel    string // path relative to the checkpoint (and staging) directory, slash-separated
	Size   int64
	Copied bool // copied rather than hard-linked
}

// PinOption tunes Pin.
type PinOption func(*pinConfig)

type pinConfig struct {
	expected []FileInfo
	copyOnly bool
	replace  bool
	log      zerolog.Logger
	link     func(oldname, newname string) error // os.Link; tests substitute it
}

// WithExpected pins exactly these files (an Event's Files) and verifies each one's size against them. Without
// it, Pin pins every regular file it finds and verifies against its own listing taken first.
func WithExpected(files []FileInfo) PinOption {
	return func(c *pinConfig) { c.expected = files }
}

// WithCopy copies every file instead of trying hard links first.
func WithCopy() PinOption { return func(c *pinConfig) { c.copyOnly = true } }

// WithReplace removes an existing dstDir first (an earlier, interrupted pin of the same job). Without it an
// existing dstDir is an error wrapping fs.ErrExist.
func WithReplace() PinOption { return func(c *pinConfig) { c.replace = true } }

// WithPinLogger logs the fallback from hard links to copies.
func WithPinLogger(log zerolog.Logger) PinOption { return func(c *pinConfig) { c.log = log } }

// Pin snapshots the checkpoint srcDir into dstDir so that the trainer deleting srcDir (save_total_limit
// rotation) cannot take files away while they are merged and uploaded. Every file is hard-linked, preserving
// relative paths; where a hard link is impossible (another filesystem: EXDEV; fs.protected_hardlinks or a
// filesystem without links: EPERM, ENOTSUP, EMLINK) the file is copied instead, and later files go straight to
// copying after an EXDEV. Each pinned file's size is checked against the size seen when the checkpoint was found
// complete.
//
// The pin is built in dstDir+".partial" and renamed to dstDir when every file is in place and synced, so dstDir
// either holds the whole checkpoint or does not exist. A file that disappears mid-pin fails with ErrVanished, a
// file whose size changed with ErrChanged; nothing is left behind on failure. Note that a hard link shares the
// file: it protects against deletion, not against a trainer rewriting the same file in place (transformers does
// not rewrite saved checkpoints).
func Pin(ctx context.Context, srcDir, dstDir string, opts ...PinOption) (*Pinned, error) {
	cfg := pinConfig{link: os.Link}
	for _, o := range opts {
		o(&cfg)
	}
	files := cfg.expected
	if files == nil {
		var err error
		if files, err = snapshot(srcDir); err != nil {
			if isNotExist(err) {
				return nil, fmt.Errorf("pin %s: %w: %w", srcDir, ErrVanished, err)
			}
			return nil, fmt.Errorf("pin %s: %w", srcDir, err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("pin %s: no files to pin", srcDir)
	}
	if _, err := os.Lstat(dstDir); err == nil {
		if !cfg.replace {
			return nil, fmt.Errorf("pin %s: staging directory %s: %w", srcDir, dstDir, fs.ErrExist)
		}
		if err := os.RemoveAll(dstDir); err != nil {
			return nil, fmt.Errorf("pin %s: removing old staging directory: %w", srcDir, err)
		}
	}
	partial := dstDir + ".partial"
	if err := os.RemoveAll(partial); err != nil {
		return nil, fmt.Errorf("pin %s: %w", srcDir, err)
	}
	if err := os.MkdirAll(partial, 0o700); err != nil {
		return nil, fmt.Errorf("pin %s: %w", srcDir, err)
	}
	p, err := pinFiles(ctx, &cfg, srcDir, partial, files)
	if err == nil {
		err = fsutil.SyncTree(partial)
	}
	if err == nil {
		err = os.Rename(partial, dstDir)
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(dstDir))
	}
	if err != nil {
		_ = os.RemoveAll(partial)
		return nil, fmt.Errorf("pin %s into %s: %w", srcDir, dstDir, err)
	}
	p.Dir = dstDir
	return p, nil
}

func pinFiles(ctx context.Context, cfg *pinConfig, srcDir, dstDir string, files []FileInfo) (*Pinned, error) {
	p := &Pinned{Files: make([]PinnedFile, 0, len(files))}
	copyOnly := cfg.copyOnly
	logged := false
	made := map[string]bool{dstDir: true}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !filepath.IsLocal(filepath.FromSlash(f.Rel)) {
			return nil, fmt.Errorf("%q: not a path inside the checkpoint", f.Rel)
		}
		src := filepath.Join(srcDir, filepath.FromSlash(f.Rel))
		dst := filepath.Join(dstDir, filepath.FromSlash(f.Rel))
		if d := filepath.Dir(dst); !made[d] {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
			made[d] = true
		}
		st, err := os.Lstat(src)
		if err != nil {
			if isNotExist(err) {
				return nil, fmt.Errorf("%s: %w (rotated by the trainer's save_total_limit?)", f.Rel, ErrVanished)
			}
			return nil, err
		}
		copied := copyOnly || !st.Mode().IsRegular() // a symlink is pinned as a copy of its target
		if !copied {
			err := cfg.link(src, dst)
			switch {
			case err == nil:
			case isNotExist(err):
				return nil, fmt.Errorf("%s: %w (rotated by the trainer's save_total_limit?)", f.Rel, ErrVanished)
			case linkUnsupported(err):
				if !logged {
					cfg.log.Info().Err(err).Str("file", f.Rel).Msg("cannot hard-link into the staging directory; copying")
					logged = true
				}
				if errors.Is(err, syscall.EXDEV) {
					copyOnly = true // every later file is on the same two filesystems
				}
				copied = true
			default:
				return nil, fmt.Errorf("%s: %w", f.Rel, err)
			}
		}
		var size int64
		var mtime time.Time
		if copied {
			size, mtime, err = copyFile(ctx, src, dst)
			if err != nil {
				if isNotExist(err) {
					return nil, fmt.Errorf("%s: %w (rotated by the trainer's save_total_limit?)", f.Rel, ErrVanished)
				}
				return nil, fmt.Errorf("%s: %w", f.Rel, err)
			}
			p.Copied++
		} else {
			lst, err := os.Stat(dst)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Rel, err)
			}
			size, mtime = lst.Size(), lst.ModTime()
			p.Linked++
		}
		if size != f.Size {
			return nil, fmt.Errorf("%s: %w: %d bytes then, %d now", f.Rel, ErrChanged, f.Size, size)
		}
		if !f.ModTime.IsZero() && !mtime.Equal(f.ModTime) {
			return nil, fmt.Errorf("%s: %w: modified at %s, was %s", f.Rel, ErrChanged,
				mtime.Format(time.RFC3339Nano), f.ModTime.Format(time.RFC3339Nano))
		}
		p.Files = append(p.Files, PinnedFile{Rel: f.Rel, Size: size, Copied: copied})
		p.Bytes += size
	}
	return p, nil
}

// linkUnsupported reports whether a hard-link failure means "copy instead".
func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) ||
		errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EMLINK)
}

// copyChunk bounds each copy step, so cancellation is noticed during a large file.
const copyChunk = 64 << 20

// copyFile copies src to a new file dst (following a symlink at src), syncs it and returns the bytes copied and
// the source's modification time. On Linux the kernel copies (copy_file_range) without the data passing through
// this process.
func copyFile(ctx context.Context, src, dst string) (int64, time.Time, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, time.Time{}, err
	}
	if !st.Mode().IsRegular() {
		return 0, time.Time{}, fmt.Errorf("%s: not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm()|0o600)
	if err != nil {
		return 0, time.Time{}, err
	}
	var n int64
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		var m int64
		m, err = out.ReadFrom(&io.LimitedReader{R: in, N: copyChunk})
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, st.ModTime(), err
}
