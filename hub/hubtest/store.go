package hubtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// On-disk layout under the data directory:
//
//	secret                                   HMAC key of signed URLs (hex)
//	repos/<type>s/<ns>/<name>/repo.json      refs, visibility (repoState)
//	repos/<type>s/<ns>/<name>/commits/<id>.json   one commit with its flat file list
//	blobs/ab/cd/<sha1>                       contents of regular files, by git blob id
//	objects/ab/cd/<sha256>                   LFS objects, by oid
//	uploads/<uploadId>/meta.json, part-NNNNN multipart uploads in flight
//
// Every file is written to a temporary name and renamed into place, so a crash never leaves half a file.

// repoKey names a repository.
type repoKey struct {
	Type string // model, dataset or space
	NS   string
	Name string
}

// ID is "ns/name".
func (k repoKey) ID() string { return k.NS + "/" + k.Name }

// urlPrefix is the prefix of the repo's web and git URLs ("" for models, "datasets/", "spaces/").
func (k repoKey) urlPrefix() string {
	if k.Type == "model" {
		return ""
	}
	return k.Type + "s/"
}

// repoState is the mutable state of a repository (repo.json).
type repoState struct {
	ID                 string            `json:"id"`
	Type               string            `json:"type"`
	Namespace          string            `json:"namespace"`
	Name               string            `json:"name"`
	Private            bool              `json:"private"`
	Gated              string            `json:"gated,omitempty"` // "", "auto" or "manual"
	CreatedAt          time.Time         `json:"createdAt"`
	MultipartThreshold int64             `json:"lfsmultipartthresh,omitempty"`
	DefaultBranch      string            `json:"defaultBranch"`
	Branches           map[string]string `json:"branches"`
	Tags               map[string]tagRef `json:"tags"`
	PRs                map[string]string `json:"prs"`
	NextPR             int               `json:"nextPR"`
}

type tagRef struct {
	Commit  string `json:"commit"`
	Message string `json:"message,omitempty"`
}

// fileEntry is one file of a commit.
type fileEntry struct {
	OID  string   `json:"oid"`  // git blob id (of the pointer file for LFS files)
	Size int64    `json:"size"` // file size (the object's size for LFS files)
	LFS  *lfsInfo `json:"lfs,omitempty"`
}

type lfsInfo struct {
	OID         string `json:"oid"` // sha256
	Size        int64  `json:"size"`
	PointerSize int64  `json:"pointerSize"`
}

// commit is an immutable commit with the full, flat list of its files.
type commit struct {
	ID      string               `json:"id"`
	Parents []string             `json:"parents"`
	Tree    string               `json:"tree"`
	Title   string               `json:"title"`
	Message string               `json:"message"`
	Author  string               `json:"author"`
	Date    time.Time            `json:"date"`
	Files   map[string]fileEntry `json:"files"`

	once     sync.Once
	paths    []string // sorted file paths
	metaOnce sync.Once
	meta     *commitMeta
	trees    map[string]string // directory ("" = root) → git tree id
}

func (c *commit) index() {
	c.once.Do(func() {
		c.paths = make([]string, 0, len(c.Files))
		for p := range c.Files {
			c.paths = append(c.paths, p)
		}
		sort.Strings(c.paths)
		c.trees = computeTrees(c.Files)
	})
}

// listEntry is one file or directory of a listing.
type listEntry struct {
	Path string
	Dir  bool
	File fileEntry // files
	Tree string    // directories: git tree id
}

// lookup finds a file or directory ("" = root).
func (c *commit) lookup(p string) (listEntry, bool) {
	c.index()
	if f, ok := c.Files[p]; ok {
		return listEntry{Path: p, File: f}, true
	}
	if t, ok := c.trees[p]; ok {
		return listEntry{Path: p, Dir: true, Tree: t}, true
	}
	return listEntry{}, false
}

// list returns the entries under directory dir ("" = root): its children, or every descendant when
// recursive, sorted by path.
func (c *commit) list(dir string, recursive bool) []listEntry {
	c.index()
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	under := func(p string) bool {
		if !strings.HasPrefix(p, prefix) || p == dir {
			return false
		}
		return recursive || !strings.Contains(p[len(prefix):], "/")
	}
	var out []listEntry
	for _, p := range c.paths {
		if under(p) {
			out = append(out, listEntry{Path: p, File: c.Files[p]})
		}
	}
	for d, t := range c.trees {
		if d != "" && under(d) {
			out = append(out, listEntry{Path: d, Dir: true, Tree: t})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// store is the disk-backed state of the server.
type store struct {
	dir string

	mu    sync.Mutex
	repos map[repoKey]*repoHandle
}

// repoHandle guards one repository. st is nil once the repository is deleted.
type repoHandle struct {
	key repoKey
	s   *store

	mu sync.RWMutex
	st *repoState

	cmu     sync.Mutex
	commits map[string]*commit

	reachOnce sync.Once
	reach     map[string]bool // LFS objects of the commits on disk when first asked (see reachable)
}

func newStore(dir string) (*store, error) {
	for _, d := range []string{"repos", "blobs", "objects", "uploads", "tmp"} {
		sub := filepath.Join(dir, d)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		// The server's own folders are private to it whatever an older version or the umask made them.
		if err := os.Chmod(sub, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	return &store{dir: dir, repos: map[repoKey]*repoHandle{}}, nil
}

// secret returns the URL signing key, creating it on first use.
func (s *store) secret() ([]byte, error) {
	p := filepath.Join(s.dir, "secret")
	if b, err := os.ReadFile(p); err == nil {
		key, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) < 16 {
			return nil, fmt.Errorf("data dir: %s: not a hex key of at least 16 bytes", p)
		}
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := writeAtomic(p, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return key, nil
}

func (s *store) repoDir(k repoKey) string {
	return filepath.Join(s.dir, "repos", k.Type+"s", k.NS, k.Name)
}

// repo returns the handle of an existing repository, or nil.
func (s *store) repo(k repoKey) (*repoHandle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repoLocked(k)
}

func (s *store) repoLocked(k repoKey) (*repoHandle, error) {
	if h, ok := s.repos[k]; ok {
		return h, nil
	}
	b, err := os.ReadFile(filepath.Join(s.repoDir(k), "repo.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", k.ID(), err)
	}
	var st repoState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("repo %s: repo.json: %w", k.ID(), err)
	}
	h := &repoHandle{key: k, s: s, st: &st, commits: map[string]*commit{}}
	s.repos[k] = h
	return h, nil
}

// createRepo creates a repository with an initial commit holding the default .gitattributes. It returns the
// existing handle and false when the repository exists.
func (s *store) createRepo(k repoKey, private bool, threshold int64, author string, now time.Time) (*repoHandle, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, err := s.repoLocked(k); err != nil || h != nil {
		return h, false, err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, false, err
	}
	st := &repoState{
		ID: hex.EncodeToString(id), Type: k.Type, Namespace: k.NS, Name: k.Name, Private: private,
		CreatedAt: now.UTC().Truncate(time.Millisecond), MultipartThreshold: threshold, DefaultBranch: "main",
		Branches: map[string]string{}, Tags: map[string]tagRef{}, PRs: map[string]string{}, NextPR: 1,
	}
	h := &repoHandle{key: k, s: s, st: st, commits: map[string]*commit{}}
	if err := os.MkdirAll(filepath.Join(s.repoDir(k), "commits"), 0o700); err != nil {
		return nil, false, fmt.Errorf("repo %s: %w", k.ID(), err)
	}
	ga := []byte(defaultGitattributes)
	oid, err := s.putBlob(ga)
	if err != nil {
		return nil, false, err
	}
	files := map[string]fileEntry{".gitattributes": {OID: oid, Size: int64(len(ga))}}
	c, err := h.writeCommit(nil, files, "initial commit", "", author, now)
	if err != nil {
		return nil, false, err
	}
	st.Branches["main"] = c.ID
	if err := h.saveState(); err != nil {
		return nil, false, err
	}
	s.repos[k] = h
	return h, true, nil
}

// deleteRepo removes a repository; it reports false when there was none.
func (s *store) deleteRepo(k repoKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.repoLocked(k)
	if err != nil || h == nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.st = nil
	delete(s.repos, k)
	// Rename first so that the repository disappears at once, then remove the files.
	gone := filepath.Join(s.dir, "tmp", "deleted-"+randomHex(8))
	if err := os.Rename(s.repoDir(k), gone); err != nil {
		return true, fmt.Errorf("repo %s: %w", k.ID(), err)
	}
	return true, os.RemoveAll(gone)
}

// saveState writes repo.json; the caller holds h.mu.
func (h *repoHandle) saveState() error {
	b, err := json.MarshalIndent(h.st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(h.s.repoDir(h.key), "repo.json"), b, 0o600)
}

// commit loads a commit of this repository, or returns nil when there is none with that id.
func (h *repoHandle) commit(id string) (*commit, error) {
	if !isHex(id, 40, 40) {
		return nil, nil
	}
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if c, ok := h.commits[id]; ok {
		return c, nil
	}
	b, err := os.ReadFile(filepath.Join(h.s.repoDir(h.key), "commits", id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repo %s: commit %s: %w", h.key.ID(), id, err)
	}
	c := &commit{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("repo %s: commit %s: %w", h.key.ID(), id, err)
	}
	h.commits[id] = c
	return c, nil
}

// writeCommit creates and stores a commit whose parent is parent (nil for a root commit).
func (h *repoHandle) writeCommit(parent *commit, files map[string]fileEntry, title, description, author string, now time.Time) (*commit, error) {
	var parents []string
	if parent != nil {
		parents = []string{parent.ID}
	}
	return h.writeCommitParents(parents, files, title, description, author, now)
}

// writeCommitParents creates and stores a commit with the given parents (first parent first).
func (h *repoHandle) writeCommitParents(parents []string, files map[string]fileEntry, title, description, author string, now time.Time) (*commit, error) {
	message := title
	if description != "" {
		message += "\n\n" + description
	}
	c := &commit{Title: title, Message: message, Author: author, Date: now.UTC().Truncate(time.Second), Files: files, Parents: parents}
	c.index()
	c.Tree = c.trees[""]
	c.ID = commitOID(c.Tree, c.Parents, author, c.Date, message)
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(h.s.repoDir(h.key), "commits", c.ID+".json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("repo %s: %w", h.key.ID(), err)
	}
	h.cmu.Lock()
	h.commits[c.ID] = c
	h.cmu.Unlock()
	return c, nil
}

// refKind says what a revision named.
type refKind int

const (
	refBranch refKind = iota + 1
	refTag
	refPR
	refCommit
)

// resolved is a revision resolved to a commit.
type resolved struct {
	kind refKind
	name string // branch or tag name, PR number, commit id
	id   string
}

// resolve resolves a revision: a branch, tag, "refs/heads/X", "refs/tags/X", "refs/pr/N", a full commit id
// or "HEAD". The caller holds h.mu (read).
func (h *repoHandle) resolve(rev string) (resolved, bool, error) {
	st := h.st
	switch {
	case strings.HasPrefix(rev, "refs/heads/"):
		b := strings.TrimPrefix(rev, "refs/heads/")
		id, ok := st.Branches[b]
		return resolved{refBranch, b, id}, ok, nil
	case strings.HasPrefix(rev, "refs/tags/"):
		t := strings.TrimPrefix(rev, "refs/tags/")
		tr, ok := st.Tags[t]
		return resolved{refTag, t, tr.Commit}, ok, nil
	case strings.HasPrefix(rev, "refs/pr/"):
		n := strings.TrimPrefix(rev, "refs/pr/")
		id, ok := st.PRs[n]
		return resolved{refPR, n, id}, ok, nil
	}
	if id, ok := st.Branches[rev]; ok {
		return resolved{refBranch, rev, id}, true, nil
	}
	if tr, ok := st.Tags[rev]; ok {
		return resolved{refTag, rev, tr.Commit}, true, nil
	}
	if rev == "HEAD" {
		id, ok := st.Branches[st.DefaultBranch]
		return resolved{refBranch, st.DefaultBranch, id}, ok, nil
	}
	if isHex(rev, 40, 40) {
		c, err := h.commit(rev)
		if err != nil || c == nil {
			return resolved{}, false, err
		}
		return resolved{refCommit, rev, rev}, true, nil
	}
	return resolved{}, false, nil
}

// lastCommit returns the commit that last changed the entry at p, walking first parents from c.
func (h *repoHandle) lastCommit(c *commit, p string) (*commit, error) {
	cur := c
	want, _ := cur.lookup(p)
	for len(cur.Parents) > 0 {
		parent, err := h.commit(cur.Parents[0])
		if err != nil {
			return nil, err
		}
		if parent == nil {
			break
		}
		got, ok := parent.lookup(p)
		if !ok || got.Dir != want.Dir || got.File.OID != want.File.OID || got.Tree != want.Tree {
			break
		}
		cur = parent
	}
	return cur, nil
}

// shardPath returns dir/ab/cd/name for a hex name.
func shardPath(dir, name string) string {
	return filepath.Join(dir, name[0:2], name[2:4], name)
}

// putBlob stores the content of a regular file and returns its git blob id.
func (s *store) putBlob(content []byte) (string, error) {
	oid := blobOID(content)
	p := shardPath(filepath.Join(s.dir, "blobs"), oid)
	if _, err := os.Stat(p); err == nil {
		return oid, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	return oid, writeAtomic(p, content, 0o600)
}

func (s *store) blobPath(oid string) string { return shardPath(filepath.Join(s.dir, "blobs"), oid) }

func (s *store) objectPath(oid string) string { return shardPath(filepath.Join(s.dir, "objects"), oid) }

// objectSize returns the size of a stored LFS object.
func (s *store) objectSize(oid string) (int64, bool) {
	if !isHex(oid, 64, 64) {
		return 0, false
	}
	fi, err := os.Stat(s.objectPath(oid))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// tempFile creates a file in the data directory's tmp folder (same filesystem as the final places).
func (s *store) tempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.dir, "tmp"), "up-*")
}

// install moves a finished temporary file to dst.
func install(tmp, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// writeAtomic writes data to a temporary file next to p and renames it to p.
func writeAtomic(p string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// readAll reads a small file.
func readAll(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// isHex reports whether s is lower-case hex of a length within [min, max].
func isHex(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
