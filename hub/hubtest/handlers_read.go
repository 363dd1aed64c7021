package hubtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// headCommit resolves the route's revision (rev, or the default branch when rev is "") to a commit;
// on failure it has answered.
func (c *call) headCommit(rev string) (*repoHandle, *commit, bool) {
	h, unlock, ok := c.repo(readAccess, false)
	if !ok {
		return nil, nil, false
	}
	if rev == "" {
		rev = h.st.DefaultBranch
	}
	res, found, err := h.resolve(rev)
	var cm *commit
	if err == nil && found {
		cm, err = h.commit(res.id)
	}
	unlock()
	if err != nil {
		c.internal(err)
		return nil, nil, false
	}
	if !found || cm == nil {
		c.notFoundRev(rev)
		return nil, nil, false
	}
	return h, cm, true
}

// resolve answers HEAD/GET /{prefix}{ns}/{name}/resolve/{rev}/{path} (and /raw/): regular files are served
// here with Range support, LFS files are redirected (302) to a signed URL on the storage host.
func (c *call) resolve() {
	h, cm, ok := c.headCommit(c.rt.rev)
	if !ok || !c.gateOK(h) {
		return
	}
	hd := c.w.Header()
	hd.Set("X-Repo-Commit", cm.ID)
	hd.Set("Accept-Ranges", "bytes")
	e, ok := cm.Files[c.rt.path]
	if !ok {
		c.fail(http.StatusNotFound, "EntryNotFound", fmt.Sprintf("Entry not found: %s at %s", c.rt.path, c.rt.rev))
		return
	}
	if e.LFS != nil && !c.rt.raw {
		hd.Set("ETag", `"`+e.OID+`"`) // the pointer file's blob id; the content's is X-Linked-Etag
		hd.Set("X-Linked-Etag", `"`+e.LFS.OID+`"`)
		hd.Set("X-Linked-Size", strconv.FormatInt(e.LFS.Size, 10))
		if c.xetResolve(e.LFS.OID, e.LFS.Size) {
			return
		}
		loc := c.s.storageGetURL(e.LFS.OID, path.Base(c.rt.path))
		hd.Set("Location", loc)
		body := "Found. Redirecting to " + loc
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		c.w.WriteHeader(http.StatusFound)
		if c.r.Method != http.MethodHead {
			c.w.Write([]byte(body))
		}
		return
	}
	hd.Set("ETag", `"`+e.OID+`"`)
	ct := mime.TypeByExtension(path.Ext(c.rt.path))
	if ct == "" {
		ct = "application/octet-stream"
	}
	hd.Set("Content-Type", ct)
	if e.LFS != nil { // raw pointer file
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(c.w, c.r, "", time.Time{}, strings.NewReader(string(lfsPointer(e.LFS.OID, e.LFS.Size))))
		return
	}
	f, err := os.Open(c.s.store.blobPath(e.OID))
	if err != nil {
		c.internal(fmt.Errorf("blob of %s: %w", c.rt.path, err))
		return
	}
	defer f.Close()
	http.ServeContent(c.w, c.r, "", time.Time{}, f)
}

// treeEntryJSON is one entry of tree and paths-info answers.
type treeEntryJSON struct {
	Type       string          `json:"type"`
	OID        string          `json:"oid"`
	Size       int64           `json:"size"`
	Path       string          `json:"path"`
	LFS        *lfsInfo        `json:"lfs,omitempty"`
	LastCommit *lastCommitJSON `json:"lastCommit,omitempty"`
	Security   *securityJSON   `json:"securityFileStatus,omitempty"`
}

// securityJSON is the Hub's securityFileStatus of a file (expand=true): devhub scans nothing and reports
// every file as safe, in the Hub's shape.
type securityJSON struct {
	Status           string         `json:"status"`
	AVScan           map[string]any `json:"avScan"`
	PickleImportScan map[string]any `json:"pickleImportScan"`
}

func safeFileStatus() *securityJSON {
	return &securityJSON{
		Status:           "safe",
		AVScan:           map[string]any{"virusFound": false, "virusNames": nil},
		PickleImportScan: map[string]any{"highestSafetyLevel": "innocuous", "imports": []any{}},
	}
}

type lastCommitJSON struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Date  string `json:"date"`
}

func (c *call) entryJSON(h *repoHandle, cm *commit, e listEntry, expand bool) (treeEntryJSON, error) {
	var j treeEntryJSON
	if e.Dir {
		j = treeEntryJSON{Type: "directory", OID: e.Tree, Path: e.Path}
	} else {
		j = treeEntryJSON{Type: "file", OID: e.File.OID, Size: e.File.Size, Path: e.Path, LFS: e.File.LFS}
	}
	if expand {
		lc, err := h.lastCommit(cm, e.Path)
		if err != nil {
			return j, err
		}
		j.LastCommit = &lastCommitJSON{ID: lc.ID, Title: lc.Title, Date: isoTime(lc.Date)}
		if !e.Dir {
			j.Security = safeFileStatus()
		}
	}
	return j, nil
}

// treeCursor is the content of the opaque pagination cursor of tree listings.
type treeCursor struct {
	Commit string `json:"c"`
	Offset int    `json:"o"`
}

func encodeCursor(tc treeCursor) string {
	b, _ := json.Marshal(tc)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses a cursor; it rejects anything the server did not produce.
func decodeCursor(s string) (treeCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return treeCursor{}, fmt.Errorf("invalid cursor: %w", err)
	}
	var tc treeCursor
	if err := json.Unmarshal(b, &tc); err != nil {
		return treeCursor{}, fmt.Errorf("invalid cursor: %w", err)
	}
	if !isHex(tc.Commit, 40, 40) || tc.Offset < 0 {
		return treeCursor{}, fmt.Errorf("invalid cursor")
	}
	return tc, nil
}

// nextLink sets a Link header pointing to this URL with one query parameter replaced.
func (c *call) nextLink(param, value string) {
	q := c.r.URL.Query()
	q.Set(param, value)
	u := c.s.URL() + c.r.URL.EscapedPath() + "?" + q.Encode()
	c.w.Header().Set("Link", "<"+u+`>; rel="next"`)
}

// tree answers GET /api/{t}s/{ns}/{name}/tree/{rev}[/{path}]?recursive=&expand=&cursor=, paginated.
func (c *call) tree() {
	q := c.r.URL.Query()
	recursive, expand := boolParam(q.Get("recursive")), boolParam(q.Get("expand"))
	var cur treeCursor
	if s := q.Get("cursor"); s != "" {
		tc, err := decodeCursor(s)
		if err != nil {
			c.fail(http.StatusBadRequest, "", err.Error())
			return
		}
		cur = tc
	}
	h, cm, ok := c.headCommit(c.rt.rev)
	if !ok {
		return
	}
	if cur.Commit != "" {
		// A cursor pins the commit of the first page, so that pages stay consistent if the branch moves.
		pinned, err := h.commit(cur.Commit)
		if err != nil {
			c.internal(err)
			return
		}
		if pinned == nil {
			c.fail(http.StatusBadRequest, "", "invalid cursor: unknown commit")
			return
		}
		cm = pinned
	}
	dir := strings.Trim(c.rt.path, "/")
	if dir != "" {
		e, ok := cm.lookup(dir)
		if !ok || !e.Dir {
			c.w.Header().Set("X-Repo-Commit", cm.ID)
			c.fail(http.StatusNotFound, "EntryNotFound", fmt.Sprintf("Entry not found: %s is not a folder at %s", dir, c.rt.rev))
			return
		}
	}
	all := cm.list(dir, recursive)
	start := min(cur.Offset, len(all))
	end := min(start+c.s.opts.PageSize, len(all))
	out := make([]treeEntryJSON, 0, end-start)
	for _, e := range all[start:end] {
		j, err := c.entryJSON(h, cm, e, expand)
		if err != nil {
			c.internal(err)
			return
		}
		out = append(out, j)
	}
	if end < len(all) {
		c.nextLink("cursor", encodeCursor(treeCursor{Commit: cm.ID, Offset: end}))
	}
	c.ok(out)
}

// pathsInfo answers POST /api/{t}s/{ns}/{name}/paths-info/{rev} (form or JSON body).
func (c *call) pathsInfo() {
	var paths []string
	var expand bool
	ct, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" {
		body, ok := c.readBody(8 << 20)
		if !ok {
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			c.fail(http.StatusBadRequest, "", "Invalid form body: "+err.Error())
			return
		}
		paths, expand = form["paths"], boolParam(form.Get("expand"))
	} else {
		var req struct {
			Paths  []string `json:"paths"`
			Expand bool     `json:"expand"`
		}
		if !c.decodeJSON(&req, 8<<20, false) {
			return
		}
		paths, expand = req.Paths, req.Expand
	}
	if len(paths) > MaxPathsInfo {
		c.fail(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("Too many paths: %d > %d (too many parameters)", len(paths), MaxPathsInfo))
		return
	}
	h, cm, ok := c.headCommit(c.rt.rev)
	if !ok {
		return
	}
	out := []treeEntryJSON{}
	seen := map[string]bool{}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if seen[p] || p == "" {
			continue
		}
		seen[p] = true
		e, ok := cm.lookup(p)
		if !ok {
			continue
		}
		j, err := c.entryJSON(h, cm, e, expand)
		if err != nil {
			c.internal(err)
			return
		}
		out = append(out, j)
	}
	c.ok(out)
}

// repoInfo answers GET /api/{t}s/{ns}/{name}[/revision/{rev}][?blobs=true][&expand=field...].
func (c *call) repoInfo() {
	h, cm, ok := c.headCommit(c.rt.rev)
	if !ok {
		return
	}
	h.mu.RLock()
	st := *h.st
	h.mu.RUnlock()
	q := c.r.URL.Query()
	blobs := boolParam(q.Get("blobs"))
	cm.index()
	siblings := make([]map[string]any, 0, len(cm.paths))
	for _, p := range cm.paths {
		s := map[string]any{"rfilename": p}
		if blobs {
			e := cm.Files[p]
			s["size"], s["blobId"] = e.Size, e.OID
			if e.LFS != nil {
				s["lfs"] = map[string]any{"size": e.LFS.Size, "sha256": e.LFS.OID, "pointerSize": e.LFS.PointerSize}
			}
		}
		siblings = append(siblings, s)
	}
	id := c.rt.key.ID()
	info := c.s.infoJSON(c.rt.key, &st, cm)
	info["siblings"] = siblings
	if boolParam(q.Get("securityStatus")) {
		info["securityRepoStatus"] = map[string]any{"scansDone": true, "filesWithIssues": []any{}}
	}
	if fields := append(q["expand"], q["expand[]"]...); len(fields) > 0 {
		sub := map[string]any{"_id": st.ID, "id": id}
		for _, f := range fields {
			if v, ok := info[f]; ok {
				sub[f] = v
			}
		}
		info = sub
	}
	c.ok(info)
}

// commits answers GET /api/{t}s/{ns}/{name}/commits/{rev}?p=N: the first-parent history, newest first,
// PageSize per page, with X-Total-Count and a Link to the next page.
func (c *call) commits() {
	page := 0
	formatted := false
	for _, f := range append(c.r.URL.Query()["expand"], c.r.URL.Query()["expand[]"]...) {
		formatted = formatted || f == "formatted"
	}
	if p := c.r.URL.Query().Get("p"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			c.fail(http.StatusBadRequest, "", "Invalid page "+strconv.Quote(p))
			return
		}
		page = n
	}
	h, cm, ok := c.headCommit(c.rt.rev)
	if !ok {
		return
	}
	var chain []*commit
	for cur := cm; cur != nil; {
		chain = append(chain, cur)
		if len(cur.Parents) == 0 {
			break
		}
		next, err := h.commit(cur.Parents[0])
		if err != nil {
			c.internal(err)
			return
		}
		cur = next
	}
	size := c.s.opts.PageSize
	start := min(page*size, len(chain))
	end := min(start+size, len(chain))
	out := make([]map[string]any, 0, end-start)
	for _, x := range chain[start:end] {
		item := map[string]any{
			"id": x.ID, "title": x.Title, "message": x.Message, "date": isoTime(x.Date),
			"authors": []map[string]string{{"user": x.Author, "avatar": "/avatars/" + fakeID("avatar:"+x.Author) + ".svg"}},
		}
		if formatted {
			// The Hub renders title and message as HTML; devhub escapes them (no markdown rendering).
			item["formatted"] = map[string]string{"title": html.EscapeString(x.Title), "message": html.EscapeString(x.Message)}
		}
		out = append(out, item)
	}
	c.w.Header().Set("X-Total-Count", strconv.Itoa(len(chain)))
	if end < len(chain) {
		c.nextLink("p", strconv.Itoa(page+1))
	}
	c.ok(out)
}

// infoJSON is the repo info of a repository at commit cm, without siblings: the fields the Hub returns
// for model_info/dataset_info/space_info and for each item of a listing.
func (s *Server) infoJSON(k repoKey, st *repoState, cm *commit) map[string]any {
	meta := s.store.meta(cm)
	id := k.ID()
	info := map[string]any{
		"_id": st.ID, "id": id, "author": st.Namespace, "sha": cm.ID, "lastModified": isoTime(cm.Date),
		"createdAt": isoTime(st.CreatedAt), "private": st.Private, "gated": gatedJSON(st.Gated), "disabled": false,
		"downloads": 0, "likes": 0, "tags": meta.tags, "xetEnabled": false,
	}
	if meta.card != nil {
		info["cardData"] = meta.card
	}
	if k.Type == "model" {
		info["modelId"] = id
		if meta.library != "" {
			info["library_name"] = meta.library
		}
		if meta.pipeline != "" {
			info["pipeline_tag"] = meta.pipeline
		}
		if meta.safetensors != nil {
			info["safetensors"] = meta.safetensors
		}
	}
	return info
}

// gatedJSON is the Hub's "gated" value: false, "auto" or "manual".
func gatedJSON(g string) any {
	if g == "" {
		return false
	}
	return g
}

// gateOK refuses the files of a gated repository to everyone but its owners, as the Hub does to users who were
// not granted access (devhub has no access requests): 401 without a token, 403 with one, X-Error-Code GatedRepo.
func (c *call) gateOK(h *repoHandle) bool {
	h.mu.RLock()
	gated := h.st != nil && h.st.Gated != ""
	h.mu.RUnlock()
	if !gated || c.owns(c.rt.key.NS) {
		return true
	}
	msg := fmt.Sprintf("Access to %s %s is restricted. You must have access to it and be authenticated to access it. Please log in.", c.rt.key.Type, c.rt.key.ID())
	status := http.StatusForbidden
	if c.tok == nil {
		status = http.StatusUnauthorized
	}
	c.fail(status, "GatedRepo", msg)
	return false
}
