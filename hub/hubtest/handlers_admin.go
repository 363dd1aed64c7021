package hubtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Listings (list_models, list_datasets, list_spaces), repository settings, move_repo and
// super_squash_history.

// maxListLimit is the largest page of a repository listing.
const maxListLimit = 1000

// allRepos returns the keys of every repository of a type, sorted by id.
func (s *store) allRepos(typ string) ([]repoKey, error) {
	root := filepath.Join(s.dir, "repos", typ+"s")
	nss, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []repoKey
	for _, ns := range nss {
		names, err := os.ReadDir(filepath.Join(root, ns.Name()))
		if err != nil {
			continue
		}
		for _, n := range names {
			k := repoKey{Type: typ, NS: ns.Name(), Name: n.Name()}
			if validNamespace(k.NS) && validRepoName(k.Name) {
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// listRepos answers GET /api/{models,datasets,spaces}?search=&author=&filter=&pipeline_tag=&sort=&direction=&limit=
// &cursor=: the visible repositories whose id contains search (case-insensitive), of that author, with every
// filter among their tags (and that pipeline_tag), sorted (default: by id), a page of limit (default PageSize, at most 1000) with a Link to the next.
func (c *call) listRepos() {
	q := c.r.URL.Query()
	limit := c.s.opts.PageSize
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "", "Invalid limit "+strconv.Quote(l))
			return
		}
		limit = min(n, maxListLimit)
	}
	offset := 0
	if cur := q.Get("cursor"); cur != "" {
		tc, err := decodeCursor(cur)
		if err != nil {
			c.fail(http.StatusBadRequest, "", err.Error())
			return
		}
		offset = tc.Offset
	}
	sortKey := q.Get("sort")
	switch sortKey {
	case "", "id", "lastModified", "createdAt", "downloads", "likes", "trending_score", "trendingScore":
	default:
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid sort %q", sortKey))
		return
	}
	desc := q.Get("direction") == "-1" || (q.Get("direction") == "" && sortKey != "" && sortKey != "id")
	search := strings.ToLower(q.Get("search"))
	author, pipeline := q.Get("author"), q.Get("pipeline_tag")
	filters := append(q["filter"], q["filter[]"]...)
	keys, err := c.s.store.allRepos(c.rt.key.Type)
	if err != nil {
		c.internal(err)
		return
	}
	type item struct {
		info map[string]any
		sort string
	}
	var items []item
	for _, k := range keys {
		if author != "" && k.NS != author || search != "" && !strings.Contains(strings.ToLower(k.ID()), search) {
			continue
		}
		h, err := c.s.store.repo(k)
		if err != nil || h == nil {
			continue
		}
		h.mu.RLock()
		if h.st == nil || !c.canSee(h.st) {
			h.mu.RUnlock()
			continue
		}
		st := *h.st
		cm, err := h.commit(st.Branches[st.DefaultBranch])
		h.mu.RUnlock()
		if err != nil || cm == nil {
			continue
		}
		info := c.s.infoJSON(k, &st, cm)
		tags := map[string]bool{}
		for _, t := range info["tags"].([]string) {
			tags[t] = true
		}
		ok := true
		for _, f := range filters {
			for _, one := range strings.Split(f, ",") {
				ok = ok && (tags[one] || one == "")
			}
		}
		if !ok || pipeline != "" && info["pipeline_tag"] != pipeline {
			continue
		}
		if !boolParam(q.Get("cardData")) && !boolParam(q.Get("full")) {
			delete(info, "cardData")
		}
		key := k.ID()
		switch sortKey {
		case "lastModified":
			key = info["lastModified"].(string)
		case "createdAt":
			key = info["createdAt"].(string)
		}
		items = append(items, item{info, key})
	}
	sort.SliceStable(items, func(i, j int) bool {
		if desc {
			return items[i].sort > items[j].sort
		}
		return items[i].sort < items[j].sort
	})
	start := min(offset, len(items))
	end := min(start+limit, len(items))
	out := make([]map[string]any, 0, end-start)
	for _, it := range items[start:end] {
		out = append(out, it.info)
	}
	if end < len(items) {
		c.nextLink("cursor", encodeCursor(treeCursor{Commit: strings.Repeat("0", 40), Offset: end}))
	}
	c.ok(out)
}

// settings answers PUT /api/{t}s/{ns}/{name}/settings {"private"?, "gated"?: false|"auto"|"manual",
// "discussionsDisabled"?, "xetEnabled"?}.
func (c *call) settings() {
	var req struct {
		Private *bool           `json:"private"`
		Gated   json.RawMessage `json:"gated"`
	}
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	gated, setGated := "", len(req.Gated) > 0
	if setGated {
		var b bool
		var s string
		switch {
		case json.Unmarshal(req.Gated, &b) == nil && !b:
		case json.Unmarshal(req.Gated, &s) == nil && (s == "auto" || s == "manual"):
			gated = s
		default:
			c.fail(http.StatusBadRequest, "", `"gated" must be false, "auto" or "manual"`)
			return
		}
	}
	h, unlock, ok := c.repo(writeAccess, true)
	if !ok {
		return
	}
	defer unlock()
	if req.Private != nil {
		h.st.Private = *req.Private
	}
	if setGated {
		h.st.Gated = gated
	}
	if err := h.saveState(); err != nil {
		c.internal(err)
		return
	}
	c.ok(map[string]any{"private": h.st.Private, "gated": gatedJSON(h.st.Gated)})
}

// moveRepo answers POST /api/repos/move {"fromRepo", "toRepo", "type"}: the caller must own both namespaces.
func (c *call) moveRepo() {
	var req struct {
		From string `json:"fromRepo"`
		To   string `json:"toRepo"`
		Type string `json:"type"`
	}
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	if !strings.Contains(req.From, "/") || !strings.Contains(req.To, "/") {
		c.fail(http.StatusBadRequest, "", "fromRepo and toRepo must be of the form namespace/name")
		return
	}
	from, ok := c.repoKeyFrom(req.From, nil, req.Type)
	if !ok {
		return
	}
	to, ok := c.repoKeyFrom(req.To, nil, req.Type)
	if !ok {
		return
	}
	c.rt.key = from
	h, unlock, ok := c.repo(writeAccess, false)
	if !ok {
		return
	}
	unlock()
	if !c.checkWrite(to.NS, false) {
		return
	}
	herr := c.s.store.moveRepo(h, to)
	if herr != nil {
		c.fail(herr.status, herr.code, herr.msg)
		return
	}
	c.rt.key = to
	c.ok(map[string]string{"url": c.repoURL()})
}

// moveRepo renames a repository's directory and its key; its refs, grants and discussions go with it.
func (s *store) moveRepo(h *repoHandle, to repoKey) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, err := s.repoLocked(to); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	} else if other != nil {
		return errf(http.StatusConflict, "", "You already have a %s repo named %s", to.Type, to.ID())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		return errf(http.StatusNotFound, "RepoNotFound", "Repository not found")
	}
	from := h.key
	if err := os.MkdirAll(filepath.Dir(s.repoDir(to)), 0o700); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	if err := os.Rename(s.repoDir(from), s.repoDir(to)); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	delete(s.repos, from)
	nh := &repoHandle{key: to, s: s, commits: map[string]*commit{}}
	st := *h.st
	st.Namespace, st.Name = to.NS, to.Name
	nh.st = &st
	h.st = nil // handlers holding the old handle see a deleted repository
	s.repos[to] = nh
	if err := nh.saveState(); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	return nil
}

// superSquash answers POST /api/{t}s/{ns}/{name}/super-squash/{branch} {"message"}: the branch becomes one root
// commit with the files of its head.
func (c *call) superSquash() {
	var req struct {
		Message string `json:"message"`
	}
	if !c.decodeJSON(&req, 1<<20, true) {
		return
	}
	h, unlock, ok := c.repo(writeAccess, true)
	if !ok {
		return
	}
	defer unlock()
	branch := strings.TrimPrefix(c.rt.path, "refs/heads/")
	id, ok := h.st.Branches[branch]
	if !ok {
		c.notFoundRev(c.rt.path)
		return
	}
	head, err := h.commit(id)
	if err != nil || head == nil {
		c.internal(fmt.Errorf("head of %s: %v", branch, err))
		return
	}
	msg := req.Message
	if msg == "" {
		msg = "Super-squash branch '" + branch + "'"
	}
	files := make(map[string]fileEntry, len(head.Files))
	for p, e := range head.Files {
		files[p] = e
	}
	nc, err := h.writeCommit(nil, files, msg, "", c.tok.Name, c.s.opts.Now())
	if err != nil {
		c.internal(err)
		return
	}
	h.st.Branches[branch] = nc.ID
	if err := h.saveState(); err != nil {
		c.internal(err)
		return
	}
	c.ok(map[string]string{"commitId": nc.ID})
}
