package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// rebatchError means the URLs in hand cannot finish the upload (expired or revoked, completion refused): the
// object needs a fresh batch answer.
type rebatchError struct{ err error }

func (e *rebatchError) Error() string { return e.err.Error() }
func (e *rebatchError) Unwrap() error { return e.err }

// maxRebatches bounds how often one object asks for fresh URLs within one upload.
const maxRebatches = 2

// urlRefused reports whether a storage/completion answer means the signed URL is no good any more
// (S3 answers 403 for an expired signature and 404 for a finished or aborted upload).
func urlRefused(err error) bool {
	var he *HTTPError
	if !errors.As(err, &he) || transientStorageError(he) {
		return false
	}
	switch he.Status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// planFromRecord turns a journaled batch answer back into a plan.
func planFromRecord(rec *UploadRecord) *uploadPlan {
	return &uploadPlan{
		oid: rec.OID, size: rec.Size, kind: transferMultipart, href: rec.CompletionURL,
		chunkSize: rec.ChunkSize, partURLs: rec.PartURLs, verify: rec.Verify, expiresAt: rec.ExpiresAt,
	}
}

// sameUpload reports whether two multipart plans belong to one storage upload (same completion endpoint and
// upload id, same part layout), so that parts stored under the first are still parts of the second.
func sameUpload(a, b *uploadPlan) bool {
	if a.kind != transferMultipart || b.kind != transferMultipart || a.chunkSize != b.chunkSize ||
		len(a.partURLs) != len(b.partURLs) {
		return false
	}
	ua, err1 := url.Parse(a.href)
	ub, err2 := url.Parse(b.href)
	if err1 != nil || err2 != nil {
		return false
	}
	id := ua.Query().Get("uploadId")
	return id != "" && id == ub.Query().Get("uploadId") && ua.Scheme == ub.Scheme && ua.Host == ub.Host && ua.Path == ub.Path
}

// partBudgets holds the attempt budget of each part of one upload (0: the basic PUT).
type partBudgets struct {
	mu sync.Mutex
	m  map[int]*attemptBudget
}

func (b *partBudgets) get(n int) *attemptBudget {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[n] == nil {
		b.m[n] = &attemptBudget{}
	}
	return b.m[n]
}

// urlExpiryMargin is how long a signed URL must still be valid for a transfer to start with it.
const urlExpiryMargin = 10 * time.Second

// checkNotExpired returns a *rebatchError when the signed URL u (of a plan expiring at planExpiry) is expired or
// about to, so that fresh URLs are asked for before any byte is sent.
func checkNotExpired(what, u string, planExpiry time.Time) error {
	now := time.Now()
	exp := earliest(planExpiry, urlExpiry(u, now))
	if !exp.IsZero() && !now.Add(urlExpiryMargin).Before(exp) {
		return &rebatchError{fmt.Errorf("%s: the signed URL expires at %s", what, exp.UTC().Format(time.RFC3339))}
	}
	return nil
}

// openChecked opens the file and checks it still has the size it was hashed with.
func openChecked(f *preparedFile) (*os.File, error) {
	fh, err := os.Open(f.LocalPath)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	if st.Size() != f.size {
		fh.Close()
		return nil, fmt.Errorf("%s changed: %d bytes now, %d when hashed", f.LocalPath, st.Size(), f.size)
	}
	return fh, nil
}

// actionHeaders filters a batch action's headers: framing headers are the transport's business, and a header
// carrying our token is never forwarded to a storage host.
func (c *Client) actionHeaders(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Transfer-Encoding", "Host", "Connection":
			continue
		}
		if c.token != "" && strings.Contains(v, c.token) {
			continue
		}
		out[k] = v
	}
	return out
}

// putRange PUTs bytes [off, off+n) of src to url with an exact Content-Length, one fresh body per attempt.
// Progress counts the bytes sent; the caller rolls the returned counter back when the PUT failed. An error of the
// content itself (a produced range that no longer matches its digest) wins over the transfer's error.
func (c *Client) putRange(ctx context.Context, src *source, off, n int64, url string, headers map[string]string,
	budget *attemptBudget, prog *fileProgress) (*reply, *attemptCounter, error) {
	ac := &attemptCounter{p: prog}
	rb := src.rangeBody(ctx, off, n)
	r, err := c.send(ctx, call{
		method: "PUT", url: url, headers: headers, budget: budget,
		body: func() (io.Reader, int64, error) {
			r, n, err := rb.open()
			if err != nil {
				return nil, 0, err
			}
			return ac.wrap(r), n, nil
		},
	})
	rb.close()
	if cerr := rb.err(); cerr != nil {
		err = cerr
	}
	return r, ac, err
}

// completionPart is one entry of the completion body.
type completionPart struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
}

// completeMultipart POSTs the ETags (verbatim, quotes included) in part order to the completion URL, without the
// token. A refusal other than a transient one means the upload must start over with fresh URLs.
func (c *Client) completeMultipart(ctx context.Context, href, oid string, etags map[int]string, n int) error {
	parts := make([]completionPart, 0, n)
	for num, e := range etags {
		parts = append(parts, completionPart{PartNumber: num, ETag: e})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].PartNumber < parts[j].PartNumber })
	if len(parts) != n {
		return fmt.Errorf("completing: %d of %d parts have an ETag", len(parts), n)
	}
	body, err := json.Marshal(struct {
		OID   string           `json:"oid"`
		Parts []completionPart `json:"parts"`
	}{oid, parts})
	if err != nil {
		return err
	}
	_, err = c.send(ctx, call{
		method: "POST", url: href, body: jsonBody(body),
		headers: map[string]string{"Content-Type": lfsMediaType, "Accept": lfsMediaType},
	})
	if err != nil {
		err = fmt.Errorf("completing the multipart upload: %w", err)
		var he *HTTPError
		if errors.As(err, &he) && he.Status >= 400 && he.Status < 500 && !retryableStatus(he.Status) && !transientStorageError(he) {
			return &rebatchError{err}
		}
		return err
	}
	return nil
}

// verifyObject runs the batch answer's verify action. The token goes along only when the verify URL is on the
// endpoint's own origin (the pre-request hook enforces it).
func (c *Client) verifyObject(ctx context.Context, v *Action, oid string, size int64) error {
	body, err := json.Marshal(struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	}{oid, size})
	if err != nil {
		return err
	}
	headers := c.actionHeaders(v.Header)
	headers["Content-Type"] = lfsMediaType
	headers["Accept"] = lfsMediaType
	if _, err := c.send(ctx, call{method: "POST", url: v.Href, auth: true, headers: headers, body: jsonBody(body)}); err != nil {
		return fmt.Errorf("verifying the upload: %w", err)
	}
	return nil
}
