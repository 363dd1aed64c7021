package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxBatchObjects is the most objects per LFS batch request (the Hub's clients use 256).
const maxBatchObjects = 256

// lfsMediaType is the git-lfs JSON media type used by the batch and completion calls.
const lfsMediaType = "application/vnd.git-lfs+json"

// batchRequest is the body of POST {repo}.git/info/lfs/objects/batch.
type batchRequest struct {
	Operation string      `json:"operation"`
	Transfers []string    `json:"transfers"`
	Objects   []batchItem `json:"objects"`
	HashAlgo  string      `json:"hash_algo"`
	Ref       *batchRef   `json:"ref,omitempty"`
}

type batchItem struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

type batchRef struct {
	Name string `json:"name"`
}

// BatchResponse is the LFS batch answer.
type BatchResponse struct {
	Transfer string        `json:"transfer"`
	Objects  []BatchObject `json:"objects"`
}

// BatchObject is one object of a BatchResponse.
type BatchObject struct {
	OID           string `json:"oid"`
	Size          int64  `json:"size"`
	Authenticated bool   `json:"authenticated"`
	Actions       *struct {
		Upload *Action `json:"upload"`
		Verify *Action `json:"verify"`
	} `json:"actions"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Action is a batch action: where to send what. For the multipart transfer, Header holds "chunk_size" and the
// part URLs keyed by part number.
type Action struct {
	Href      string            `json:"href"`
	Header    map[string]string `json:"header,omitempty"`
	ExpiresIn int64             `json:"expires_in,omitempty"`
	ExpiresAt string            `json:"expires_at,omitempty"`
}

// transferKind says how an object travels.
type transferKind int

const (
	transferNone      transferKind = iota // the Hub already has it: no actions
	transferBasic                         // one PUT
	transferMultipart                     // parts + completion
	transferXet                           // Xet CAS: xorbs + shard
)

// String is the kind's LFS transfer name (the adapter registered for it).
func (k transferKind) String() string {
	switch k {
	case transferNone:
		return "none"
	case transferBasic:
		return TransferBasic
	case transferMultipart:
		return TransferMultipart
	case transferXet:
		return TransferXet
	}
	return fmt.Sprintf("transferKind(%d)", int(k))
}

// uploadPlan is a validated batch answer for one object.
type uploadPlan struct {
	oid           string
	size          int64
	kind          transferKind
	href          string            // basic: PUT URL; multipart: completion URL
	header        map[string]string // basic: headers to send with the PUT
	chunkSize     int64             // multipart
	partURLs      []string          // multipart: index i is part i+1
	verify        *Action
	expiresAt     time.Time // zero: unknown
	objectErr     string    // per-object error from the Hub
	objectErrCode int
}

// DecodeBatchResponse decodes and validates a batch answer (exported for fuzzing and for tools).
func DecodeBatchResponse(body []byte) (*BatchResponse, error) {
	var br BatchResponse
	if err := json.Unmarshal(body, &br); err != nil {
		return nil, fmt.Errorf("decoding LFS batch answer: %w", err)
	}
	for i, o := range br.Objects {
		if !isHex(o.OID, 64) {
			return nil, fmt.Errorf("LFS batch answer: object %d has an invalid oid %q", i, truncate(o.OID, 80))
		}
		if o.Size < 0 {
			return nil, fmt.Errorf("LFS batch answer: object %s has a negative size", o.OID)
		}
	}
	return &br, nil
}

// planFor validates one object's actions into an uploadPlan. now is used for expiry computations.
func planFor(o *BatchObject, now time.Time) (*uploadPlan, error) {
	p := &uploadPlan{oid: o.OID, size: o.Size}
	if o.Error != nil {
		p.objectErr = o.Error.Message
		p.objectErrCode = o.Error.Code
		if p.objectErr == "" {
			p.objectErr = "error without a message"
		}
		return p, nil
	}
	if o.Actions == nil || o.Actions.Upload == nil {
		p.kind = transferNone
		return p, nil
	}
	up := o.Actions.Upload
	if err := checkHTTPURL(up.Href); err != nil {
		return nil, fmt.Errorf("object %s: upload href: %w", o.OID, err)
	}
	p.href = up.Href
	if v := o.Actions.Verify; v != nil {
		if err := checkHTTPURL(v.Href); err != nil {
			return nil, fmt.Errorf("object %s: verify href: %w", o.OID, err)
		}
		p.verify = v
	}
	p.expiresAt = actionExpiry(up, now)
	cs, multipart := up.Header["chunk_size"]
	if !multipart {
		p.kind = transferBasic
		p.header = up.Header
		p.expiresAt = earliest(p.expiresAt, urlExpiry(up.Href, now))
		return p, nil
	}
	p.kind = transferMultipart
	chunk, err := strconv.ParseInt(strings.TrimSpace(cs), 10, 64)
	if err != nil || chunk <= 0 {
		return nil, fmt.Errorf("object %s: invalid chunk_size %q", o.OID, truncate(cs, 40))
	}
	p.chunkSize = chunk
	parts := map[int]string{}
	for k, v := range up.Header {
		if k == "chunk_size" || !allDigits(k) {
			continue
		}
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("object %s: invalid part number %q", o.OID, truncate(k, 20))
		}
		if _, dup := parts[n]; dup {
			return nil, fmt.Errorf("object %s: part %d listed twice", o.OID, n)
		}
		if err := checkHTTPURL(v); err != nil {
			return nil, fmt.Errorf("object %s: part %d: %w", o.OID, n, err)
		}
		parts[n] = v
	}
	want := partCount(o.Size, chunk)
	if int64(len(parts)) != want {
		return nil, fmt.Errorf("object %s: invalid server response to upload a large file: %d part URLs, want ceil(%d/%d) = %d",
			o.OID, len(parts), o.Size, chunk, want)
	}
	p.partURLs = make([]string, len(parts))
	for n, u := range parts {
		if n > len(parts) {
			return nil, fmt.Errorf("object %s: part numbers are not 1..%d (found %d)", o.OID, len(parts), n)
		}
		p.partURLs[n-1] = u
		p.expiresAt = earliest(p.expiresAt, urlExpiry(u, now))
	}
	p.expiresAt = earliest(p.expiresAt, urlExpiry(up.Href, now))
	return p, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q", redactURL(s))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("not an absolute http(s) URL: %q", redactURL(s))
	}
	return nil
}

// actionExpiry reads the git-lfs expires_at / expires_in fields.
func actionExpiry(a *Action, now time.Time) time.Time {
	var t time.Time
	if a.ExpiresAt != "" {
		if v, err := time.Parse(time.RFC3339, a.ExpiresAt); err == nil {
			t = v
		}
	}
	if a.ExpiresIn > 0 {
		t = earliest(t, now.Add(seconds(a.ExpiresIn)))
	}
	return t
}

// urlExpiry reads the expiry a presigned URL announces in its query: "expiration" (HTTP date or unix seconds,
// the Hub's completion URL), "expires"/"Expires" (unix seconds or RFC 3339), or X-Amz-Date + X-Amz-Expires.
func urlExpiry(raw string, now time.Time) time.Time {
	u, err := url.Parse(raw)
	if err != nil {
		return time.Time{}
	}
	q := u.Query()
	var t time.Time
	for _, key := range []string{"expiration", "expires", "Expires", "expires_at", "X-Expires"} {
		v := q.Get(key)
		if v == "" {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			t = earliest(t, time.Unix(n, 0))
		} else if pt, err := http.ParseTime(v); err == nil {
			t = earliest(t, pt)
		} else if pt, err := time.Parse(time.RFC3339, v); err == nil {
			t = earliest(t, pt)
		}
	}
	if d, e := q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"); d != "" && e != "" {
		start, err1 := time.Parse("20060102T150405Z", d)
		secs, err2 := strconv.ParseInt(e, 10, 64)
		if err1 == nil && err2 == nil && secs > 0 {
			t = earliest(t, start.Add(seconds(secs)))
		}
	}
	return t
}

// earliest returns the earlier non-zero time.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}

// lfsBatchURL returns the batch endpoint of a model repo.
func (c *Client) lfsBatchURL(repo string) string {
	return c.endpoint + "/" + repo + ".git/info/lfs/objects/batch"
}

// batchUpload asks the Hub how to upload objects (≤ maxBatchObjects) and returns one plan per requested oid.
func (c *Client) batchUpload(ctx context.Context, repo, revision string, createPR bool, items []batchItem) (map[string]*uploadPlan, error) {
	return c.batchUploadOffering(ctx, repo, revision, createPR, items, c.offeredTransfers())
}

// batchUploadOffering is batchUpload offering the transfers given (LFS only, after a failed Xet upload).
func (c *Client) batchUploadOffering(ctx context.Context, repo, revision string, createPR bool, items []batchItem,
	transfers []string) (map[string]*uploadPlan, error) {
	if len(items) > maxBatchObjects {
		return nil, fmt.Errorf("batch of %d objects exceeds %d", len(items), maxBatchObjects)
	}
	req := batchRequest{
		Operation: "upload",
		Transfers: transfers,
		Objects:   items,
		HashAlgo:  "sha256",
	}
	if !createPR {
		req.Ref = &batchRef{Name: revisionOrDefault(revision)}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	r, err := c.send(ctx, call{
		method: "POST", url: c.lfsBatchURL(repo), auth: true, body: jsonBody(body),
		headers: map[string]string{"Content-Type": lfsMediaType, "Accept": lfsMediaType},
	})
	if err != nil {
		return nil, fmt.Errorf("LFS batch for %s: %w", repo, err)
	}
	br, err := DecodeBatchResponse(r.body)
	if err != nil {
		return nil, err
	}
	if err := c.checkChosenTransfer(br.Transfer); err != nil {
		return nil, fmt.Errorf("LFS batch answer: %w", err)
	}
	want := map[string]int64{}
	for _, it := range items {
		want[it.OID] = it.Size
	}
	now := time.Now()
	plans := map[string]*uploadPlan{}
	for i := range br.Objects {
		o := &br.Objects[i]
		size, ok := want[o.OID]
		if !ok {
			return nil, fmt.Errorf("LFS batch answer names object %s that was not asked for", o.OID)
		}
		if o.Size != size && o.Error == nil {
			return nil, fmt.Errorf("LFS batch answer: object %s has size %d, asked for %d", o.OID, o.Size, size)
		}
		p, err := planFor(o, now)
		if err != nil {
			return nil, fmt.Errorf("LFS batch answer: %w", err)
		}
		if br.Transfer == TransferXet && p.kind != transferNone && p.objectErr == "" {
			// The upload action is the CAS token (X-Xet-* headers) and its refresh route (href).
			p.kind = transferXet
			p.header = o.Actions.Upload.Header
			p.partURLs, p.chunkSize = nil, 0
		}
		if c.xetMode == XetOn && slices.Contains(transfers, TransferXet) && br.Transfer != TransferXet && p.kind != transferNone && p.objectErr == "" {
			return nil, fmt.Errorf("%w (it answered %q) and --xet on requires it", ErrXetNotOffered, truncate(br.Transfer, 40))
		}
		plans[o.OID] = p
	}
	var missing []string
	for oid := range want {
		if _, ok := plans[oid]; !ok {
			missing = append(missing, oid)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("LFS batch answer lacks %d object(s), first %s", len(missing), missing[0])
	}
	return plans, nil
}

// checkChosenTransfer refuses a batch answer whose "transfer" is one this client did not offer. An empty
// transfer means "basic" (git-lfs); "basic" and "multipart" answers are told apart per object by their actions
// (the Hub answers "basic" or "multipart" for the whole batch, and a multipart object carries "chunk_size").
func (c *Client) checkChosenTransfer(transfer string) error {
	if transfer == "" {
		return nil
	}
	for _, t := range c.offeredTransfers() {
		if t == transfer {
			return nil
		}
	}
	return fmt.Errorf("the Hub chose the %q transfer, which this client did not offer (offered %s)",
		truncate(transfer, 40), strings.Join(c.offeredTransfers(), ", "))
}

// Part is one slice of a multipart upload: part N (1-based) covers [Offset, Offset+Size).
type Part struct {
	N      int
	Offset int64
	Size   int64
}

// partCount returns ceil(size/chunk) (0 for an empty object).
func partCount(size, chunk int64) int64 {
	if size <= 0 || chunk <= 0 {
		return 0
	}
	return (size + chunk - 1) / chunk
}

// PlanParts splits size bytes into parts of chunkSize (the last one shorter).
func PlanParts(size, chunkSize int64) ([]Part, error) {
	if size < 0 {
		return nil, errors.New("negative size")
	}
	if chunkSize <= 0 {
		return nil, errors.New("chunk size must be positive")
	}
	n := partCount(size, chunkSize)
	parts := make([]Part, 0, n)
	for i := int64(0); i < n; i++ {
		off := i * chunkSize
		parts = append(parts, Part{N: int(i + 1), Offset: off, Size: min(chunkSize, size-off)})
	}
	return parts, nil
}
