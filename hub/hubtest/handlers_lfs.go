package hubtest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// lfsMediaType is the git-lfs media type of batch requests and answers.
const lfsMediaType = "application/vnd.git-lfs+json"

// batchRequest is a git-lfs batch request.
type batchRequest struct {
	Operation string        `json:"operation"`
	Transfers []string      `json:"transfers"`
	Ref       *batchRef     `json:"ref"`
	Objects   []batchObject `json:"objects"`
	HashAlgo  string        `json:"hash_algo"`
}

type batchRef struct {
	Name string `json:"name"`
}

type batchObject struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

// decodeBatchRequest parses and validates a batch request body. Objects with a bad oid or size are kept:
// they get a per-object error in the answer.
func decodeBatchRequest(body []byte) (*batchRequest, *httpError) {
	var req batchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errf(http.StatusBadRequest, "", "Invalid batch request: %v", err)
	}
	switch req.Operation {
	case "upload", "download":
	default:
		return nil, errf(http.StatusUnprocessableEntity, "", "Invalid batch operation %q (upload or download)", req.Operation)
	}
	switch req.HashAlgo {
	case "", "sha256", "sha_256":
	default:
		return nil, errf(http.StatusConflict, "", "Unsupported hash algorithm %q (sha256)", req.HashAlgo)
	}
	if len(req.Objects) > MaxBatchObjects {
		return nil, errf(http.StatusRequestEntityTooLarge, "", "Too many objects in one batch: %d > %d", len(req.Objects), MaxBatchObjects)
	}
	if req.Ref != nil {
		req.Ref.Name = strings.TrimPrefix(req.Ref.Name, "refs/heads/")
	}
	return &req, nil
}

type lfsAction struct {
	Href      string            `json:"href"`
	Header    map[string]string `json:"header,omitempty"`
	ExpiresAt string            `json:"expires_at,omitempty"`
}

type lfsObjectError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type batchObjectAnswer struct {
	OID           string               `json:"oid"`
	Size          int64                `json:"size"`
	Authenticated bool                 `json:"authenticated,omitempty"`
	Actions       map[string]lfsAction `json:"actions,omitempty"`
	Error         *lfsObjectError      `json:"error,omitempty"`
}

// batch answers POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch.
func (c *call) batch() {
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != lfsMediaType && mt != "application/json") {
			c.fail(http.StatusUnsupportedMediaType, "", fmt.Sprintf("Content-Type %q: want %s", ct, lfsMediaType))
			return
		}
	}
	body, ok := c.readBody(16 << 20)
	if !ok {
		return
	}
	req, herr := decodeBatchRequest(body)
	if herr != nil {
		c.fail(herr.status, herr.code, herr.msg)
		return
	}
	need := readAccess
	if req.Operation == "upload" {
		need = prAccess
	}
	h, unlock, ok := c.repo(need, false)
	if !ok {
		return
	}
	if req.Operation == "download" && h.st.Gated != "" && !c.owns(c.rt.key.NS) {
		unlock()
		c.gateOK(h)
		return
	}
	threshold := c.s.opts.MultipartThreshold
	if h.st.MultipartThreshold > 0 {
		threshold = h.st.MultipartThreshold
	}
	rid := h.st.ID
	unlock()
	multipartOK, xetOK := false, false
	for _, t := range req.Transfers {
		multipartOK = multipartOK || t == "multipart"
		xetOK = xetOK || t == "xet"
	}
	transfer := "basic"
	var xetAction *lfsAction
	if xetOK && c.s.opts.Xet && req.Operation == "upload" {
		transfer, xetAction = "xet", c.xetUploadAction(rid, req.Ref)
	}
	answers := make([]batchObjectAnswer, 0, len(req.Objects))
	for _, o := range req.Objects {
		a := batchObjectAnswer{OID: o.OID, Size: o.Size}
		switch {
		case !isHex(o.OID, 64, 64):
			a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: "Invalid oid: want 64 lower-case hex digits (sha256)"}
		case o.Size < 0:
			a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: "Invalid size: must be ≥ 0"}
		case req.Operation == "download":
			c.downloadAnswer(h, &a)
		case xetAction != nil:
			c.xetUploadAnswer(h, &a, xetAction)
		default:
			if c.uploadAnswer(h, rid, &a, threshold, multipartOK) {
				transfer = "multipart"
			}
		}
		answers = append(answers, a)
	}
	c.writeJSON(http.StatusOK, lfsMediaType+"; charset=utf-8", map[string]any{
		"transfer": transfer, "objects": answers, "hash_algo": "sha256",
	})
}

// xetUploadAction is the upload action of a batch answered with transfer "xet": the href is the write-token
// route (the client refreshes its CAS token there), the header carries a fresh CAS token.
func (c *call) xetUploadAction(rid string, ref *batchRef) *lfsAction {
	rev := "main"
	if ref != nil && ref.Name != "" {
		rev = ref.Name
	}
	tok, exp := c.s.issueCASToken(c.rt.key, rid, rev, true)
	c.s.stats.update(func(st *Stats) { st.Xet.TokensIssued++ })
	header := c.s.xetTokenHeaders(tok, exp)
	header[XetSessionHeader] = randomHex(16)
	return &lfsAction{Href: c.s.xetTokenURL(c.rt.key, xetWriteScope, rev), Header: header, ExpiresAt: exp.UTC().Format(time.RFC3339)}
}

// xetUploadAnswer fills the answer of one object of a batch answered with transfer "xet": no action when the
// repository has the object already, the Xet upload action otherwise. The batch-error faults apply as for LFS.
func (c *call) xetUploadAnswer(h *repoHandle, a *batchObjectAnswer, act *lfsAction) {
	s := c.s
	if rule, ok := s.faults.take(OpBatch, a.OID, 0, FaultBatchError); ok {
		s.stats.fault("rule:" + string(OpBatch) + ":" + rule.Kind.String())
		a.Error = &lfsObjectError{Code: orDefault(rule.Status, http.StatusUnprocessableEntity), Message: orText(rule.Message, "Object rejected (injected fault)")}
		return
	}
	if s.faults.roll("batch-error") {
		s.stats.fault("batch-error")
		a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: "Object rejected (injected batch-error fault)"}
		return
	}
	if size, ok := h.hasObject(a.OID); ok {
		if size != a.Size {
			a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: fmt.Sprintf("Object %s is stored with size %d, not %d", a.OID, size, a.Size)}
		}
		return
	}
	a.Authenticated = true
	a.Actions = map[string]lfsAction{"upload": *act}
}

// downloadAnswer fills the answer of a download request for one object.
func (c *call) downloadAnswer(h *repoHandle, a *batchObjectAnswer) {
	size, ok := h.hasObject(a.OID)
	if !ok {
		a.Error = &lfsObjectError{Code: http.StatusNotFound, Message: "Object does not exist"}
		return
	}
	if size != a.Size {
		a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: fmt.Sprintf("Object size mismatch: stored %d, requested %d", size, a.Size)}
		return
	}
	a.Authenticated = true
	a.Actions = map[string]lfsAction{"download": {Href: c.s.storageGetURL(a.OID, ""), ExpiresAt: c.s.expiresAt()}}
}

// uploadAnswer fills the answer of an upload request for one object; it reports whether it is multipart.
// An object stored for another repository gets upload actions like a new one: sending its bytes is what
// grants it to this repository.
func (c *call) uploadAnswer(h *repoHandle, rid string, a *batchObjectAnswer, threshold int64, multipartOK bool) bool {
	s := c.s
	if rule, ok := s.faults.take(OpBatch, a.OID, 0, FaultBatchError); ok {
		s.stats.fault("rule:" + string(OpBatch) + ":" + rule.Kind.String())
		a.Error = &lfsObjectError{Code: orDefault(rule.Status, http.StatusUnprocessableEntity), Message: orText(rule.Message, "Object rejected (injected fault)")}
		return false
	}
	if s.faults.roll("batch-error") {
		s.stats.fault("batch-error")
		a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: "Object rejected (injected batch-error fault)"}
		return false
	}
	if size, ok := h.hasObject(a.OID); ok {
		if size != a.Size {
			a.Error = &lfsObjectError{Code: http.StatusUnprocessableEntity, Message: fmt.Sprintf("Object %s is stored with size %d, not %d", a.OID, size, a.Size)}
		}
		return false // stored: no actions
	}
	a.Authenticated = true
	a.Actions = map[string]lfsAction{}
	if c.s.opts.VerifyAction {
		a.Actions["verify"] = lfsAction{Href: c.s.URL() + "/" + c.rt.key.urlPrefix() + c.rt.key.ID() + ".git/info/lfs/objects/verify"}
	}
	if !multipartOK || a.Size < threshold || a.Size == 0 {
		a.Actions["upload"] = lfsAction{Href: s.storagePutURL(c.rt.key, rid, a.OID, a.Size), ExpiresAt: s.expiresAt()}
		return false
	}
	up, err := s.newUpload(c.rt.key, rid, a.OID, a.Size)
	if err != nil {
		a.Actions = nil
		a.Error = &lfsObjectError{Code: http.StatusInternalServerError, Message: "cannot start a multipart upload: " + err.Error()}
		return false
	}
	header := map[string]string{"chunk_size": fmt.Sprint(up.ChunkSize)}
	for n := 1; n <= up.Parts; n++ {
		header[fmt.Sprintf("%05d", n)] = s.partURL(up.ID, n)
	}
	a.Actions["upload"] = lfsAction{Href: s.completeURL(up.ID, a.OID), Header: header, ExpiresAt: s.expiresAt()}
	return true
}

// verify answers POST /{prefix}{ns}/{name}.git/info/lfs/objects/verify ({"oid","size"}).
func (c *call) verify() {
	var req batchObject
	if !c.decodeJSON(&req, 1<<20, false) {
		return
	}
	h, unlock, ok := c.repo(readAccess, false)
	if !ok {
		return
	}
	size, stored := h.hasObject(req.OID)
	unlock()
	switch {
	case !stored:
		c.fail(http.StatusNotFound, "", "Object "+req.OID+" does not exist")
	case size != req.Size:
		c.fail(http.StatusUnprocessableEntity, "", fmt.Sprintf("Object %s has size %d, not %d", req.OID, size, req.Size))
	default:
		c.writeJSON(http.StatusOK, lfsMediaType+"; charset=utf-8", map[string]any{"oid": req.OID, "size": size})
	}
}

// expiresAt is the expiry of URLs issued now, for the "expires_at" of actions.
func (s *Server) expiresAt() string {
	return s.opts.Now().Add(s.opts.URLTTL).UTC().Format(time.RFC3339)
}

// storagePutURL is the signed basic-transfer PUT URL of an object.
func (s *Server) storagePutURL(k repoKey, rid, oid string, size int64) string {
	p := "/_s3/put/" + oid
	q := url.Values{"size": {fmt.Sprint(size)}, "repo": {k.grantName()}, "rid": {rid}}
	s.sign.sign(http.MethodPut, p, q, storageParams, s.opts.URLTTL)
	return s.StorageURL() + p + "?" + q.Encode()
}

// partURL is the signed PUT URL of part n of an upload.
func (s *Server) partURL(uploadID string, n int) string {
	p := fmt.Sprintf("/_s3/part/%s/%d", uploadID, n)
	q := url.Values{}
	s.sign.sign(http.MethodPut, p, q, storageParams, s.opts.URLTTL)
	return s.StorageURL() + p + "?" + q.Encode()
}

// completeURL is the signed completion URL (on the API host) of an upload.
func (s *Server) completeURL(uploadID, oid string) string {
	p := "/api/complete_multipart"
	q := url.Values{"uploadId": {uploadID}, "oid": {oid}}
	s.sign.sign(http.MethodPost, p, q, completeParams, s.opts.URLTTL)
	return s.URL() + p + "?" + q.Encode()
}

// storageGetURL is the signed download URL of an object (name, if set, is only informative).
func (s *Server) storageGetURL(oid, name string) string {
	p := "/_s3/get/" + oid
	q := url.Values{}
	if name != "" {
		q.Set("filename", name)
	}
	s.sign.sign(http.MethodGet, p, q, storageParams, s.opts.URLTTL)
	return s.StorageURL() + p + "?" + q.Encode()
}
