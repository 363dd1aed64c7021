package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// DownloadOptions configure Download.
type DownloadOptions struct {
	// CacheDir is the HF hub cache (default HubCacheDir: $HF_HUB_CACHE, else $HF_HOME/hub).
	CacheDir string
	// LocalDir, when set, receives plain files instead of the cache layout (metadata for resuming and skipping
	// goes to LocalDir/.cache/huggingface/download/).
	LocalDir string
	// Progress receives downloading events (never concurrently).
	Progress func(ProgressEvent)
	// Offline (HF_HUB_OFFLINE=1) resolves the revision in the cache only and never touches the network: the
	// cached snapshot is returned, or an error matching ErrNotCached at once. LocalDir is refused offline.
	Offline bool
	// Files, when set, are the only repo paths downloaded (like `hf download REPO FILE...`); a missing one is an
	// error.
	Files []string
	// Include and Exclude are glob patterns (MatchGlob) on the repo path: a file is downloaded when it matches
	// some Include pattern (or there are none) and no Exclude pattern.
	Include, Exclude []string
	// DisableXet downloads Xet-stored files over the plain /resolve/ redirect too (HF_HUB_DISABLE_XET=1, see
	// XetDisabledFromEnv). By default a file whose /resolve/ answer offers Xet is reconstructed from the CAS.
	DisableXet bool
}

// SplitRepoRevision splits "owner/name@REV" (a base or repo given with a revision, like huggingface_hub's
// repo_id plus revision) into the repo id and the revision; without "@" the revision is "".
func SplitRepoRevision(spec string) (repo, revision string) {
	repo, revision, _ = strings.Cut(spec, "@")
	return repo, revision
}

// OfflineFromEnv reports whether huggingface_hub's offline switch HF_HUB_OFFLINE is set to a true value
// (1, ON, YES, TRUE, any case).
func OfflineFromEnv(getenv Getenv) bool { return getenv.Bool("HF_HUB_OFFLINE") }

// downloadOffline serves Download from the cache alone (DownloadOptions.Offline).
func downloadOffline(repo, revision string, opts DownloadOptions) (string, error) {
	if opts.LocalDir != "" {
		return "", fmt.Errorf("download %s@%s: offline mode (HF_HUB_OFFLINE) serves the HF cache only; a local dir needs the network", repo, revision)
	}
	snap, err := ResolveCachedSnapshot(opts.CacheDir, repo, revision)
	if err != nil {
		return "", fmt.Errorf("download %s@%s in offline mode (HF_HUB_OFFLINE is set; the network is not used): %w", repo, revision, err)
	}
	for _, f := range opts.Files {
		if _, err := os.Stat(filepath.Join(snap, filepath.FromSlash(f))); err != nil {
			return "", fmt.Errorf("download %s@%s in offline mode: %s is not in the cached snapshot %s", repo, revision, f, snap)
		}
	}
	return snap, nil
}

// filterDownload keeps the files that opts.Files, Include and Exclude select; a named file that the
// revision lacks is an error.
func filterDownload(files []TreeEntry, opts DownloadOptions) ([]TreeEntry, error) {
	for _, p := range append(append([]string(nil), opts.Include...), opts.Exclude...) {
		if err := ValidateGlob(p); err != nil {
			return nil, err
		}
	}
	var named map[string]bool
	if len(opts.Files) > 0 {
		named = map[string]bool{}
		for _, f := range opts.Files {
			named[strings.TrimPrefix(f, "/")] = false
		}
	}
	var out []TreeEntry
	for _, e := range files {
		if named != nil {
			if _, ok := named[e.Path]; !ok {
				continue
			}
			named[e.Path] = true
		}
		keep := len(opts.Include) == 0
		for _, p := range opts.Include {
			if MatchGlob(p, e.Path) {
				keep = true
				break
			}
		}
		for _, p := range opts.Exclude {
			if MatchGlob(p, e.Path) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	for _, f := range opts.Files {
		if !named[strings.TrimPrefix(f, "/")] {
			return nil, fmt.Errorf("%s: %w", f, ErrEntryNotFound)
		}
	}
	return out, nil
}

// RepoCacheDir returns the cache directory of a model repo: cacheDir/models--owner--name.
func RepoCacheDir(cacheDir, repo string) string {
	return filepath.Join(cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// Download fetches every file of repo at revision and returns the directory holding them: the snapshot
// directory cacheDir/models--owner--name/snapshots/<commit> (files are relative symlinks into blobs/, and
// refs/<revision> records the commit), or LocalDir. Partial blobs (blobs/<etag>.incomplete) are resumed with
// Range requests; every file's size and hash (sha256 for LFS files, the git blob sha1 otherwise) is checked before
// it is moved into place. Redirects are followed by the client, dropping the token when the host changes.
func (c *Client) Download(ctx context.Context, repo, revision string, opts DownloadOptions) (string, error) {
	if err := validRepoID(repo); err != nil {
		return "", err
	}
	revision = revisionOrDefault(revision)
	if opts.Offline {
		return downloadOffline(repo, revision, opts)
	}
	commit, err := c.RevisionHead(ctx, repo, revision)
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w", repo, revision, err)
	}
	if !isHex(commit, 40) {
		return "", fmt.Errorf("download %s@%s: the Hub resolved the revision to %q, not a commit id", repo, revision, truncate(commit, 60))
	}
	entries, err := c.ListTree(ctx, repo, commit, "", true)
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w", repo, revision, err)
	}
	var files []TreeEntry
	for _, e := range entries {
		if e.Type == "file" {
			files = append(files, e)
		}
	}
	if files, err = filterDownload(files, opts); err != nil {
		return "", fmt.Errorf("download %s@%s: %w", repo, revision, err)
	}
	sink := newProgressSink(opts.Progress)
	if opts.LocalDir != "" {
		return opts.LocalDir, c.downloadToLocalDir(ctx, repo, commit, files, opts.LocalDir, !opts.DisableXet, sink)
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		cacheDir = HubCacheDir(nil)
	}
	return c.downloadToCache(ctx, repo, revision, commit, files, cacheDir, !opts.DisableXet, sink)
}

func (c *Client) downloadToCache(ctx context.Context, repo, revision, commit string, files []TreeEntry, cacheDir string,
	xetOK bool, sink *progressSink) (string, error) {
	repoDir := RepoCacheDir(cacheDir, repo)
	blobs := filepath.Join(repoDir, "blobs")
	snap := filepath.Join(repoDir, "snapshots", commit)
	for _, d := range []string{blobs, snap, filepath.Join(repoDir, "refs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("download: %w", err)
		}
	}
	removeOwnCacheDirTag(cacheDir)
	// One download per blob; every path sharing it gets a link.
	byETag := map[string][]TreeEntry{}
	var order []string
	for _, e := range files {
		et := e.ETag()
		if _, ok := byETag[et]; !ok {
			order = append(order, et)
		}
		byETag[et] = append(byETag[et], e)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelFiles)
	for _, et := range order {
		group := byETag[et]
		g.Go(func() error {
			blob := filepath.Join(blobs, et)
			if _, err := os.Stat(blob); errors.Is(err, fs.ErrNotExist) {
				if err := c.fetchVerified(gctx, repo, commit, &group[0], blob, blob+".incomplete", xetOK, sink); err != nil {
					return err
				}
			} else if err != nil {
				return fmt.Errorf("download: %w", err)
			}
			for _, e := range group {
				if err := linkSnapshot(snap, e.Path, blob); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if revision != commit {
		ref := filepath.Join(repoDir, "refs", filepath.FromSlash(revision))
		if !strings.HasPrefix(ref, filepath.Join(repoDir, "refs")+string(filepath.Separator)) {
			return "", fmt.Errorf("download: revision %q is not a valid ref name", revision)
		}
		if err := writeFileAtomic(ref, []byte(commit), 0o644); err != nil {
			return "", fmt.Errorf("download: writing ref: %w", err)
		}
	}
	return snap, nil
}

// ownCacheDirTag is the CACHEDIR.TAG earlier hubsync versions wrote at the root of the hub cache.
const ownCacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by hubsync.\n"

// removeOwnCacheDirTag deletes the CACHEDIR.TAG an earlier hubsync wrote at the cache root (and only that one).
// huggingface_hub writes none there, and its scan_cache_dir reports every plain file at the root as a corrupted
// repository, so the cache holds nothing but what huggingface_hub itself writes.
func removeOwnCacheDirTag(cacheDir string) {
	p := filepath.Join(cacheDir, "CACHEDIR.TAG")
	if b, err := os.ReadFile(p); err == nil && string(b) == ownCacheDirTag {
		_ = os.Remove(p)
	}
}

// linkSnapshot makes snap/<path> a relative symlink to blob (a copy where symlinks are not possible).
func linkSnapshot(snap, repoPath, blob string) error {
	p, err := cleanRepoPath(repoPath)
	if err != nil {
		return err
	}
	dst := filepath.Join(snap, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(dst), blob)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if cur, err := os.Readlink(dst); err == nil && cur == rel {
		return nil
	}
	_ = os.Remove(dst)
	if err := os.Symlink(rel, dst); err != nil {
		if cerr := copyFile(blob, dst); cerr != nil {
			return fmt.Errorf("download: linking %s: %v; copying: %w", p, err, cerr)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// localMeta is the local-dir metadata (huggingface_hub's format: commit, etag, unix time on three lines).
func localMetaPath(localDir, repoPath string) string {
	return filepath.Join(localDir, ".cache", "huggingface", "download", filepath.FromSlash(repoPath)+".metadata")
}

func (c *Client) downloadToLocalDir(ctx context.Context, repo, commit string, files []TreeEntry, localDir string, xetOK bool, sink *progressSink) error {
	meta := filepath.Join(localDir, ".cache", "huggingface")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	_ = os.WriteFile(filepath.Join(meta, ".gitignore"), []byte("*\n"), 0o644)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelFiles)
	for i := range files {
		e := &files[i]
		g.Go(func() error {
			p, err := cleanRepoPath(e.Path)
			if err != nil {
				return err
			}
			dst := filepath.Join(localDir, filepath.FromSlash(p))
			mp := localMetaPath(localDir, p)
			if b, err := os.ReadFile(mp); err == nil {
				lines := strings.Split(string(b), "\n")
				if st, serr := os.Stat(dst); serr == nil && len(lines) >= 2 && lines[1] == e.ETag() && st.Size() == entrySize(e) {
					return nil
				}
			}
			if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
				return fmt.Errorf("download: %w", err)
			}
			incomplete := strings.TrimSuffix(mp, ".metadata") + ".incomplete"
			if err := c.fetchVerified(gctx, repo, commit, e, dst, incomplete, xetOK, sink); err != nil {
				return err
			}
			return writeFileAtomic(mp, []byte(commit+"\n"+e.ETag()+"\n"+strconv.FormatInt(time.Now().Unix(), 10)+"\n"), 0o644)
		})
	}
	return g.Wait()
}

func entrySize(e *TreeEntry) int64 {
	if e.IsLFS() {
		return e.LFS.Size
	}
	return e.Size
}

// newEntryHash returns the hash a file's content must match: sha256 for LFS files, else the git blob sha1.
func newEntryHash(e *TreeEntry) (hash.Hash, string) {
	if e.IsLFS() {
		return sha256.New(), e.LFS.OID
	}
	h := sha1.New()
	h.Write([]byte("blob " + strconv.FormatInt(e.Size, 10) + "\x00"))
	return h, e.OID
}

// fetchVerified downloads one file into incomplete (resuming what is there), checks size and hash, and moves it
// to dst. With xetOK, an LFS file that the Hub offers through Xet is reconstructed from the CAS first (fetchXet);
// the plain path takes over after a Xet failure.
func (c *Client) fetchVerified(ctx context.Context, repo, commit string, e *TreeEntry, dst, incomplete string, xetOK bool, sink *progressSink) error {
	size := entrySize(e)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	f, err := os.OpenFile(incomplete, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer f.Close()
	h, want := newEntryHash(e)
	// Hash what an earlier run left, then continue from there.
	have, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("download: reading %s: %w", incomplete, err)
	}
	if have > size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		have = 0
		h, _ = newEntryHash(e)
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return err
	}
	prog := sink.file(PhaseDownloading, e.Path, size)
	prog.add(have)
	u := c.endpoint + "/" + repo + "/resolve/" + commit + "/" + escapePath(e.Path)
	// Every request for the file counts against one bounded total, restarts from zero included; failures in a
	// row without progress have their own, smaller bound; a server that ignores (or refuses) Range gets one
	// restart from zero.
	if xetOK && e.IsLFS() && have < size {
		n, used, err := c.fetchXet(ctx, u, have, size, f, h, prog)
		switch {
		case used && err == nil:
			have += n
		case used || err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("download %s: %w", e.Path, ctx.Err())
			}
			c.log.Info().Str("file", e.Path).Err(err).Msg("Xet download failed; continuing over plain HTTP")
			// Drop what the Xet attempt wrote: the plain path resumes from where the file was before it.
			prog.add(-n)
			if h, err = rewindTo(f, have, e); err != nil {
				return fmt.Errorf("download: %w", err)
			}
		}
	}
	requests, failures, restarts := 0, 0, 0
	maxRequests := maxFileRequests(c.retry.MaxAttempts)
	for have < size {
		if requests >= maxRequests {
			return fmt.Errorf("download %s: gave up after %d requests (%d of %d bytes)", e.Path, requests, have, size)
		}
		requests++
		n, restart, err := c.fetchRange(ctx, u, have, size, f, h, prog)
		have += n
		if restart {
			restarts++
			if restarts > 1 {
				return fmt.Errorf("download %s: the server does not honour Range requests (answered a resume at byte %d from the start again); gave up after %d requests", e.Path, have, requests)
			}
			c.log.Info().Str("file", e.Path).Int64("at", have).Msg("the server ignored the Range request; restarting the file from zero")
			if err := f.Truncate(0); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			prog.add(-have)
			have = 0
			h, _ = newEntryHash(e)
			continue
		}
		if err == nil {
			continue
		}
		if n > 0 {
			failures = 0 // progress was made: the in-a-row count starts again (the total does not)
		}
		failures++
		var ne *networkError
		if !errors.As(err, &ne) || ctx.Err() != nil || failures >= c.retry.MaxAttempts {
			return fmt.Errorf("download %s: %w", e.Path, err)
		}
		wait := c.retry.backoff(failures)
		c.log.Info().Str("file", e.Path).Int64("at", have).Int("request", requests+1).Int("requests", maxRequests).
			Msgf("download interrupted; resuming in %s (request %d/%d): %s", roundWait(wait), requests+1, maxRequests, retryReason(err))
		if err := c.retry.Sleep(ctx, wait); err != nil {
			return err
		}
	}
	if have != size {
		return fmt.Errorf("download %s: got %d bytes, want %d", e.Path, have, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		_ = f.Close()
		_ = os.Remove(incomplete)
		return fmt.Errorf("download %s: content hash %s does not match the expected %s; removed the partial file", e.Path, got, want)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(incomplete, dst); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return nil
}

// rewindTo truncates f to n bytes and returns a fresh content hash over them, with f positioned at n.
func rewindTo(f *os.File, n int64, e *TreeEntry) (hash.Hash, error) {
	if err := f.Truncate(n); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h, _ := newEntryHash(e)
	if _, err := io.CopyN(h, f, n); err != nil {
		return nil, err
	}
	return h, nil
}

// maxFileRequests bounds the requests for one file: a few times the per-request attempts, so a flaky but moving
// transfer finishes and a server that cuts every answer short does not loop forever.
func maxFileRequests(attempts int) int { return 4 * attempts }

// fetchRange GETs u from offset, appending to f and h. restart: the server ignored the Range (200) or refused it
// (416), so the caller must start over from zero.
func (c *Client) fetchRange(ctx context.Context, u string, offset, size int64, f *os.File, h hash.Hash, prog *fileProgress) (int64, bool, error) {
	headers := map[string]string{"Accept-Encoding": "identity"}
	if offset > 0 {
		headers["Range"] = "bytes=" + strconv.FormatInt(offset, 10) + "-"
	}
	r, err := c.send(ctx, call{method: "GET", url: u, auth: true, headers: headers, stream: true, redirects: true,
		ok: []int{http.StatusRequestedRangeNotSatisfiable}})
	if err != nil {
		return 0, false, err // already retried by send
	}
	defer r.raw.Close()
	switch {
	case r.status == http.StatusRequestedRangeNotSatisfiable && offset == 0:
		return 0, false, newHTTPError("GET", u, r.status, r.header, nil, "")
	case r.status == http.StatusRequestedRangeNotSatisfiable:
		return 0, true, nil
	case offset > 0 && r.status == http.StatusOK:
		return 0, true, nil
	case offset > 0 && r.status == http.StatusPartialContent:
		start, ok := contentRangeStart(r.header.Get("Content-Range"))
		if !ok || start != offset {
			return 0, true, nil
		}
	}
	n, err := io.Copy(io.MultiWriter(f, h, progressWriter{prog}), io.LimitReader(r.raw, size-offset))
	if err != nil {
		return n, false, &networkError{fmt.Errorf("reading %s: %w", redactURL(u), err)}
	}
	if n < size-offset {
		return n, false, &networkError{fmt.Errorf("reading %s: %w", redactURL(u), io.ErrUnexpectedEOF)}
	}
	return n, false, nil
}

type progressWriter struct{ p *fileProgress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.add(int64(len(b)))
	return len(b), nil
}

// contentRangeStart parses "bytes a-b/total" and returns a.
func contentRangeStart(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// ResolveCachedSnapshot returns the snapshot directory of repo at revision in the HF cache at cacheDir ("" =
// HubCacheDir): for a commit id, snapshots/<commit> if present; otherwise the commit recorded in refs/<revision>.
// When nothing is cached it returns a *NotCachedError (errors.Is(err, ErrNotCached)).
func ResolveCachedSnapshot(cacheDir, repo, revision string) (string, error) {
	if err := validRepoID(repo); err != nil {
		return "", err
	}
	if cacheDir == "" {
		cacheDir = HubCacheDir(nil)
	}
	revision = revisionOrDefault(revision)
	repoDir := RepoCacheDir(cacheDir, repo)
	isDir := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.IsDir()
	}
	if isHex(revision, 40) {
		p := filepath.Join(repoDir, "snapshots", revision)
		if isDir(p) {
			return p, nil
		}
		return "", &NotCachedError{Repo: repo, Revision: revision, Path: p}
	}
	refsDir := filepath.Join(repoDir, "refs")
	ref := filepath.Join(refsDir, filepath.FromSlash(revision))
	if !strings.HasPrefix(ref, refsDir+string(filepath.Separator)) {
		return "", fmt.Errorf("invalid revision %q", revision)
	}
	b, err := os.ReadFile(ref)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &NotCachedError{Repo: repo, Revision: revision, Path: ref}
	}
	if err != nil {
		return "", fmt.Errorf("reading cached ref: %w", err)
	}
	commit := strings.TrimSpace(string(b))
	if !isHex(commit, 40) {
		return "", fmt.Errorf("cached ref %s holds %q, not a commit id", ref, truncate(commit, 60))
	}
	p := filepath.Join(repoDir, "snapshots", commit)
	if !isDir(p) {
		return "", &NotCachedError{Repo: repo, Revision: revision, Path: p}
	}
	return p, nil
}
