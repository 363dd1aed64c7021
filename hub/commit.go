package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// CommitTrailer is the trailer key whose value identifies a commit made by this client.
const CommitTrailer = "Hubsync-Commit"

// maxPreconditionRetries bounds how often a commit is re-sent after 412 (the branch moved).
const maxPreconditionRetries = 5

// maxLostCheckDepth bounds how many commits of the branch are searched for our commit id after a lost answer.
const maxLostCheckDepth = 200

// commitResult is the commit endpoint's answer.
type commitResult struct {
	CommitOID      string `json:"commitOid"`
	CommitURL      string `json:"commitUrl"`
	PullRequestURL string `json:"pullRequestUrl"`
	Recovered      bool   `json:"-"`
}

// newCommitID returns a random id for the commit trailer.
func newCommitID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validCommitID checks a caller-chosen trailer id: it must survive the commit message intact and be found by a
// plain substring search.
func validCommitID(id string) error {
	if len(id) > 64 {
		return fmt.Errorf("commit id %q is longer than 64 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("commit id %q: only letters, digits, '-', '_' and '.' are allowed", id)
		}
	}
	return nil
}

// withTrailer appends the "Hubsync-Commit: id" trailer to a description.
func withTrailer(description, id string) string {
	description = strings.TrimRight(description, "\n")
	if description != "" {
		description += "\n\n"
	}
	return description + CommitTrailer + ": " + id
}

// ndjsonLine is one line of the commit body.
type ndjsonLine struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// buildCommitBody writes the NDJSON commit payload: header, then file / lfsFile / deletedFile / deletedFolder.
func buildCommitBody(summary, description, parent string, files []*preparedFile, dels []deletion) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	header := map[string]string{"summary": summary, "description": description}
	if parent != "" {
		header["parentCommit"] = parent
	}
	if err := enc.Encode(ndjsonLine{"header", header}); err != nil {
		return nil, err
	}
	for _, f := range files {
		switch f.mode {
		case "lfs":
			v := map[string]any{"path": f.path, "algo": "sha256", "oid": f.sha256, "size": f.size}
			if err := enc.Encode(ndjsonLine{"lfsFile", v}); err != nil {
				return nil, err
			}
		default:
			content, err := readInline(f)
			if err != nil {
				return nil, err
			}
			v := map[string]string{"path": f.path, "encoding": "base64", "content": base64.StdEncoding.EncodeToString(content)}
			if err := enc.Encode(ndjsonLine{"file", v}); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range dels {
		key := "deletedFile"
		if d.folder {
			key = "deletedFolder"
		}
		if err := enc.Encode(ndjsonLine{key, map[string]string{"path": d.path}}); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// readInline reads a regular file for the commit body and checks it is the content that was hashed.
func readInline(f *preparedFile) ([]byte, error) {
	// The commit body is built without a context; a ContentFunc file is small here (maxInlineFile).
	return f.readWhole(context.Background())
}

// commit sends the commit, re-reading the head on 412 and, after a lost answer, looking for the commit on the
// branch (by its trailer id) before sending it again, so one call never makes two commits.
func (c *Client) commit(ctx context.Context, repo, revision, parent string, files []*preparedFile, dels []deletion,
	opts CommitOptions, sink *progressSink) (*commitResult, error) {
	summary := opts.Summary
	if summary == "" {
		summary = "Upload files with hubsync"
	}
	id := opts.CommitID
	if id == "" {
		id = newCommitID()
	}
	description := withTrailer(opts.Description, id)
	u := c.repoAPI(repo) + "/commit/" + escapeSegment(revision)
	var q url.Values
	if opts.CreatePR {
		q = url.Values{"create_pr": {"1"}}
	}
	prog := sink.file(PhaseCommitting, "", 1)
	preconditionRetries, sends := 0, 0
	lostBefore := false
	for {
		body, err := buildCommitBody(summary, description, parent, files, dels)
		if err != nil {
			return nil, err
		}
		sends++
		c.log.Debug().Str("repo", repo).Str("revision", revision).Str("parent", parent).Str("commit_id", id).
			Int("attempt", sends).Msg("sending commit")
		r, err := c.send(ctx, call{
			method: "POST", url: u, query: q, auth: true, noRetry: true, body: jsonBody(body), maxBody: MaxListingPageBytes,
			headers: map[string]string{"Content-Type": "application/x-ndjson"},
		})
		if err == nil {
			var res commitResult
			if jerr := json.Unmarshal(r.body, &res); jerr != nil || res.CommitOID == "" {
				// A 2xx without a readable answer: the commit is there; find it.
				lostBefore = true
				err = &lostResponseError{fmt.Errorf("commit answered %d without a commit id", r.status)}
			} else {
				prog.add(1)
				return &res, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var lost *lostResponseError
		var rl *RateLimitError
		switch {
		case errors.As(err, &lost):
			lostBefore = true
			c.log.Warn().Err(err).Str("commit_id", id).Msg("commit answer lost; checking whether it landed")
			found, ferr := c.findCommit(ctx, repo, revision, parent, id, opts.CreatePR)
			if ferr != nil {
				return nil, fmt.Errorf("commit to %s@%s: the answer was lost (%v) and checking whether it landed failed: %w",
					repo, revision, err, ferr)
			}
			if found != nil {
				prog.add(1)
				return found, nil
			}
			if sends >= c.retry.MaxAttempts {
				return nil, fmt.Errorf("commit to %s@%s: %w", repo, revision, err)
			}
			if serr := c.retry.Sleep(ctx, c.retry.backoff(sends)); serr != nil {
				return nil, serr
			}
		case errors.Is(err, ErrPreconditionFailed):
			if lostBefore {
				// An earlier send may have landed after we looked: look again before re-sending.
				found, ferr := c.findCommit(ctx, repo, revision, parent, id, opts.CreatePR)
				if ferr != nil {
					return nil, fmt.Errorf("commit to %s@%s: checking for an earlier attempt: %w", repo, revision, ferr)
				}
				if found != nil {
					prog.add(1)
					return found, nil
				}
			}
			preconditionRetries++
			if preconditionRetries > maxPreconditionRetries {
				return nil, fmt.Errorf("commit to %s@%s: the branch kept moving: %w", repo, revision, err)
			}
			head, herr := c.RevisionHead(ctx, repo, revision)
			if herr != nil {
				return nil, fmt.Errorf("commit to %s@%s: re-reading the head after 412: %w", repo, revision, herr)
			}
			c.log.Info().Str("old_parent", parent).Str("new_parent", head).Msg("branch moved; committing on the new head")
			parent = head
		case errors.As(err, &rl):
			if sends >= c.retry.MaxAttempts || rl.RetryAfter > c.retry.MaxRetryAfter {
				return nil, fmt.Errorf("commit to %s@%s: %w", repo, revision, err)
			}
			wait := rl.RetryAfter
			if wait <= 0 {
				wait = c.retry.backoff(sends)
			}
			if serr := c.retry.Sleep(ctx, wait); serr != nil {
				return nil, serr
			}
		default:
			return nil, fmt.Errorf("commit to %s@%s: %w", repo, revision, err)
		}
	}
}

// HasCommitID reports whether a commit's title or message carries the trailer "Hubsync-Commit: id".
func (ci CommitInfo) HasCommitID(id string) bool {
	needle := CommitTrailer + ": " + id
	return strings.Contains(ci.Message, needle) || strings.Contains(ci.Title, needle)
}

// FindCommit searches the newest depth commits of revision (newest first, stopping after the commit stopAt when
// it is not "") for the one whose trailer carries id (see CommitOptions.CommitID). It returns nil, nil when no
// such commit is there; a revision that does not exist is an error wrapping ErrRevisionNotFound. It is the one
// way to find a commit by its id, for the client's lost-answer check and for callers that publish exactly once.
func (c *Client) FindCommit(ctx context.Context, repo, revision, id, stopAt string, depth int) (*CommitInfo, error) {
	var hit *CommitInfo
	n := 0
	err := c.walkCommits(ctx, repo, revision, func(ci CommitInfo) bool {
		n++
		if ci.HasCommitID(id) {
			hit = &ci
			return false
		}
		return ci.ID != stopAt && (depth <= 0 || n < depth)
	})
	if err != nil {
		return nil, err
	}
	return hit, nil
}

// findCommit looks for the commit carrying our id among the commits newer than parent on revision (or, for a
// pull request, on the repo's PR refs). nil, nil: not there.
func (c *Client) findCommit(ctx context.Context, repo, revision, parent, id string, createPR bool) (*commitResult, error) {
	if !createPR {
		hit, err := c.FindCommit(ctx, repo, revision, id, parent, maxLostCheckDepth)
		if err != nil && !(errors.Is(err, ErrRevisionNotFound) && parent == "") {
			return nil, err
		}
		if hit == nil {
			return nil, nil
		}
		c.log.Info().Str("commit", hit.ID).Msg("the commit had landed; not sending it again")
		return &commitResult{CommitOID: hit.ID, CommitURL: c.endpoint + "/" + repo + "/commit/" + hit.ID, Recovered: true}, nil
	}
	refs, err := c.ListRefs(ctx, repo)
	if err != nil {
		return nil, err
	}
	// Newest pull requests last in the listing is not guaranteed: check them all, newest number first.
	prs := append([]Ref(nil), refs.PullRequests...)
	sortRefsByPRNumberDesc(prs)
	for i, pr := range prs {
		if i >= 20 {
			break
		}
		hit, err := c.FindCommit(ctx, repo, pr.Ref, id, parent, 20)
		if err != nil {
			return nil, err
		}
		if hit != nil {
			num := strings.TrimPrefix(pr.Ref, "refs/pr/")
			return &commitResult{
				CommitOID: hit.ID, CommitURL: c.endpoint + "/" + repo + "/commit/" + hit.ID,
				PullRequestURL: c.endpoint + "/" + repo + "/discussions/" + num, Recovered: true,
			}, nil
		}
	}
	return nil, nil
}

func sortRefsByPRNumberDesc(refs []Ref) {
	num := func(r Ref) int {
		n := 0
		for _, ch := range strings.TrimPrefix(r.Ref, "refs/pr/") {
			if ch < '0' || ch > '9' {
				return -1
			}
			n = n*10 + int(ch-'0')
		}
		return n
	}
	for i := 1; i < len(refs); i++ {
		for j := i; j > 0 && num(refs[j]) > num(refs[j-1]); j-- {
			refs[j], refs[j-1] = refs[j-1], refs[j]
		}
	}
}
