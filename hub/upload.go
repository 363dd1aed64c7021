package hub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// UploadFile is one local file to commit. When the caller already knows the file's sha256 (the merge writer
// computes it while writing), it passes SHA256 and Size (and Sample, the first min(512, Size) bytes) and the
// client does not read the file to hash it; otherwise the client hashes it, streaming.
//
// A file that is not on disk (a merged shard produced on demand) gives Content instead of LocalPath, with SHA256
// and Size (required then); its bytes are produced again for every part sent.
type UploadFile struct {
	PathInRepo string      // path inside the repo ("a/b.safetensors")
	LocalPath  string      // file on disk
	Content    ContentFunc // the file's bytes when it is not on disk (LocalPath is then only a name for errors)
	SHA256     string      // lowercase hex, optional
	Size       int64       // required with SHA256
	Sample     []byte      // first min(512, Size) bytes, optional (read from the file when nil)
}

// CommitOptions configure Commit.
type CommitOptions struct {
	// Revision is the branch to commit to (default "main"). With CreatePR, the branch the PR targets.
	Revision string
	// Summary is the commit title (default "Upload files with hubsync").
	Summary string
	// Description is the commit body. The client appends a "Hubsync-Commit: <id>" trailer to it, which lets it
	// recognise its own commit after a lost response.
	Description string
	// CommitID is the trailer id (default: a random one per call). A caller that must recognise its commit
	// across process restarts (the daemon: "was this job's commit applied before we died?") passes an id
	// derived from the job and searches the branch's commits for CommitTrailer + ": " + CommitID before
	// committing again. Letters, digits, '-', '_' and '.' only, at most 64 characters.
	CommitID string
	// CreatePR opens a pull request instead of committing to Revision.
	CreatePR bool
	// ParentCommit is the head the commit must apply on ("" = read the branch head first). A 412 answer means
	// the branch moved: the client re-reads the head and commits again.
	ParentCommit string
	// DeleteFiles and DeleteFolders are removed in the same commit.
	DeleteFiles   []string
	DeleteFolders []string
	// Progress receives hashing/uploading/committing events (never concurrently).
	Progress func(ProgressEvent)
}

// CommitResult is what Commit did.
type CommitResult struct {
	CommitOID      string
	CommitURL      string
	PullRequestURL string
	// NoOp: nothing to change (every file already on the Hub with the same content); CommitOID is the head.
	NoOp bool
	// Recovered: the commit's answer was lost and the commit was found on the branch by its id.
	Recovered bool
	// Uploaded counts LFS objects whose bytes were sent; Unchanged counts files dropped because the Hub already
	// has the same content at that path; Ignored lists paths the Hub's .gitignore excludes.
	Uploaded  int
	Unchanged int
	Ignored   []string
}

// preparedFile is an UploadFile with everything the protocol needs.
type preparedFile struct {
	UploadFile
	path      string // cleaned path in repo
	sha256    string
	size      int64
	sample    []byte
	mode      string // lfs | regular (from preupload)
	ignore    bool
	remoteOID string
}

// sampleSize is how many leading bytes preupload wants.
const sampleSize = 512

// maxInlineFile bounds a file the Hub asks to receive inline (base64 in the commit body).
const maxInlineFile = 64 << 20

// Commit uploads files (LFS objects through the batch API, resumable with the journal) and commits them with the
// deletions as one commit on repo@Revision (or one pull request). Files the Hub already has with the same
// content are left out; if nothing changes, no commit is made (NoOp). One call never makes two commits, even
// when a commit's answer is lost.
func (c *Client) Commit(ctx context.Context, repo string, files []UploadFile, opts CommitOptions) (*CommitResult, error) {
	if err := validRepoID(repo); err != nil {
		return nil, err
	}
	if err := validCommitID(opts.CommitID); err != nil {
		return nil, err
	}
	revision := revisionOrDefault(opts.Revision)
	sink := newProgressSink(opts.Progress)
	prepared, err := c.prepareFiles(ctx, files, sink)
	if err != nil {
		return nil, err
	}
	dels, err := cleanDeletions(opts.DeleteFiles, opts.DeleteFolders)
	if err != nil {
		return nil, err
	}

	parent := opts.ParentCommit
	if parent == "" {
		head, err := c.RevisionHead(ctx, repo, revision)
		switch {
		case err == nil:
			parent = head
		case errors.Is(err, ErrRevisionNotFound) && revision == "main" && !opts.CreatePR:
			parent = "" // an empty repository: no head yet
		default:
			return nil, fmt.Errorf("commit to %s@%s: reading the branch head: %w", repo, revision, err)
		}
	}

	res := &CommitResult{}
	if len(prepared) > 0 {
		gitIgnore := ""
		for _, f := range prepared {
			if f.path == ".gitignore" && f.size <= maxInlineFile {
				b, err := f.readWhole(ctx)
				if err != nil {
					return nil, err
				}
				gitIgnore = string(b)
			}
		}
		if err := c.preupload(ctx, repo, revision, opts.CreatePR, prepared, gitIgnore); err != nil {
			return nil, err
		}
	}
	var keep []*preparedFile
	var lfs []*preparedFile
	for _, f := range prepared {
		if f.ignore {
			res.Ignored = append(res.Ignored, f.path)
			continue
		}
		same, err := f.sameAsRemote(ctx)
		if err != nil {
			return nil, err
		}
		if same {
			res.Unchanged++
			continue
		}
		if f.mode == "regular" && f.size > maxInlineFile {
			return nil, fmt.Errorf("%s: the Hub wants this %d-byte file inline (regular mode); refusing to send more than %d bytes inline",
				f.LocalPath, f.size, maxInlineFile)
		}
		keep = append(keep, f)
		if f.mode == "lfs" {
			lfs = append(lfs, f)
		}
	}
	if len(keep) == 0 && len(dels) == 0 {
		res.NoOp = true
		res.CommitOID = parent
		if parent != "" {
			res.CommitURL = c.endpoint + "/" + repo + "/commit/" + parent
		}
		c.log.Info().Str("repo", repo).Str("revision", revision).Msg("nothing to commit: the Hub already has every file")
		return res, nil
	}
	uploaded, err := c.uploadObjects(ctx, repo, revision, opts.CreatePR, lfs, sink)
	if err != nil {
		return nil, err
	}
	res.Uploaded = uploaded
	cr, err := c.commit(ctx, repo, revision, parent, keep, dels, opts, sink)
	if err != nil {
		return nil, err
	}
	res.CommitOID, res.CommitURL, res.PullRequestURL, res.Recovered = cr.CommitOID, cr.CommitURL, cr.PullRequestURL, cr.Recovered
	return res, nil
}

// sameAsRemote reports whether the Hub already has this content at this path (preupload oid).
func (f *preparedFile) sameAsRemote(ctx context.Context) (bool, error) {
	if f.remoteOID == "" {
		return false, nil
	}
	if f.mode == "lfs" {
		return strings.EqualFold(f.remoteOID, f.sha256), nil
	}
	if f.size > maxInlineFile {
		return false, nil
	}
	if f.Content != nil {
		b, err := f.readWhole(ctx)
		if err != nil {
			return false, err
		}
		h := sha1.New()
		h.Write([]byte("blob " + strconv.FormatInt(f.size, 10) + "\x00"))
		h.Write(b)
		return strings.EqualFold(f.remoteOID, hex.EncodeToString(h.Sum(nil))), nil
	}
	oid, err := gitBlobSHA1(f.LocalPath, f.size)
	if err != nil {
		return false, err
	}
	return strings.EqualFold(f.remoteOID, oid), nil
}

// gitBlobSHA1 returns git's blob id of the file: sha1("blob <size>\0" + content).
func gitBlobSHA1(path string, size int64) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha1.New()
	h.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	n, err := io.Copy(h, fh)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if n != size {
		return "", fmt.Errorf("%s changed while uploading: %d bytes, expected %d", path, n, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prepareFiles validates paths and finds each file's size, sha256 and sample, hashing (in parallel) only the
// files whose digest the caller did not give.
func (c *Client) prepareFiles(ctx context.Context, files []UploadFile, sink *progressSink) ([]*preparedFile, error) {
	out := make([]*preparedFile, len(files))
	seen := map[string]string{}
	for i, f := range files {
		p, err := cleanRepoPath(f.PathInRepo)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[p]; dup {
			return nil, fmt.Errorf("path %q given twice (%s and %s)", p, prev, f.LocalPath)
		}
		seen[p] = f.LocalPath
		if f.Content != nil && f.SHA256 == "" {
			return nil, fmt.Errorf("%s: a file given by its content needs its sha256 and size", p)
		}
		if f.SHA256 != "" {
			f.SHA256 = strings.ToLower(f.SHA256)
			if !isHex(f.SHA256, 64) {
				return nil, fmt.Errorf("%s: invalid sha256 %q", f.LocalPath, f.SHA256)
			}
			if f.Size < 0 {
				return nil, fmt.Errorf("%s: negative size", f.LocalPath)
			}
			if f.Sample != nil && int64(len(f.Sample)) != min(f.Size, sampleSize) {
				return nil, fmt.Errorf("%s: sample has %d bytes, want min(512, size)=%d", f.LocalPath, len(f.Sample), min(f.Size, sampleSize))
			}
		}
		out[i] = &preparedFile{UploadFile: f, path: p}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelFiles)
	for _, f := range out {
		g.Go(func() error { return f.prepare(gctx, sink) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// prepare fills sha256, size and sample.
func (f *preparedFile) prepare(ctx context.Context, sink *progressSink) error {
	if f.Content != nil {
		f.sha256, f.size = f.SHA256, f.Size
		if f.Sample != nil {
			f.sample = f.Sample
			return nil
		}
		var b bytes.Buffer
		if err := f.Content(ctx, 0, min(f.size, sampleSize), &b); err != nil {
			return fmt.Errorf("upload: producing %s: %w", f.path, err)
		}
		f.sample = b.Bytes()
		return nil
	}
	st, err := os.Stat(f.LocalPath)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("upload: %s is not a regular file", f.LocalPath)
	}
	if f.SHA256 != "" {
		if st.Size() != f.Size {
			return fmt.Errorf("upload: %s has %d bytes, the caller said %d", f.LocalPath, st.Size(), f.Size)
		}
		f.sha256, f.size = f.SHA256, f.Size
		if f.Sample != nil {
			f.sample = f.Sample
			return nil
		}
		fh, err := os.Open(f.LocalPath)
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		defer fh.Close()
		f.sample = make([]byte, min(f.size, sampleSize))
		if _, err := io.ReadFull(fh, f.sample); err != nil {
			return fmt.Errorf("upload: reading %s: %w", f.LocalPath, err)
		}
		return nil
	}
	fh, err := os.Open(f.LocalPath)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer fh.Close()
	prog := sink.file(PhaseHashing, f.path, st.Size())
	h := sha256.New()
	sample := &prefixWriter{max: sampleSize}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, rerr := fh.Read(buf)
		if m > 0 {
			h.Write(buf[:m])
			sample.Write(buf[:m])
			n += int64(m)
			prog.add(int64(m))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("upload: hashing %s: %w", f.LocalPath, rerr)
		}
	}
	if n != st.Size() {
		return fmt.Errorf("upload: %s changed while hashing (%d bytes read, %d expected)", f.LocalPath, n, st.Size())
	}
	f.sha256, f.size, f.sample = hex.EncodeToString(h.Sum(nil)), n, sample.b
	return nil
}

// prefixWriter keeps the first max bytes written to it.
type prefixWriter struct {
	b   []byte
	max int
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// deletion is a deletedFile or deletedFolder line.
type deletion struct {
	path   string
	folder bool
}

func cleanDeletions(files, folders []string) ([]deletion, error) {
	var out []deletion
	for _, p := range files {
		cp, err := cleanRepoPath(p)
		if err != nil {
			return nil, fmt.Errorf("delete: %w", err)
		}
		out = append(out, deletion{path: cp})
	}
	for _, p := range folders {
		cp, err := cleanRepoPath(strings.TrimSuffix(p, "/"))
		if err != nil {
			return nil, fmt.Errorf("delete folder: %w", err)
		}
		out = append(out, deletion{path: cp + "/", folder: true})
	}
	return out, nil
}
