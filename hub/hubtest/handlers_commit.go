package hubtest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// preupload answers POST /api/{t}s/{ns}/{name}/preupload/{rev}: for each file, the upload mode, whether the
// repo's .gitignore ignores it and its current oid.
func (c *call) preupload() {
	var req struct {
		Files []struct {
			Path   string `json:"path"`
			Sample string `json:"sample"`
			Size   int64  `json:"size"`
		} `json:"files"`
		GitIgnore     *string `json:"gitIgnore"`
		GitAttributes *string `json:"gitAttributes"`
	}
	if !c.decodeJSON(&req, 64<<20, false) {
		return
	}
	if len(req.Files) > MaxPreuploadFiles {
		c.fail(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("Too many files in one preupload call: %d > %d", len(req.Files), MaxPreuploadFiles))
		return
	}
	samples := make([][]byte, len(req.Files))
	for i, f := range req.Files {
		if err := validateRepoPath(f.Path); err != nil {
			c.fail(http.StatusUnprocessableEntity, "", fmt.Sprintf("Invalid path %q: %v", f.Path, err))
			return
		}
		if f.Size < 0 {
			c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid size %d for %q", f.Size, f.Path))
			return
		}
		b, err := base64.StdEncoding.DecodeString(f.Sample)
		if err != nil {
			c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid base64 sample for %q: %v", f.Path, err))
			return
		}
		samples[i] = b
	}
	need := writeAccess
	if boolParam(c.r.URL.Query().Get("create_pr")) {
		need = prAccess
	}
	h, unlock, ok := c.repo(need, false)
	if !ok {
		return
	}
	res, found, err := h.resolve(c.rt.rev)
	var head *commit
	if err == nil && found {
		head, err = h.commit(res.id)
	}
	unlock()
	if err != nil {
		c.internal(err)
		return
	}
	if !found || head == nil {
		c.notFoundRev(c.rt.rev)
		return
	}
	ignoreText := c.s.regularFileText(head, ".gitignore")
	if req.GitIgnore != nil {
		ignoreText = *req.GitIgnore
	}
	attrText := c.s.regularFileText(head, ".gitattributes")
	if req.GitAttributes != nil {
		attrText = *req.GitAttributes
	}
	ignore, attrs := parseGitignore(ignoreText), parseGitattributes(attrText)
	files := make([]map[string]any, 0, len(req.Files))
	for i, f := range req.Files {
		mode := "regular"
		switch {
		case f.Size == 0:
		case attrs.isLFS(f.Path), f.Size > MaxRegularFileSize, bytes.IndexByte(samples[i], 0) >= 0:
			mode = "lfs"
		}
		out := map[string]any{"path": f.Path, "uploadMode": mode, "shouldIgnore": ignore.ignored(f.Path)}
		if e, ok := head.Files[f.Path]; ok {
			if e.LFS != nil {
				out["oid"] = e.LFS.OID
			} else {
				out["oid"] = e.OID
			}
		}
		files = append(files, out)
	}
	c.ok(map[string]any{"files": files, "commitOid": head.ID})
}

// regularFileText returns the content of a small regular file of a commit, or "".
func (s *Server) regularFileText(c *commit, p string) string {
	e, ok := c.Files[p]
	if !ok || e.LFS != nil || e.Size > 1<<20 {
		return ""
	}
	b, err := readAll(s.store.blobPath(e.OID))
	if err != nil {
		return ""
	}
	return string(b)
}

// maxCommitBody bounds a commit payload (the Hub documents 1 GB of inline content).
const maxCommitBody = 1 << 30

// commit answers POST /api/{t}s/{ns}/{name}/commit/{rev}[?create_pr=1].
func (c *call) commit() {
	createPR := boolParam(c.r.URL.Query().Get("create_pr"))
	need := writeAccess
	if createPR {
		need = prAccess
	}
	// Check access before reading the payload, then parse it without holding the repository lock.
	if _, unlock, ok := c.repo(need, false); !ok {
		return
	} else {
		unlock()
	}
	req, err := parseCommit(http.MaxBytesReader(c.w, c.r.Body, maxCommitBody), c.s.store.putBlob)
	if err != nil {
		var mbe *http.MaxBytesError
		var he *httpError
		switch {
		case errors.As(err, &mbe):
			c.fail(http.StatusRequestEntityTooLarge, "", "Commit payload too large")
		case errors.As(err, &he):
			c.fail(he.status, he.code, he.msg)
		default:
			c.fail(http.StatusBadRequest, "", err.Error())
		}
		return
	}
	h, unlock, ok := c.repo(need, true)
	if !ok {
		return
	}
	defer unlock()
	out, herr := c.applyCommit(h, req, createPR)
	if herr != nil {
		c.fail(herr.status, herr.code, herr.msg)
		return
	}
	c.s.stats.update(func(st *Stats) { st.Commits++ })
	c.ok(out)
}

// applyCommit creates the commit and moves the ref; the caller holds h.mu.
func (c *call) applyCommit(h *repoHandle, req *commitRequest, createPR bool) (map[string]any, *httpError) {
	st := h.st
	res, found, err := h.resolve(c.rt.rev)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "", "%v", err)
	}
	if !found {
		return nil, errf(http.StatusNotFound, "RevisionNotFound", "Invalid rev id: %s", c.rt.rev)
	}
	if createPR && res.kind != refBranch {
		return nil, errf(http.StatusNotFound, "RevisionNotFound", "Invalid rev id: %s (a pull request is opened against a branch)", c.rt.rev)
	}
	if res.kind == refTag || res.kind == refCommit {
		return nil, errf(http.StatusBadRequest, "", "Cannot commit to %s: it is a tag or a commit, not a branch", c.rt.rev)
	}
	head, err := h.commit(res.id)
	if err != nil || head == nil {
		return nil, errf(http.StatusInternalServerError, "", "head commit %s of %s: %v", res.id, c.rt.rev, err)
	}
	base := head
	if req.ParentCommit != "" {
		if createPR {
			base, err = c.findAncestor(h, head, req.ParentCommit)
			if err != nil {
				return nil, errf(http.StatusInternalServerError, "", "%v", err)
			}
		}
		if base == nil || !strings.HasPrefix(base.ID, req.ParentCommit) {
			return nil, errf(http.StatusPreconditionFailed, "", "The branch was updated since you opened this page. Please refresh and try again. (parentCommit %s, head of %s is %s)", req.ParentCommit, c.rt.rev, head.ID)
		}
	}
	files := make(map[string]fileEntry, len(base.Files)+len(req.Ops))
	for p, e := range base.Files {
		files[p] = e
	}
	for _, op := range req.Ops {
		switch op.Kind {
		case "file":
			files[op.Path] = fileEntry{OID: op.BlobOID, Size: op.Size}
		case "lfsFile":
			size, ok := h.hasObject(op.LFSOID)
			if !ok || (op.HasSize && size != op.Size) {
				return nil, errf(http.StatusBadRequest, "", "Your push was rejected because an LFS pointer pointed to a file that does not exist (LFS object %s of %s bytes was never uploaded). Offending file: %s", op.LFSOID, sizeText(op), op.Path)
			}
			ptr := lfsPointer(op.LFSOID, size)
			files[op.Path] = fileEntry{OID: blobOID(ptr), Size: size, LFS: &lfsInfo{OID: op.LFSOID, Size: size, PointerSize: int64(len(ptr))}}
		case "deletedFile":
			if _, ok := files[op.Path]; !ok {
				return nil, errf(http.StatusNotFound, "EntryNotFound", "A file with this name doesn't exist: %s", op.Path)
			}
			delete(files, op.Path)
		case "deletedFolder":
			n := 0
			for p := range files {
				if strings.HasPrefix(p, op.Path+"/") {
					delete(files, p)
					n++
				}
			}
			if n == 0 {
				return nil, errf(http.StatusNotFound, "EntryNotFound", "A folder with this name doesn't exist: %s", op.Path)
			}
		}
	}
	for p := range files {
		for d := p; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if _, clash := files[d]; clash {
				return nil, errf(http.StatusUnprocessableEntity, "", "Invalid path %q: %q is a file, so it cannot be a folder", p, d)
			}
		}
	}
	nc, err := h.writeCommit(base, files, req.Summary, req.Description, c.tok.Name, c.s.opts.Now())
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "", "%v", err)
	}
	out := map[string]any{
		"success": true, "commitOid": nc.ID, "hookOutput": "",
		"commitUrl": c.repoURL() + "/commit/" + nc.ID,
	}
	switch {
	case createPR:
		num := st.NextPR
		n := strconv.Itoa(num)
		st.PRs[n] = nc.ID
		st.NextPR++
		out["pullRequestUrl"] = c.repoURL() + "/discussions/" + n
		if err := h.recordPRCommit(num, true, res.name, base, nc, c.tok.Name, req.Description, c.s.opts.Now()); err != nil {
			return nil, errf(http.StatusInternalServerError, "", "%v", err)
		}
	case res.kind == refPR:
		st.PRs[res.name] = nc.ID
		if num, err := strconv.Atoi(res.name); err == nil {
			if err := h.recordPRCommit(num, false, "", nil, nc, c.tok.Name, "", c.s.opts.Now()); err != nil {
				return nil, errf(http.StatusInternalServerError, "", "%v", err)
			}
		}
	default:
		st.Branches[res.name] = nc.ID
	}
	if err := h.saveState(); err != nil {
		return nil, errf(http.StatusInternalServerError, "", "%v", err)
	}
	return out, nil
}

func sizeText(op commitOp) string {
	if op.HasSize {
		return strconv.FormatInt(op.Size, 10)
	}
	return "unknown"
}

// findAncestor returns the first commit on head's first-parent chain whose id starts with prefix, or nil.
func (c *call) findAncestor(h *repoHandle, head *commit, prefix string) (*commit, error) {
	for cur := head; cur != nil; {
		if strings.HasPrefix(cur.ID, prefix) {
			return cur, nil
		}
		if len(cur.Parents) == 0 {
			return nil, nil
		}
		next, err := h.commit(cur.Parents[0])
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return nil, nil
}
