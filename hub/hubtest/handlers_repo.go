package hubtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// readBody reads at most limit bytes of the request body; on failure it has answered (413 or 400).
func (c *call) readBody(limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		c.fail(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("Request body larger than %d bytes", limit))
		return nil, false
	case err != nil:
		c.fail(http.StatusBadRequest, "", "Cannot read the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// decodeJSON decodes a JSON body into v; an empty body leaves v as is when emptyOK.
func (c *call) decodeJSON(v any, limit int64, emptyOK bool) bool {
	b, ok := c.readBody(limit)
	if !ok {
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 && emptyOK {
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.fail(http.StatusBadRequest, "", "Invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// isoTime formats a time as the Hub does (ISO 8601, milliseconds, Z).
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (c *call) stats() { c.ok(c.s.Stats()) }

// whoami answers GET /api/whoami-v2 in the shape of the Hub's answer.
func (c *call) whoami() {
	if c.tok == nil {
		c.fail(http.StatusUnauthorized, "", "Invalid username or password.")
		return
	}
	t := c.tok
	role := "read"
	if t.Write {
		role = "write"
	}
	orgs := []map[string]any{}
	for _, o := range t.Orgs {
		if o == "*" {
			continue
		}
		orgs = append(orgs, map[string]any{
			"type": "org", "id": fakeID("org:" + o), "name": o, "fullname": o, "email": nil,
			"canPay": false, "avatarUrl": "/avatars/" + fakeID("avatar:"+o) + ".svg", "periodEnd": nil,
		})
	}
	c.ok(map[string]any{
		"type": "user", "id": fakeID("user:" + t.Name), "name": t.Name, "fullname": t.Name,
		"email": t.Name + "@devhub.local", "emailVerified": true, "canPay": false, "isPro": false,
		"periodEnd": nil, "avatarUrl": "/avatars/" + fakeID("avatar:"+t.Name) + ".svg", "billingMode": "postpaid",
		"orgs": orgs,
		"auth": map[string]any{
			"type": "access_token",
			"accessToken": map[string]any{
				"displayName": t.Name + "-devhub", "role": role, "createdAt": isoTime(time.Unix(0, 0)),
			},
		},
	})
}

// fakeID derives a stable 24-hex id (the Hub's ids are Mongo ObjectIds).
func fakeID(s string) string { return blobOID([]byte(s))[:24] }

type createRepoRequest struct {
	Name               string  `json:"name"`
	Organization       *string `json:"organization"`
	Type               string  `json:"type"`
	Private            *bool   `json:"private"`
	Visibility         string  `json:"visibility"`
	SDK                string  `json:"sdk"`
	LFSMultipartThresh int64   `json:"lfsmultipartthresh"`
}

// repoKeyFrom turns (name, organization, type) of a create/delete body into a key; on failure it has answered.
func (c *call) repoKeyFrom(name string, org *string, typ string) (repoKey, bool) {
	if typ == "" {
		typ = "model"
	}
	if typ != "model" && typ != "dataset" && typ != "space" {
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid repo type %q (model, dataset or space)", typ))
		return repoKey{}, false
	}
	ns := ""
	if org != nil {
		ns = *org
	}
	if ns == "" {
		if a, b, ok := strings.Cut(name, "/"); ok {
			ns, name = a, b
		} else if c.tok != nil {
			ns = c.tok.Name
		}
	}
	if !validNamespace(ns) || !validRepoName(name) {
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid repo name %q/%q: use letters, digits, '-', '_' and '.' (not first or last, no '--' or '..'), at most 96 characters", ns, name))
		return repoKey{}, false
	}
	return repoKey{Type: typ, NS: ns, Name: name}, true
}

// createRepo answers POST /api/repos/create.
func (c *call) createRepo() {
	var req createRepoRequest
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	k, ok := c.repoKeyFrom(req.Name, req.Organization, req.Type)
	if !ok {
		return
	}
	c.rt.key = k
	private := req.Private != nil && *req.Private
	switch req.Visibility {
	case "":
	case "public":
		private = false
	case "private":
		private = true
	case "protected":
		if k.Type != "space" {
			c.fail(http.StatusBadRequest, "", "visibility \"protected\" is only for Spaces")
			return
		}
	default:
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid visibility %q (public, private or protected)", req.Visibility))
		return
	}
	if k.Type == "space" {
		switch req.SDK {
		case "gradio", "streamlit", "docker", "static":
		default:
			c.fail(http.StatusBadRequest, "", "A Space needs \"sdk\": gradio, streamlit, docker or static")
			return
		}
	}
	if req.LFSMultipartThresh < 0 {
		c.fail(http.StatusBadRequest, "", "lfsmultipartthresh must be positive")
		return
	}
	if !c.checkWrite(k.NS, false) {
		return
	}
	h, created, err := c.s.store.createRepo(k, private, req.LFSMultipartThresh, c.tok.Name, c.s.opts.Now())
	if err != nil {
		c.internal(err)
		return
	}
	url := c.repoURL()
	if !created {
		c.writeJSON(http.StatusConflict, "application/json; charset=utf-8", map[string]string{
			"error": "You already created this " + k.Type + " repo", "url": url,
		})
		return
	}
	h.mu.RLock()
	id := h.st.ID
	h.mu.RUnlock()
	c.ok(map[string]string{"url": url, "name": k.ID(), "id": id})
}

// deleteRepo answers DELETE /api/repos/delete.
func (c *call) deleteRepo() {
	var req createRepoRequest
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	k, ok := c.repoKeyFrom(req.Name, req.Organization, req.Type)
	if !ok {
		return
	}
	c.rt.key = k
	_, unlock, ok := c.repo(writeAccess, false)
	if !ok {
		return
	}
	unlock()
	found, err := c.s.store.deleteRepo(k)
	switch {
	case err != nil:
		c.internal(err)
	case !found:
		c.notFoundRepo()
	default:
		c.ok(map[string]any{})
	}
}

// validRefName checks a branch or tag name with git's check-ref-format rules.
func validRefName(s string) bool {
	if s == "" || len(s) > 255 || s == "@" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") ||
		strings.Contains(s, "@{") || strings.Contains(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch == 0x7f || strings.IndexByte("~^:?*[\\", ch) >= 0 {
			return false
		}
	}
	for _, comp := range strings.Split(s, "/") {
		if strings.HasPrefix(comp, ".") {
			return false
		}
	}
	return true
}

// branch answers POST and DELETE /api/{t}s/{ns}/{name}/branch/{branch}.
func (c *call) branch() {
	name := c.rt.path
	var req struct {
		StartingPoint *string `json:"startingPoint"`
		EmptyBranch   bool    `json:"emptyBranch"`
		Overwrite     bool    `json:"overwrite"`
	}
	if c.r.Method == http.MethodPost && !c.decodeJSON(&req, 1<<20, true) {
		return
	}
	h, unlock, ok := c.repo(writeAccess, true)
	if !ok {
		return
	}
	defer unlock()
	st := h.st
	if c.r.Method == http.MethodDelete {
		if name == st.DefaultBranch {
			c.fail(http.StatusForbidden, "", "Cannot delete refs/heads/"+name)
			return
		}
		if _, ok := st.Branches[name]; !ok {
			c.notFoundRev(name)
			return
		}
		delete(st.Branches, name)
		if err := h.saveState(); err != nil {
			c.internal(err)
			return
		}
		c.ok(map[string]any{})
		return
	}
	if strings.HasPrefix(name, "refs/") || !validRefName(name) {
		c.fail(http.StatusBadRequest, "", "Invalid reference for a branch: "+name)
		return
	}
	if _, exists := st.Branches[name]; exists && !req.Overwrite {
		c.fail(http.StatusConflict, "", "Reference refs/heads/"+name+" already exists")
		return
	}
	var target string
	switch {
	case req.EmptyBranch:
		ec, err := h.writeCommit(nil, map[string]fileEntry{}, "Initial empty commit", "", c.tok.Name, c.s.opts.Now())
		if err != nil {
			c.internal(err)
			return
		}
		target = ec.ID
	default:
		from := st.DefaultBranch
		if req.StartingPoint != nil && *req.StartingPoint != "" {
			from = *req.StartingPoint
		}
		res, found, err := h.resolve(from)
		if err != nil {
			c.internal(err)
			return
		}
		if !found {
			c.notFoundRev(from)
			return
		}
		target = res.id
	}
	st.Branches[name] = target
	if err := h.saveState(); err != nil {
		c.internal(err)
		return
	}
	c.ok(map[string]string{"name": name, "ref": "refs/heads/" + name, "targetCommit": target})
}

// tag answers POST /api/{t}s/{ns}/{name}/tag/{revision} and DELETE .../tag/{tag}.
func (c *call) tag() {
	var req struct {
		Tag     string `json:"tag"`
		Message string `json:"message"`
	}
	if c.r.Method == http.MethodPost && !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	h, unlock, ok := c.repo(writeAccess, true)
	if !ok {
		return
	}
	defer unlock()
	st := h.st
	if c.r.Method == http.MethodDelete {
		name := strings.TrimPrefix(c.rt.path, "refs/tags/")
		if _, ok := st.Tags[name]; !ok {
			c.notFoundRev(c.rt.path)
			return
		}
		delete(st.Tags, name)
		if err := h.saveState(); err != nil {
			c.internal(err)
			return
		}
		c.ok(map[string]any{})
		return
	}
	if strings.HasPrefix(req.Tag, "refs/") || !validRefName(req.Tag) {
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid tag name %q", req.Tag))
		return
	}
	if _, exists := st.Tags[req.Tag]; exists {
		c.fail(http.StatusConflict, "", "Tag "+req.Tag+" already exists")
		return
	}
	res, found, err := h.resolve(c.rt.path)
	if err != nil {
		c.internal(err)
		return
	}
	if !found {
		c.notFoundRev(c.rt.path)
		return
	}
	st.Tags[req.Tag] = tagRef{Commit: res.id, Message: req.Message}
	if err := h.saveState(); err != nil {
		c.internal(err)
		return
	}
	c.ok(map[string]string{"name": req.Tag, "ref": "refs/tags/" + req.Tag, "targetCommit": res.id})
}

type gitRef struct {
	Name         string `json:"name"`
	Ref          string `json:"ref"`
	TargetCommit string `json:"targetCommit"`
}

// refs answers GET /api/{t}s/{ns}/{name}/refs[?include_prs=1].
func (c *call) refs() {
	h, unlock, ok := c.repo(readAccess, false)
	if !ok {
		return
	}
	st := h.st
	out := map[string]any{"converts": []gitRef{}}
	branches := []gitRef{}
	for b, id := range st.Branches {
		branches = append(branches, gitRef{b, "refs/heads/" + b, id})
	}
	tags := []gitRef{}
	for t, tr := range st.Tags {
		tags = append(tags, gitRef{t, "refs/tags/" + t, tr.Commit})
	}
	var prs []gitRef
	if boolParam(c.r.URL.Query().Get("include_prs")) {
		prs = []gitRef{}
		for n, id := range st.PRs {
			prs = append(prs, gitRef{n, "refs/pr/" + n, id})
		}
	}
	unlock()
	for _, l := range [][]gitRef{branches, tags, prs} {
		sort.Slice(l, func(i, j int) bool { return l[i].Ref < l[j].Ref })
	}
	out["branches"], out["tags"] = branches, tags
	if prs != nil {
		out["pullRequests"] = prs
	}
	c.ok(out)
}

// boolParam reads a boolean query or form value ("1", "true", "True").
func boolParam(s string) bool {
	return s == "1" || strings.EqualFold(s, "true")
}
