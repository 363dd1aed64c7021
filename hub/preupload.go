package hub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// maxPreuploadFiles is the most paths per preupload call (a server-side limit).
const maxPreuploadFiles = 256

// preuploadAnswer is one file of the preupload answer.
type preuploadAnswer struct {
	Path         string `json:"path"`
	UploadMode   string `json:"uploadMode"`
	ShouldIgnore *bool  `json:"shouldIgnore"`
	OID          string `json:"oid"`
}

// PreuploadResponse is the answer of POST /api/models/{repo}/preupload/{rev}.
type PreuploadResponse struct {
	Files     []preuploadAnswer `json:"files"`
	CommitOID string            `json:"commitOid"`
}

// DecodePreuploadResponse decodes and validates a preupload answer (exported for fuzzing).
func DecodePreuploadResponse(body []byte) (*PreuploadResponse, error) {
	var pr PreuploadResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, fmt.Errorf("decoding preupload answer: %w", err)
	}
	for i, f := range pr.Files {
		if f.Path == "" {
			return nil, fmt.Errorf("preupload answer: file %d has no path", i)
		}
		if f.UploadMode != "lfs" && f.UploadMode != "regular" {
			return nil, fmt.Errorf("preupload answer: %q has upload mode %q, want lfs or regular", truncate(f.Path, 200), truncate(f.UploadMode, 40))
		}
		if f.ShouldIgnore == nil {
			return nil, fmt.Errorf("preupload answer: %q lacks shouldIgnore", truncate(f.Path, 200))
		}
	}
	return &pr, nil
}

// preupload asks the Hub, in batches of ≤256 paths, how each file must travel (lfs or regular), whether it is
// ignored, and which oid the path has now; it fills mode, ignore and remoteOID of files.
func (c *Client) preupload(ctx context.Context, repo, revision string, createPR bool, files []*preparedFile, gitIgnore string) error {
	u := c.repoAPI(repo) + "/preupload/" + escapeSegment(revisionOrDefault(revision))
	for start := 0; start < len(files); start += maxPreuploadFiles {
		batch := files[start:min(start+maxPreuploadFiles, len(files))]
		type item struct {
			Path   string `json:"path"`
			Sample string `json:"sample"`
			Size   int64  `json:"size"`
		}
		req := struct {
			Files     []item `json:"files"`
			GitIgnore string `json:"gitIgnore,omitempty"`
		}{GitIgnore: gitIgnore}
		byPath := map[string]*preparedFile{}
		for _, f := range batch {
			req.Files = append(req.Files, item{Path: f.path, Sample: base64.StdEncoding.EncodeToString(f.sample), Size: f.size})
			byPath[f.path] = f
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		cl := call{method: "POST", url: u, auth: true, body: jsonBody(body), maxBody: MaxListingPageBytes,
			headers: map[string]string{"Content-Type": "application/json"}}
		if createPR {
			cl.query = map[string][]string{"create_pr": {"1"}}
		}
		r, err := c.send(ctx, cl)
		if err != nil {
			return fmt.Errorf("preupload to %s@%s: %w", repo, revisionOrDefault(revision), err)
		}
		pr, err := DecodePreuploadResponse(r.body)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, a := range pr.Files {
			f, ok := byPath[a.Path]
			if !ok {
				return fmt.Errorf("preupload answer names %q, which was not asked about", truncate(a.Path, 200))
			}
			seen[a.Path] = true
			f.mode = a.UploadMode
			f.ignore = *a.ShouldIgnore
			f.remoteOID = a.OID
			if f.size == 0 {
				f.mode = "regular" // S3 rejects empty LFS objects
			}
		}
		for p := range byPath {
			if !seen[p] {
				return fmt.Errorf("preupload answer lacks %q", p)
			}
		}
	}
	return nil
}
