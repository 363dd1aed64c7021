package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// CreateRepoOptions configure CreateRepo.
type CreateRepoOptions struct {
	Private bool
	// ExistOK makes an existing repo a success (409, or 403 on a repo that turns out to exist).
	ExistOK bool
}

// CreateRepo creates the model repo "owner/name" and returns its URL and whether it was created now.
// With ExistOK an existing repo is not an error (created=false); a 409 without a url in its body is handled.
func (c *Client) CreateRepo(ctx context.Context, repo string, opts CreateRepoOptions) (repoURL string, created bool, err error) {
	if err := validRepoID(repo); err != nil {
		return "", false, err
	}
	ns, name, _ := strings.Cut(repo, "/")
	visibility := "public"
	if opts.Private {
		visibility = "private"
	}
	body, _ := json.Marshal(map[string]any{
		"name": name, "organization": ns, "type": "model", "private": opts.Private, "visibility": visibility,
	})
	const conflictingOp = "another conflicting operation is in progress"
	for try := 1; ; try++ {
		r, err := c.send(ctx, call{
			method: "POST", url: c.apiURL("/api/repos/create"), auth: true,
			headers: map[string]string{"Content-Type": "application/json"}, body: jsonBody(body),
			ok: []int{http.StatusConflict},
		})
		if err != nil {
			if opts.ExistOK && (errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) ||
				statusIs(err, http.StatusPaymentRequired)) {
				if _, ierr := c.ModelInfo(ctx, repo, ""); ierr == nil {
					return c.endpoint + "/" + repo, false, nil
				}
			}
			return "", false, fmt.Errorf("create repo %s: %w", repo, err)
		}
		var v struct {
			URL   string          `json:"url"`
			Error json.RawMessage `json:"error"`
		}
		_ = json.Unmarshal(r.body, &v)
		if r.status == http.StatusConflict {
			msg := errorMessageFromBody(r.body, r.header.Get("Content-Type")) + " " + r.header.Get("X-Error-Message")
			if strings.Contains(msg, conflictingOp) && try < c.retry.MaxAttempts {
				if err := c.retry.Sleep(ctx, c.retry.backoff(try)); err != nil {
					return "", false, err
				}
				continue
			}
			if !opts.ExistOK {
				return "", false, fmt.Errorf("create repo %s: %w", repo,
					newHTTPError("POST", c.apiURL("/api/repos/create"), r.status, r.header, r.body, ""))
			}
			if v.URL == "" {
				v.URL = c.endpoint + "/" + repo
			}
			return v.URL, false, nil
		}
		if v.URL == "" {
			v.URL = c.endpoint + "/" + repo
		}
		return v.URL, true, nil
	}
}

func statusIs(err error, status int) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == status
}

// DeleteRepo deletes the model repo. With missingOK a 404 is success.
func (c *Client) DeleteRepo(ctx context.Context, repo string, missingOK bool) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	ns, name, _ := strings.Cut(repo, "/")
	body, _ := json.Marshal(map[string]any{"name": name, "organization": ns, "type": "model"})
	_, err := c.send(ctx, call{
		method: "DELETE", url: c.apiURL("/api/repos/delete"), auth: true,
		headers: map[string]string{"Content-Type": "application/json"}, body: jsonBody(body),
	})
	if err != nil {
		if missingOK && errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete repo %s: %w", repo, err)
	}
	return nil
}

// BranchOptions configure CreateBranch.
type BranchOptions struct {
	// StartingPoint is the revision the branch starts at ("" = head of the default branch).
	StartingPoint string
	// ExistOK makes an existing branch a success.
	ExistOK bool
}

// CreateBranch creates a branch.
func (c *Client) CreateBranch(ctx context.Context, repo, branch string, opts BranchOptions) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	if branch == "" {
		return errors.New("create branch: empty branch name")
	}
	payload := map[string]any{}
	if opts.StartingPoint != "" {
		payload["startingPoint"] = opts.StartingPoint
	}
	body, _ := json.Marshal(payload)
	_, err := c.send(ctx, call{
		method: "POST", url: c.repoAPI(repo) + "/branch/" + escapeSegment(branch), auth: true,
		headers: map[string]string{"Content-Type": "application/json"}, body: jsonBody(body),
	})
	if err == nil {
		return nil
	}
	if opts.ExistOK {
		if errors.Is(err, ErrConflict) {
			return nil
		}
		if errors.Is(err, ErrForbidden) {
			if refs, rerr := c.ListRefs(ctx, repo); rerr == nil && refs.HasBranch(branch) {
				return nil
			}
		}
	}
	return fmt.Errorf("create branch %s in %s: %w", branch, repo, err)
}

// DeleteBranch deletes a branch.
func (c *Client) DeleteBranch(ctx context.Context, repo, branch string) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	_, err := c.send(ctx, call{method: "DELETE", url: c.repoAPI(repo) + "/branch/" + escapeSegment(branch), auth: true})
	if err != nil {
		return fmt.Errorf("delete branch %s in %s: %w", branch, repo, err)
	}
	return nil
}

// CreateTag tags revision (a branch or commit) with tag and an optional message. An existing tag is an error
// matching ErrConflict.
func (c *Client) CreateTag(ctx context.Context, repo, revision, tag, message string) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	if tag == "" {
		return errors.New("create tag: empty tag name")
	}
	if revision == "" {
		revision = "main"
	}
	payload := map[string]any{"tag": tag}
	if message != "" {
		payload["message"] = message
	}
	body, _ := json.Marshal(payload)
	_, err := c.send(ctx, call{
		method: "POST", url: c.repoAPI(repo) + "/tag/" + escapeSegment(revision), auth: true,
		headers: map[string]string{"Content-Type": "application/json"}, body: jsonBody(body),
	})
	if err != nil {
		return fmt.Errorf("create tag %s on %s@%s: %w", tag, repo, revision, err)
	}
	return nil
}

// DeleteTag deletes a tag.
func (c *Client) DeleteTag(ctx context.Context, repo, tag string) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	_, err := c.send(ctx, call{method: "DELETE", url: c.repoAPI(repo) + "/tag/" + escapeSegment(tag), auth: true})
	if err != nil {
		return fmt.Errorf("delete tag %s in %s: %w", tag, repo, err)
	}
	return nil
}

// Ref is a branch, tag, convert or pull-request ref.
type Ref struct {
	Name         string `json:"name"`
	Ref          string `json:"ref"` // refs/heads/main, refs/tags/v1, refs/pr/1
	TargetCommit string `json:"targetCommit"`
}

// Refs lists a repo's refs.
type Refs struct {
	Branches     []Ref `json:"branches"`
	Tags         []Ref `json:"tags"`
	Converts     []Ref `json:"converts"`
	PullRequests []Ref `json:"pullRequests"`
}

// HasBranch reports whether a branch named name exists.
func (r *Refs) HasBranch(name string) bool {
	for _, b := range r.Branches {
		if b.Name == name {
			return true
		}
	}
	return false
}

// HasTag reports whether a tag named name exists.
func (r *Refs) HasTag(name string) bool {
	for _, t := range r.Tags {
		if t.Name == name {
			return true
		}
	}
	return false
}

// ListRefs returns the repo's branches, tags (and pull requests).
func (c *Client) ListRefs(ctx context.Context, repo string) (*Refs, error) {
	if err := validRepoID(repo); err != nil {
		return nil, err
	}
	r, err := c.send(ctx, call{method: "GET", url: c.repoAPI(repo) + "/refs", auth: true, maxBody: MaxListingPageBytes,
		query: url.Values{"include_prs": {"1"}}, redirects: true})
	if err != nil {
		return nil, fmt.Errorf("list refs of %s: %w", repo, err)
	}
	var refs Refs
	if err := json.Unmarshal(r.body, &refs); err != nil {
		return nil, fmt.Errorf("list refs of %s: decoding the answer: %w", repo, err)
	}
	return &refs, nil
}

// Sibling is one file of a ModelInfo.
type Sibling struct {
	RFilename string `json:"rfilename"`
	Size      int64  `json:"size"`
	BlobID    string `json:"blobId"`
	LFS       *struct {
		SHA256      string `json:"sha256"`
		Size        int64  `json:"size"`
		PointerSize int64  `json:"pointerSize"`
	} `json:"lfs"`
}

// ModelInfo is the answer of GET /api/models/{repo}[/revision/{rev}].
type ModelInfo struct {
	ID           string    `json:"id"`
	SHA          string    `json:"sha"` // the commit the revision resolved to
	Private      bool      `json:"private"`
	Gated        any       `json:"gated"`
	Disabled     bool      `json:"disabled"`
	LastModified time.Time `json:"lastModified"`
	Tags         []string  `json:"tags"`
	Siblings     []Sibling `json:"siblings"`
}

// ModelInfo returns the repo's info at revision ("" = default branch), with file sizes and LFS info.
func (c *Client) ModelInfo(ctx context.Context, repo, revision string) (*ModelInfo, error) {
	return c.modelInfo(ctx, repo, revision, true)
}

func (c *Client) modelInfo(ctx context.Context, repo, revision string, blobs bool) (*ModelInfo, error) {
	if err := validRepoID(repo); err != nil {
		return nil, err
	}
	u := c.repoAPI(repo)
	if revision != "" {
		u += "/revision/" + escapeSegment(revision)
	}
	var q url.Values
	if blobs {
		q = url.Values{"blobs": {"true"}}
	}
	r, err := c.send(ctx, call{method: "GET", url: u, auth: true, query: q, redirects: true, maxBody: infoLimit(blobs)})
	if err != nil {
		return nil, fmt.Errorf("model info %s@%s: %w", repo, revisionOrDefault(revision), err)
	}
	var mi ModelInfo
	if err := json.Unmarshal(r.body, &mi); err != nil {
		return nil, fmt.Errorf("model info %s@%s: decoding the answer: %w", repo, revisionOrDefault(revision), err)
	}
	return &mi, nil
}

func revisionOrDefault(r string) string {
	if r == "" {
		return "main"
	}
	return r
}

// infoLimit is the answer cap of a model info request: with blob details it lists every file.
func infoLimit(blobs bool) int64 {
	if blobs {
		return MaxListingPageBytes
	}
	return 0
}

// RevisionHead returns the commit sha a revision (branch, tag, commit) points at.
func (c *Client) RevisionHead(ctx context.Context, repo, revision string) (string, error) {
	mi, err := c.modelInfo(ctx, repo, revisionOrDefault(revision), false)
	if err != nil {
		return "", err
	}
	if mi.SHA == "" {
		return "", fmt.Errorf("revision head of %s@%s: the Hub answered without a sha", repo, revisionOrDefault(revision))
	}
	return mi.SHA, nil
}

// TreeEntry is one file or directory of a tree listing.
type TreeEntry struct {
	Type string `json:"type"` // file | directory
	OID  string `json:"oid"`  // git blob (or tree) sha1
	Size int64  `json:"size"`
	Path string `json:"path"`
	LFS  *struct {
		OID         string `json:"oid"` // sha256
		Size        int64  `json:"size"`
		PointerSize int64  `json:"pointerSize"`
	} `json:"lfs,omitempty"`
	XetHash string `json:"xetHash,omitempty"`
}

// IsLFS reports whether the entry is stored in LFS (its content is identified by sha256).
func (e *TreeEntry) IsLFS() bool { return e.LFS != nil && e.LFS.OID != "" }

// ETag returns the HF cache blob name: the sha256 for LFS files, else the git blob sha1.
func (e *TreeEntry) ETag() string {
	if e.IsLFS() {
		return e.LFS.OID
	}
	return e.OID
}

// ListTree lists the repo's tree at revision under dir ("" = root), recursively when asked, following the
// Link rel="next" pagination.
func (c *Client) ListTree(ctx context.Context, repo, revision, dir string, recursive bool) ([]TreeEntry, error) {
	if err := validRepoID(repo); err != nil {
		return nil, err
	}
	u := c.repoAPI(repo) + "/tree/" + escapeSegment(revisionOrDefault(revision))
	if dir = strings.Trim(dir, "/"); dir != "" {
		u += "/" + escapePath(dir)
	}
	q := url.Values{"recursive": {fmt.Sprint(recursive)}, "expand": {"false"}}
	var out []TreeEntry
	err := c.paginate(ctx, u, q, func(body []byte) (int, bool, error) {
		page, err := decodeTreePage(body)
		if err != nil {
			return 0, false, err
		}
		out = append(out, page...)
		return len(page), true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tree %s@%s: %w", repo, revisionOrDefault(revision), err)
	}
	return out, nil
}

// decodeTreePage decodes one page of a tree listing and checks each entry.
func decodeTreePage(body []byte) ([]TreeEntry, error) {
	var page []TreeEntry
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("decoding tree page: %w", err)
	}
	for i, e := range page {
		if e.Type != "file" && e.Type != "directory" {
			return nil, fmt.Errorf("tree entry %d (%q): unknown type %q", i, e.Path, e.Type)
		}
		if e.Type == "file" {
			if _, err := cleanRepoPath(e.Path); err != nil {
				return nil, fmt.Errorf("tree entry %d: %w", i, err)
			}
			if e.Size < 0 || (e.LFS != nil && e.LFS.Size < 0) {
				return nil, fmt.Errorf("tree entry %q: negative size", e.Path)
			}
			if e.IsLFS() && !isHex(e.LFS.OID, 64) {
				return nil, fmt.Errorf("tree entry %q: bad LFS oid", e.Path)
			}
			if !e.IsLFS() && !isHex(e.OID, 40) {
				return nil, fmt.Errorf("tree entry %q: bad oid", e.Path)
			}
		}
	}
	return page, nil
}

// CommitInfo is one entry of a commit listing.
type CommitInfo struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Message string    `json:"message"`
	Date    time.Time `json:"date"`
	Authors []struct {
		User string `json:"user"`
	} `json:"authors"`
}

// ListCommits returns the commits of revision, newest first, at most limit of them (0 = all).
func (c *Client) ListCommits(ctx context.Context, repo, revision string, limit int) ([]CommitInfo, error) {
	var out []CommitInfo
	err := c.walkCommits(ctx, repo, revision, func(ci CommitInfo) bool {
		out = append(out, ci)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// walkCommits calls fn for each commit of revision, newest first, until fn returns false.
func (c *Client) walkCommits(ctx context.Context, repo, revision string, fn func(CommitInfo) bool) error {
	if err := validRepoID(repo); err != nil {
		return err
	}
	u := c.repoAPI(repo) + "/commits/" + escapeSegment(revisionOrDefault(revision))
	err := c.paginate(ctx, u, nil, func(body []byte) (int, bool, error) {
		var page []CommitInfo
		if err := json.Unmarshal(body, &page); err != nil {
			return 0, false, fmt.Errorf("decoding commit page: %w", err)
		}
		for _, ci := range page {
			if !fn(ci) {
				return len(page), false, nil
			}
		}
		return len(page), true, nil
	})
	if err != nil {
		return fmt.Errorf("list commits %s@%s: %w", repo, revisionOrDefault(revision), err)
	}
	return nil
}

// maxPages bounds a pagination walk (a server that loops would otherwise never end).
const maxPages = 100000

// paginate GETs u and every Link rel="next" page after it, handing each body to page until it returns false.
// page reports how many entries the body held: the walk is capped on total entries and on time (listLimits),
// and each page on its decoded size (MaxListingPageBytes).
func (c *Client) paginate(ctx context.Context, u string, q url.Values, page func(body []byte) (int, bool, error)) (err error) {
	ctx, cancel, explain := c.listContext(ctx, u)
	defer cancel()
	defer func() { err = explain(err) }()
	first := u
	seen := map[string]bool{}
	total := 0
	for n := 0; ; n++ {
		if n >= maxPages {
			return fmt.Errorf("more than %d pages", maxPages)
		}
		r, err := c.send(ctx, call{method: "GET", url: u, query: q, auth: true, redirects: true, maxBody: MaxListingPageBytes})
		if err != nil {
			return err
		}
		entries, more, err := page(r.body)
		if err != nil || !more {
			return err
		}
		total += entries
		if total > c.listLimits.entries {
			return &ResponseTooLargeError{Method: "GET", URL: redactURL(first), What: "entries", Limit: int64(c.listLimits.entries)}
		}
		next := nextLink(r.header.Values("Link"))
		if next == "" {
			return nil
		}
		base, err := url.Parse(r.url)
		if err != nil {
			return err
		}
		nu, err := base.Parse(next)
		if err != nil {
			return fmt.Errorf("bad next link: %w", err)
		}
		u, q = nu.String(), nil
		if seen[u] {
			return fmt.Errorf("pagination loops back to %s", redactURL(u))
		}
		seen[u] = true
	}
}

// nextLink returns the target of rel="next" in RFC 8288 Link header values, or "".
func nextLink(values []string) string {
	for _, v := range values {
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				// Skip a malformed link-value up to the next comma.
				i := strings.IndexByte(v, ',')
				if i < 0 {
					break
				}
				v = v[i+1:]
				continue
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			// Parameters up to the next link-value (a comma outside quotes).
			params, rest := splitParams(v)
			v = rest
			for _, p := range params {
				k, val, _ := strings.Cut(p, "=")
				if !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				val = strings.Trim(strings.TrimSpace(val), `"`)
				for _, rel := range strings.Fields(val) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}

// splitParams reads ";param" items from s until a comma outside quotes, returning them and the rest.
func splitParams(s string) ([]string, string) {
	var params []string
	inQuote := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				if p := strings.TrimSpace(s[start:i]); p != "" {
					params = append(params, p)
				}
				start = i + 1
			}
		case ',':
			if !inQuote {
				if p := strings.TrimSpace(s[start:i]); p != "" {
					params = append(params, p)
				}
				return params, s[i+1:]
			}
		}
	}
	if p := strings.TrimSpace(s[start:]); p != "" {
		params = append(params, p)
	}
	return params, ""
}

func isHex(s string, n int) bool {
	if len(s) != n {
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
