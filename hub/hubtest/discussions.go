package hubtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Discussions and pull requests (get_repo_discussions, get_discussion_details, create_discussion,
// create_pull_request, comment_discussion, change_discussion_status, rename_discussion, merge_pull_request).
// They are kept in repos/<type>s/<ns>/<name>/discussions.json and share their numbers with refs/pr/N.

// discussion is one discussion or pull request.
type discussion struct {
	Num       int       `json:"num"`
	Title     string    `json:"title"`
	Author    string    `json:"author"`
	CreatedAt time.Time `json:"createdAt"`
	Status    string    `json:"status"` // open, closed, merged, draft
	IsPR      bool      `json:"isPullRequest"`
	Base      string    `json:"base,omitempty"` // PRs: the target branch
	Fork      string    `json:"fork,omitempty"` // PRs: the base commit the PR started from
	MergeID   string    `json:"mergeCommitId,omitempty"`
	Events    []dEvent  `json:"events"`
}

// dEvent is one event of a discussion, in the Hub's shape.
type dEvent struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"` // comment, status-change, commit, title-change
	CreatedAt time.Time      `json:"createdAt"`
	Author    string         `json:"author"`
	Data      map[string]any `json:"data"`
}

func (e dEvent) toJSON() map[string]any {
	return map[string]any{
		"id": e.ID, "type": e.Type, "createdAt": isoTime(e.CreatedAt),
		"author": map[string]any{"name": e.Author, "fullname": e.Author, "type": "user", "isOwner": false},
		"data":   e.Data,
	}
}

func (h *repoHandle) discussionsPath() string {
	return filepath.Join(h.s.repoDir(h.key), "discussions.json")
}

// discussions loads the discussions of the repository; the caller holds h.mu.
func (h *repoHandle) discussions() (map[int]*discussion, error) {
	b, err := os.ReadFile(h.discussionsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return map[int]*discussion{}, nil
	}
	if err != nil {
		return nil, err
	}
	var list []*discussion
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("repo %s: discussions.json: %w", h.key.ID(), err)
	}
	m := make(map[int]*discussion, len(list))
	for _, d := range list {
		m[d.Num] = d
	}
	return m, nil
}

// saveDiscussions writes them back; the caller holds h.mu for writing.
func (h *repoHandle) saveDiscussions(m map[int]*discussion) error {
	list := make([]*discussion, 0, len(m))
	for _, d := range m {
		list = append(list, d)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Num < list[j].Num })
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return writeAtomic(h.discussionsPath(), b, 0o600)
}

func newEvent(typ, author string, now time.Time, data map[string]any) dEvent {
	return dEvent{ID: randomHex(12), Type: typ, CreatedAt: now.UTC().Truncate(time.Millisecond), Author: author, Data: data}
}

func commentEvent(author, text string, now time.Time) dEvent {
	at := isoTime(now)
	return newEvent("comment", author, now, map[string]any{
		"edited": false, "hidden": false, "numEdits": 0,
		"latest": map[string]any{"raw": text, "html": "<p>" + html.EscapeString(text) + "</p>", "updatedAt": at,
			"author": map[string]any{"name": author}},
	})
}

// recordPRCommit notes a commit on a pull request (a new one when isNew); the caller holds h.mu for writing.
func (h *repoHandle) recordPRCommit(num int, isNew bool, base string, fork *commit, nc *commit, author, description string, now time.Time) error {
	m, err := h.discussions()
	if err != nil {
		return err
	}
	d := m[num]
	if d == nil {
		if !isNew {
			return nil // a PR ref made before discussions were recorded
		}
		d = &discussion{Num: num, Title: nc.Title, Author: author, CreatedAt: now.UTC().Truncate(time.Millisecond),
			Status: "open", IsPR: true, Base: base, Fork: fork.ID}
		if description != "" {
			d.Events = append(d.Events, commentEvent(author, description, now))
		}
		m[num] = d
	}
	d.Events = append(d.Events, newEvent("commit", author, now, map[string]any{"subject": nc.Title, "oid": nc.ID}))
	return h.saveDiscussions(m)
}

func (d *discussion) summaryJSON(k repoKey) map[string]any {
	n := 0
	for _, e := range d.Events {
		if e.Type == "comment" {
			n++
		}
	}
	return map[string]any{
		"num": d.Num, "title": d.Title, "status": d.Status, "isPullRequest": d.IsPR, "createdAt": isoTime(d.CreatedAt),
		"author": map[string]any{"name": d.Author, "type": "user"}, "numComments": n, "pinned": false,
		"repo": map[string]any{"name": k.ID(), "type": k.Type},
	}
}

// routeDiscussions matches .../discussions[/{num}[/{comment,status,merge,title}]].
func (s *Server) routeDiscussions(rt route, rest []string, method func(route, ...string) route) route {
	rt.op = OpDiscussion
	switch len(rest) {
	case 0:
		rt.h = (*call).discussionsRoot
		return method(rt, http.MethodGet, http.MethodPost)
	case 1:
		rt.path, rt.h = rest[0], (*call).discussionDetails
		return method(rt, http.MethodGet)
	case 2:
		rt.path = rest[0]
		switch rest[1] {
		case "comment", "status", "merge", "title":
			rt.rev = rest[1]
			rt.h = (*call).discussionAction
			return method(rt, http.MethodPost)
		}
	}
	return route{op: OpUnknown}
}

// discussionsRoot answers GET (list, ?p=&type=&status=&author=) and POST (create {title, description,
// pullRequest}) on .../discussions.
func (c *call) discussionsRoot() {
	if c.r.Method == http.MethodPost {
		c.createDiscussion()
		return
	}
	q := c.r.URL.Query()
	page := 0
	if p := q.Get("p"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			c.fail(http.StatusBadRequest, "", "Invalid page "+strconv.Quote(p))
			return
		}
		page = n
	}
	typ, status, author := q.Get("type"), q.Get("status"), q.Get("author")
	h, unlock, ok := c.repo(readAccess, false)
	if !ok {
		return
	}
	m, err := h.discussions()
	unlock()
	if err != nil {
		c.internal(err)
		return
	}
	var list []*discussion
	for _, d := range m {
		switch {
		case typ == "pull_request" && !d.IsPR, typ == "discussion" && d.IsPR:
		case status != "" && status != "all" && status != d.Status:
		case author != "" && author != d.Author:
		default:
			list = append(list, d)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Num > list[j].Num })
	size := c.s.opts.PageSize
	start := min(page*size, len(list))
	end := min(start+size, len(list))
	out := make([]map[string]any, 0, end-start)
	for _, d := range list[start:end] {
		out = append(out, d.summaryJSON(c.rt.key))
	}
	c.ok(map[string]any{"discussions": out, "count": len(list), "start": start, "numClosedDiscussions": 0})
}

func (c *call) createDiscussion() {
	var req struct {
		Title       string `json:"title"`
		Description string `json:"description"`
		PullRequest bool   `json:"pullRequest"`
	}
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	req.Title = strings.TrimSpace(req.Title)
	if len(req.Title) < 3 || len(req.Title) > 200 {
		c.fail(http.StatusBadRequest, "", "The title must have between 3 and 200 characters")
		return
	}
	h, unlock, ok := c.repo(prAccess, true)
	if !ok {
		return
	}
	defer unlock()
	m, err := h.discussions()
	if err != nil {
		c.internal(err)
		return
	}
	now := c.s.opts.Now()
	st := h.st
	d := &discussion{Num: st.NextPR, Title: req.Title, Author: c.tok.Name, CreatedAt: now.UTC().Truncate(time.Millisecond), Status: "open"}
	if req.Description != "" {
		d.Events = append(d.Events, commentEvent(c.tok.Name, req.Description, now))
	}
	if req.PullRequest {
		// A draft PR: refs/pr/N at the default branch's head, until a commit is pushed to it.
		d.IsPR, d.Status, d.Base = true, "draft", st.DefaultBranch
		d.Fork = st.Branches[st.DefaultBranch]
		st.PRs[strconv.Itoa(d.Num)] = d.Fork
	}
	st.NextPR++
	m[d.Num] = d
	if err := h.saveState(); err != nil {
		c.internal(err)
		return
	}
	if err := h.saveDiscussions(m); err != nil {
		c.internal(err)
		return
	}
	c.ok(map[string]any{"num": d.Num, "url": c.repoURL() + "/discussions/" + strconv.Itoa(d.Num)})
}

// findDiscussion loads discussion rt.path; on failure it has answered.
func (c *call) findDiscussion(h *repoHandle) (map[int]*discussion, *discussion, bool) {
	num, err := strconv.Atoi(c.rt.path)
	m, lerr := h.discussions()
	if lerr != nil {
		c.internal(lerr)
		return nil, nil, false
	}
	d := m[num]
	if err != nil || d == nil {
		c.fail(http.StatusNotFound, "", "Discussion not found: "+c.rt.path)
		return nil, nil, false
	}
	return m, d, true
}

// discussionDetails answers GET .../discussions/{num}.
func (c *call) discussionDetails() {
	h, unlock, ok := c.repo(readAccess, false)
	if !ok {
		return
	}
	defer unlock()
	_, d, ok := c.findDiscussion(h)
	if !ok {
		return
	}
	out := d.summaryJSON(c.rt.key)
	events := make([]map[string]any, len(d.Events))
	for i, e := range d.Events {
		events[i] = e.toJSON()
	}
	out["events"] = events
	if d.IsPR {
		changes := map[string]any{"base": "refs/heads/" + d.Base}
		if d.MergeID != "" {
			changes["mergeCommitId"] = d.MergeID
		}
		out["changes"] = changes
		out["filesWithConflicts"] = []string{}
		if d.Status == "open" || d.Status == "draft" {
			if conflicts, err := c.prConflicts(h, d); err == nil {
				out["filesWithConflicts"] = conflicts
			}
		}
		out["diff"] = ""
	}
	c.ok(out)
}

// discussionAction answers POST .../discussions/{num}/{comment,status,merge,title}.
func (c *call) discussionAction() {
	var req struct {
		Comment string `json:"comment"`
		Status  string `json:"status"`
		Title   string `json:"title"`
	}
	if !c.decodeJSON(&req, 1<<20, true) {
		return
	}
	need := prAccess
	if c.rt.rev == "merge" {
		need = writeAccess
	}
	h, unlock, ok := c.repo(need, true)
	if !ok {
		return
	}
	defer unlock()
	m, d, ok := c.findDiscussion(h)
	if !ok {
		return
	}
	now := c.s.opts.Now()
	me := c.tok.Name
	mayModerate := me == d.Author || c.owns(c.rt.key.NS)
	var answer map[string]any
	switch c.rt.rev {
	case "comment":
		if strings.TrimSpace(req.Comment) == "" {
			c.fail(http.StatusBadRequest, "", "The comment is empty")
			return
		}
		e := commentEvent(me, req.Comment, now)
		d.Events = append(d.Events, e)
		answer = map[string]any{"newMessage": e.toJSON()}
	case "title":
		t := strings.TrimSpace(req.Title)
		if !mayModerate || len(t) < 3 || len(t) > 200 {
			c.fail(http.StatusBadRequest, "", "Only the author or an owner may rename, to a title of 3 to 200 characters")
			return
		}
		e := newEvent("title-change", me, now, map[string]any{"from": d.Title, "to": t})
		d.Title = t
		d.Events = append(d.Events, e)
		answer = map[string]any{"newTitle": e.toJSON()}
	case "status":
		if req.Status != "open" && req.Status != "closed" {
			c.fail(http.StatusBadRequest, "", `"status" must be "open" or "closed"`)
			return
		}
		if !mayModerate {
			c.fail(http.StatusForbidden, "", "Only the author or an owner may change the status")
			return
		}
		if d.Status == "merged" {
			c.fail(http.StatusBadRequest, "", "This pull request is merged")
			return
		}
		if req.Comment != "" {
			d.Events = append(d.Events, commentEvent(me, req.Comment, now))
		}
		e := newEvent("status-change", me, now, map[string]any{"status": req.Status})
		d.Status = req.Status
		d.Events = append(d.Events, e)
		answer = map[string]any{"newStatus": e.toJSON()}
	case "merge":
		if !d.IsPR || d.Status != "open" && d.Status != "draft" {
			c.fail(http.StatusBadRequest, "", "Only an open pull request can be merged")
			return
		}
		id, herr := c.mergePR(h, d)
		if herr != nil {
			c.fail(herr.status, herr.code, herr.msg)
			return
		}
		if req.Comment != "" {
			d.Events = append(d.Events, commentEvent(me, req.Comment, now))
		}
		e := newEvent("status-change", me, now, map[string]any{"status": "merged"})
		d.Status, d.MergeID = "merged", id
		d.Events = append(d.Events, e)
		answer = map[string]any{"newStatus": e.toJSON(), "mergeCommitId": id}
	}
	if err := h.saveDiscussions(m); err != nil {
		c.internal(err)
		return
	}
	c.ok(answer)
}

// prChanges returns the PR's head, the base branch's head and the fork commit.
func (c *call) prCommits(h *repoHandle, d *discussion) (pr, base, fork *commit, err error) {
	if pr, err = h.commit(h.st.PRs[strconv.Itoa(d.Num)]); err != nil || pr == nil {
		return nil, nil, nil, fmt.Errorf("refs/pr/%d: %v", d.Num, err)
	}
	if base, err = h.commit(h.st.Branches[d.Base]); err != nil || base == nil {
		return nil, nil, nil, fmt.Errorf("branch %s: %v", d.Base, err)
	}
	if fork, err = h.commit(d.Fork); err != nil || fork == nil {
		return nil, nil, nil, fmt.Errorf("fork commit %s: %v", d.Fork, err)
	}
	return pr, base, fork, nil
}

// mergedFiles merges the PR's changes since the fork into the base head, file by file; a file changed both on
// the PR and on the base since the fork, differently, is a conflict.
func mergedFiles(pr, base, fork *commit) (map[string]fileEntry, []string) {
	files := make(map[string]fileEntry, len(base.Files))
	for p, e := range base.Files {
		files[p] = e
	}
	paths := map[string]bool{}
	for p := range pr.Files {
		paths[p] = true
	}
	for p := range fork.Files {
		paths[p] = true
	}
	var conflicts []string
	for p := range paths {
		pe, inPR := pr.Files[p]
		fe, inFork := fork.Files[p]
		if inPR == inFork && pe.OID == fe.OID {
			continue // unchanged on the PR
		}
		be, inBase := base.Files[p]
		baseChanged := inBase != inFork || be.OID != fe.OID
		if baseChanged && (inBase != inPR || be.OID != pe.OID) {
			conflicts = append(conflicts, p)
			continue
		}
		if inPR {
			files[p] = pe
		} else {
			delete(files, p)
		}
	}
	sort.Strings(conflicts)
	return files, conflicts
}

func (c *call) prConflicts(h *repoHandle, d *discussion) ([]string, error) {
	pr, base, fork, err := c.prCommits(h, d)
	if err != nil {
		return nil, err
	}
	_, conflicts := mergedFiles(pr, base, fork)
	if conflicts == nil {
		conflicts = []string{}
	}
	return conflicts, nil
}

// mergePR merges the pull request into its base branch with a merge commit; the caller holds h.mu for writing.
func (c *call) mergePR(h *repoHandle, d *discussion) (string, *httpError) {
	pr, base, fork, err := c.prCommits(h, d)
	if err != nil {
		return "", errf(http.StatusInternalServerError, "", "%v", err)
	}
	files, conflicts := mergedFiles(pr, base, fork)
	if len(conflicts) > 0 {
		return "", errf(http.StatusConflict, "", "This pull request has conflicts with %s: %s", d.Base, strings.Join(conflicts, ", "))
	}
	nc, err := h.writeCommitParents([]string{base.ID, pr.ID}, files, "Merge refs/pr/"+strconv.Itoa(d.Num)+" into "+d.Base, d.Title, c.tok.Name, c.s.opts.Now())
	if err != nil {
		return "", errf(http.StatusInternalServerError, "", "%v", err)
	}
	h.st.Branches[d.Base] = nc.ID
	if err := h.saveState(); err != nil {
		return "", errf(http.StatusInternalServerError, "", "%v", err)
	}
	return nc.ID, nil
}
