package hub

import (
	"context"
	"time"
)

// Journal keeps multipart upload state across process death: per object, the batch answer (completion URL, part
// URLs, chunk size, when it was obtained and when it expires) and every finished part's ETag. A new process that
// uploads the same object to the same repo sends only the missing parts with the recorded URLs.
//
// Contract: PutPart must be durable when it returns (the part is not sent again after a crash). Implementations
// must be safe for concurrent use. Records are dropped after completion, and when their URLs turn out expired or
// the completion is refused (the client then asks for a fresh batch for that object alone).
type Journal interface {
	// Get returns the record for key with its finished parts, or nil (and no error) when there is none.
	Get(ctx context.Context, key string) (*UploadRecord, error)
	// Put stores rec under rec.Key, replacing an earlier record for that key and forgetting its parts.
	Put(ctx context.Context, rec *UploadRecord) error
	// PutPart durably records that part n (1-based) of key finished with etag.
	PutPart(ctx context.Context, key string, n int, etag string) error
	// Delete drops the record for key (no error if there is none).
	Delete(ctx context.Context, key string) error
}

// UploadRecord is the journaled state of one multipart upload.
type UploadRecord struct {
	Key           string         `json:"key"`
	Repo          string         `json:"repo"`
	OID           string         `json:"oid"`
	Size          int64          `json:"size"`
	CompletionURL string         `json:"completion_url"`
	ChunkSize     int64          `json:"chunk_size"`
	PartURLs      []string       `json:"part_urls"` // index i is part i+1
	Verify        *Action        `json:"verify,omitempty"`
	ObtainedAt    time.Time      `json:"obtained_at"`
	ExpiresAt     time.Time      `json:"expires_at,omitzero"` // zero: unknown
	ETags         map[int]string `json:"-"`                   // filled by Get from the part entries
}

// journalKey identifies an object upload: the same object pushed to another repo or Hub is another upload.
func (c *Client) journalKey(repo, oid string) string {
	return c.endpoint + " " + repo + " " + oid
}

// expiryMargin is how long before their announced expiry recorded URLs stop being used.
const expiryMargin = 2 * time.Minute

// usable reports whether a journaled record can drive an upload of (oid, size) at now.
func (r *UploadRecord) usable(oid string, size int64, now time.Time) bool {
	if r == nil || r.OID != oid || r.Size != size || r.ChunkSize <= 0 || r.CompletionURL == "" {
		return false
	}
	if int64(len(r.PartURLs)) != partCount(size, r.ChunkSize) {
		return false
	}
	if !r.ExpiresAt.IsZero() && now.Add(expiryMargin).After(r.ExpiresAt) {
		return false
	}
	return true
}
