package export

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hubsync/hubsync/internal/fsutil"

	"github.com/hubsync/hubsync/internal/safetensors"
)

// FileDigest is what the upload needs for one output file.
type FileDigest struct {
	// Path is relative to the output directory, slash-separated.
	Path   string
	Size   int64
	SHA256 [32]byte
	// Sample is the file's first min(Size, 512) bytes, for the Hub's preupload call.
	Sample []byte
}

// Output is a model directory being written: into a temporary directory beside the final path, renamed into
// place by Commit. Files with different names may be written in parallel (WriteShard, WriteFile, CopyFile are
// safe for concurrent use); Commit and Abort must be called once every write has returned.
//
// Usage:
//
//	out, err := export.CreateOutput(dir)
//	if err != nil { return err }
//	defer out.Abort() // no-op once committed
//	if err := out.WriteShards(ctx, plan, fill); err != nil { return err }
//	... out.WriteFile("config.json", cfg); out.CopyFile(name, src) ...
//	final, err := out.Commit()
//	files := out.Files() // digests for the upload
type Output struct {
	final string
	tmp   string

	mu        sync.Mutex
	files     map[string]FileDigest
	failed    error // first shard-writing failure: the shard set is incomplete, Commit refuses
	committed bool
	aborted   bool
}

// CreateOutput starts writing the model directory finalDir. It fails if finalDir exists and is not an empty
// directory. The files are written into a temporary directory ".<base>.hubsync-tmp-<random>" in finalDir's
// parent (created if missing), so that Commit can rename it into place.
func CreateOutput(finalDir string) (*Output, error) {
	if finalDir == "" {
		return nil, errors.New("output directory: empty path")
	}
	final, err := filepath.Abs(finalDir)
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", finalDir, err)
	}
	if err := checkFinal(final); err != nil {
		return nil, err
	}
	parent, base := filepath.Split(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("output directory %s: %w", finalDir, err)
	}
	// 0777 less the umask, like any directory the user makes (os.MkdirTemp would give 0700).
	tmp, err := fsutil.MkdirTemp(parent, "."+base+".hubsync-tmp-")
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", finalDir, err)
	}
	return &Output{final: final, tmp: tmp, files: map[string]FileDigest{}}, nil
}

// checkFinal accepts a path that does not exist or is an empty directory.
func checkFinal(final string) error {
	st, err := os.Lstat(final)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output directory %s: %w", final, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s: exists and is not a directory", final)
	}
	entries, err := os.ReadDir(final)
	if err != nil {
		return fmt.Errorf("output directory %s: %w", final, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("output directory %s: exists and is not empty (%d entries, e.g. %s); refusing to overwrite",
			final, len(entries), entries[0].Name())
	}
	return nil
}

// Dir is the temporary directory the files are written into (while writing).
func (o *Output) Dir() string { return o.tmp }

// FinalDir is the directory Commit renames the output to (absolute).
func (o *Output) FinalDir() string { return o.final }

// cleanName validates a file name relative to the output directory: slash-separated, no "." or ".." element,
// not absolute, no backslash.
func cleanName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("invalid output file name %q", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return "", fmt.Errorf("invalid output file name %q", name)
		}
	}
	return path.Clean(name), nil
}

// begin checks that the output is still open and prepares the file's parent directory; it returns the file's
// absolute path.
func (o *Output) begin(name string) (string, error) {
	o.mu.Lock()
	state := o.stateErr()
	o.mu.Unlock()
	if state != nil {
		return "", state
	}
	p := filepath.Join(o.tmp, filepath.FromSlash(name))
	if dir := filepath.Dir(p); dir != o.tmp {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("output %s: %w", name, err)
		}
	}
	return p, nil
}

// stateErr reports why no more files may be written; o.mu is held.
func (o *Output) stateErr() error {
	switch {
	case o.committed:
		return fmt.Errorf("output %s: already committed", o.final)
	case o.aborted:
		return fmt.Errorf("output %s: aborted", o.final)
	}
	return nil
}

func (o *Output) record(name string, d safetensors.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[name] = FileDigest{Path: name, Size: d.Size, SHA256: d.SHA256, Sample: d.Sample}
}

// WriteShards writes every shard of plan, in order, with fill producing each tensor's bytes (see
// safetensors.FillFunc: exactly t.Size() bytes, t as planned in the shard's Layout), then, for a sharded plan,
// model.safetensors.index.json. Each shard is hashed while it is written. On error the output is marked failed:
// Commit refuses it and the caller should Abort.
func (o *Output) WriteShards(ctx context.Context, plan *ShardPlan, fill safetensors.FillFunc) error {
	for _, s := range plan.Shards {
		if err := o.WriteShard(ctx, s, fill); err != nil {
			return err
		}
	}
	idx, err := plan.IndexJSON()
	if err != nil {
		return o.fail(fmt.Errorf("output %s: %w", IndexFileName, err))
	}
	if idx != nil {
		if err := o.WriteFile(IndexFileName, idx); err != nil {
			return o.fail(err)
		}
	}
	return nil
}

// WriteShard writes one shard file (for callers that write shards in parallel; WriteShards writes them all and
// the index). On error the output is marked failed.
func (o *Output) WriteShard(ctx context.Context, s Shard, fill safetensors.FillFunc) error {
	name, err := cleanName(s.FileName)
	if err != nil {
		return o.fail(err)
	}
	if s.Layout == nil {
		return o.fail(fmt.Errorf("output %s: shard has no layout", name))
	}
	p, err := o.begin(name)
	if err != nil {
		return err
	}
	d, err := safetensors.WriteFile(ctx, p, s.Layout, fill)
	if err != nil {
		return o.fail(fmt.Errorf("output shard %s: %w", name, err))
	}
	o.record(name, d)
	return nil
}

func (o *Output) fail(err error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed == nil {
		o.failed = err
	}
	return err
}

// WriteFile writes a small file (JSON, model card) from memory; its digest is computed from data. Writing a name
// again replaces the file and its digest.
func (o *Output) WriteFile(name string, data []byte) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	p, err := o.begin(name)
	if err != nil {
		return err
	}
	err = atomicWrite(p, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("output %s: %w", name, err)
	}
	o.record(name, safetensors.Digest{
		Size:   int64(len(data)),
		SHA256: sha256.Sum256(data),
		Sample: append([]byte(nil), data[:min(len(data), safetensors.SampleSize)]...),
	})
	return nil
}

// CopyFile copies the file src (symbolic links followed, as in the HF cache) into the output as name; the
// digest is computed while copying.
func (o *Output) CopyFile(name, src string) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("output %s: %w", name, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return fmt.Errorf("output %s: %w", name, err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("output %s: source %s is not a regular file", name, src)
	}
	p, err := o.begin(name)
	if err != nil {
		return err
	}
	var d safetensors.Digest
	err = atomicWrite(p, func(w io.Writer) error {
		dw := safetensors.NewDigestWriter(w)
		_, cerr := io.Copy(dw, in)
		var derr error
		d, derr = dw.Close()
		if cerr != nil {
			return fmt.Errorf("copy from %s: %w", src, cerr)
		}
		return derr
	})
	if err != nil {
		return fmt.Errorf("output %s: %w", name, err)
	}
	o.record(name, d)
	return nil
}

// atomicWrite writes a file through a temporary file in the same directory, synced and renamed into place.
func atomicWrite(p string, write func(io.Writer) error) error {
	f, err := fsutil.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Files lists every file written so far with its digest, sorted by path.
func (o *Output) Files() []FileDigest {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]FileDigest, 0, len(o.files))
	for _, f := range o.files {
		f.Sample = append([]byte(nil), f.Sample...)
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Commit makes the output final: it syncs the temporary directory, renames it to the final path (which must
// still be absent or an empty directory) and syncs the parent directory. It refuses an output whose shard
// writing failed. It returns the final directory.
func (o *Output) Commit() (finalDir string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.stateErr(); err != nil {
		return "", err
	}
	if o.failed != nil {
		return "", fmt.Errorf("output %s: not committing after a failed write: %w", o.final, o.failed)
	}
	if err := fsutil.SyncTree(o.tmp); err != nil {
		return "", fmt.Errorf("output %s: %w", o.final, err)
	}
	if err := checkFinal(o.final); err != nil {
		return "", err
	}
	// os.Rename refuses an existing directory as the target; an empty one (allowed by CreateOutput) is removed
	// first. Remove fails rather than deleting anything if a file appeared in it meanwhile.
	if err := os.Remove(o.final); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("output directory %s: %w", o.final, err)
	}
	if err := os.Rename(o.tmp, o.final); err != nil {
		return "", fmt.Errorf("output directory %s: %w", o.final, err)
	}
	o.committed = true
	if err := fsutil.SyncDir(filepath.Dir(o.final)); err != nil {
		return o.final, fmt.Errorf("output directory %s: sync parent: %w", o.final, err)
	}
	return o.final, nil
}

// Abort removes the temporary directory and everything in it. It is safe to call more than once and after
// Commit (then it does nothing), so `defer out.Abort()` is the usual pattern.
func (o *Output) Abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.committed || o.aborted {
		return
	}
	o.aborted = true
	os.RemoveAll(o.tmp)
}

// LinkFile puts the file src into the output as name: a hard link where the file systems allow it (no copy of a
// large adapter), else a copy (CopyFile). Either way the file is synced and its digest is computed from the
// bytes in the output.
func (o *Output) LinkFile(ctx context.Context, name, src string) error {
	clean, err := cleanName(name)
	if err != nil {
		return err
	}
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("output %s: %w", clean, err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("output %s: source %s is not a regular file", clean, src)
	}
	p, err := o.begin(clean)
	if err != nil {
		return err
	}
	if err := os.Link(src, p); err != nil {
		return o.CopyFile(clean, src)
	}
	d, err := digestSynced(ctx, p)
	if err != nil {
		os.Remove(p)
		return fmt.Errorf("output %s: %w", clean, err)
	}
	o.record(clean, d)
	return nil
}

// digestSynced fsyncs the file p and hashes it (size, SHA-256, leading sample).
func digestSynced(ctx context.Context, p string) (safetensors.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return safetensors.Digest{}, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return safetensors.Digest{}, err
	}
	h := sha256.New()
	var d safetensors.Digest
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return safetensors.Digest{}, err
		}
		n, rerr := f.Read(buf)
		if n > 0 {
			if len(d.Sample) < safetensors.SampleSize {
				d.Sample = append(d.Sample, buf[:min(n, safetensors.SampleSize-len(d.Sample))]...)
			}
			h.Write(buf[:n])
			d.Size += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return safetensors.Digest{}, rerr
		}
	}
	copy(d.SHA256[:], h.Sum(nil))
	return d, nil
}
