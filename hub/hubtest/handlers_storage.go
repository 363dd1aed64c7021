package hubtest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Multipart uploads. Every batch answer for an object not yet stored opens a fresh upload id (as S3's
// CreateMultipartUpload does), even when another upload of the same object is in flight; each upload keeps
// its parts on disk under uploads/<id>/ until it is completed or its URLs expire, so a client that dies and
// comes back with the URLs (and ETags) it kept can finish the missing parts and complete, within URLTTL and
// across a restart of the server on the same data directory.

// upload is the metadata of a multipart upload in flight (uploads/<id>/meta.json).
type upload struct {
	ID        string    `json:"id"`
	OID       string    `json:"oid"`
	Size      int64     `json:"size"`
	ChunkSize int64     `json:"chunkSize"`
	Parts     int       `json:"parts"`
	Repo      string    `json:"repo"`   // repoKey.grantName of the repository the object is granted to
	RepoID    string    `json:"repoId"` // that repository's id
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

func (s *Server) uploadDir(id string) string { return filepath.Join(s.store.dir, "uploads", id) }

// newUpload opens a multipart upload with chunk size max(ChunkSize, ceil(size/MaxParts)).
func (s *Server) newUpload(k repoKey, rid, oid string, size int64) (*upload, error) {
	s.sweepUploads()
	chunk := max(s.opts.ChunkSize, (size+MaxParts-1)/MaxParts)
	now := s.opts.Now()
	up := &upload{
		ID: randomHex(16), OID: oid, Size: size, ChunkSize: chunk, Parts: int((size + chunk - 1) / chunk),
		Created: now.UTC(), Expires: now.Add(s.opts.URLTTL).UTC(), Repo: k.grantName(), RepoID: rid,
	}
	dir := s.uploadDir(up.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(up)
	if err := writeAtomic(filepath.Join(dir, "meta.json"), b, 0o600); err != nil {
		return nil, err
	}
	s.stats.update(func(st *Stats) { st.UploadsStarted++ })
	return up, nil
}

// uploadMeta loads an upload in flight, or returns nil.
func (s *Server) uploadMeta(id string) *upload {
	if !isHex(id, 32, 32) {
		return nil
	}
	b, err := readAll(filepath.Join(s.uploadDir(id), "meta.json"))
	if err != nil {
		return nil
	}
	var up upload
	if json.Unmarshal(b, &up) != nil {
		return nil
	}
	return &up
}

// uploadLock returns the mutex serializing part installs and the completion of one upload.
func (s *Server) uploadLock(id string) *sync.Mutex {
	s.uploadsMu.Lock()
	defer s.uploadsMu.Unlock()
	m := s.uploadLocks[id]
	if m == nil {
		m = &sync.Mutex{}
		s.uploadLocks[id] = m
	}
	return m
}

// sweepUploads removes uploads whose URLs have expired, and stale temporary files.
func (s *Server) sweepUploads() {
	now := s.opts.Now()
	entries, _ := os.ReadDir(filepath.Join(s.store.dir, "uploads"))
	for _, e := range entries {
		up := s.uploadMeta(e.Name())
		if up != nil && now.After(up.Expires.Add(time.Minute)) {
			m := s.uploadLock(up.ID)
			m.Lock()
			os.RemoveAll(s.uploadDir(up.ID))
			m.Unlock()
			s.uploadsMu.Lock()
			delete(s.uploadLocks, up.ID)
			s.uploadsMu.Unlock()
		}
	}
	tmps, _ := os.ReadDir(filepath.Join(s.store.dir, "tmp"))
	for _, e := range tmps {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(s.store.dir, "tmp", e.Name()))
		}
	}
}

// storageCall is one request to the storage listener.
type storageCall struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	reqID string
	op    Op
	oid   string
	part  int
}

// s3Error answers an S3-style XML error, with X-Error-Message for humans.
func (c *storageCall) s3Error(status int, code, msg string) {
	h := c.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("X-Error-Message", headerText(msg))
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>\n",
		code, xmlEscape(msg), c.reqID)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(status)
	if c.r.Method != http.MethodHead {
		io.WriteString(c.w, body)
	}
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// serveStorage is the storage listener's handler: /_s3/put/<oid>, /_s3/part/<uploadId>/<n>, /_s3/get/<oid>.
func (s *Server) serveStorage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &storageCall{s: s, w: sw, r: r, reqID: newRequestID(r, s.opts.Now()), op: OpUnknown}
	sw.Header().Set("X-Request-Id", c.reqID)
	sw.Header().Set("x-amz-request-id", c.reqID)
	seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	handler := func() {}
	switch {
	case len(seg) == 3 && seg[0] == "_s3" && seg[1] == "put" && r.Method == http.MethodPut:
		c.op, c.oid, handler = OpBasicPut, seg[2], c.put
	case len(seg) == 4 && seg[0] == "_s3" && seg[1] == "part" && r.Method == http.MethodPut:
		c.op, handler = OpPartPut, c.putPart
		c.part, _ = strconv.Atoi(seg[3])
		if up := s.uploadMeta(seg[2]); up != nil {
			c.oid = up.OID
		}
	case len(seg) == 3 && seg[0] == "_s3" && seg[1] == "get" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		c.op, c.oid, handler = OpStorageGet, seg[2], c.get
	default:
		handler = func() { c.s3Error(http.StatusNotFound, "NoSuchKey", "No such storage URL") }
	}
	s.stats.update(func(st *Stats) { st.Requests[c.op]++ })
	defer func() {
		s.stats.status(c.op, sw.code)
		s.log.Debug().Str("req", c.reqID).Str("op", string(c.op)).Str("method", r.Method).Str("path", r.URL.Path).
			Int("status", sw.code).Stringer("took", time.Since(start).Round(time.Microsecond)).Msg("storage")
	}()
	if r.Header.Get("Authorization") != "" {
		s.stats.update(func(st *Stats) { st.TokenLeaks++ })
		s.log.Warn().Str("req", c.reqID).Str("op", string(c.op)).Msg("Authorization header sent to a storage URL (token leak)")
		c.discard()
		c.s3Error(http.StatusBadRequest, "InvalidRequest", leakMessage)
		return
	}
	if c.op != OpUnknown {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		if err := s.sign.check(method, r.URL.Path, r.URL.Query(), storageParams); err != nil {
			c.discard()
			code := "SignatureDoesNotMatch"
			if errors.Is(err, errURLExpired) {
				code = "AccessDenied"
			}
			c.s3Error(http.StatusForbidden, code, err.Error())
			return
		}
	}
	handler()
}

// discard reads and counts the rest of the request body.
func (c *storageCall) discard() {
	n, _ := io.Copy(io.Discard, c.r.Body)
	c.s.stats.received(c.oid, n)
}

// discardBody drains a request body (up to 64 MiB) so that the client sees the answer.
func discardBody(r *http.Request) {
	io.CopyN(io.Discard, r.Body, 64<<20)
}

// needLength refuses a PUT without Content-Length (S3 refuses chunked uploads to presigned URLs).
func (c *storageCall) needLength() bool {
	if c.r.ContentLength < 0 || len(c.r.TransferEncoding) > 0 {
		c.discard()
		c.s3Error(http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header (chunked transfer encoding is not accepted)")
		return false
	}
	return true
}

// storageFaults applies the injected faults of storage PUTs; false means the request is over.
func (c *storageCall) storageFaults() bool {
	s := c.s
	if rule, ok := s.faults.take(c.op, c.oid, c.part, FaultStatus, FaultReset); ok {
		s.stats.fault("rule:" + string(c.op) + ":" + rule.Kind.String())
		if rule.Kind == FaultReset {
			resetAfter(c.w, c.r, rule.AfterBytes, func(n int64) { s.stats.received(c.oid, n) })
			return false
		}
		c.discard()
		c.s3Error(orDefault(rule.Status, http.StatusInternalServerError), "InternalError", orText(rule.Message, "We encountered an internal error. Please try again. (injected fault)"))
		return false
	}
	name := "part"
	if c.op == OpBasicPut {
		name = "put"
	}
	if s.faults.roll(name + "-5xx") {
		s.stats.fault(name + "-5xx")
		c.discard()
		if s.faults.intn(2) == 0 {
			c.s3Error(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again. (injected fault)")
		} else {
			c.s3Error(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate. (injected fault)")
		}
		return false
	}
	if name == "part" && s.faults.roll("part-reset") {
		s.stats.fault(name + "-reset")
		n := int64(0)
		if c.r.ContentLength > 1 {
			n = int64(s.faults.intn(int(min(c.r.ContentLength, 1<<30))))
		}
		resetAfter(c.w, c.r, n, func(n int64) { s.stats.received(c.oid, n) })
		return false
	}
	return true
}

// resetAfter reads n bytes of the body, then cuts the connection.
func resetAfter(w http.ResponseWriter, r *http.Request, n int64, count func(int64)) {
	got, _ := io.CopyN(io.Discard, r.Body, n)
	if count != nil {
		count(got)
	}
	cutConnection(w)
}

// cutConnection closes the client's connection abruptly (TCP reset), without an answer.
func cutConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// receive streams the body into a temporary file, hashing it; it returns the file (closed) and the count.
// On a short body the file is removed and an error returned.
func (c *storageCall) receive(hashes ...hash.Hash) (string, int64, error) {
	f, err := c.s.store.tempFile()
	if err != nil {
		return "", 0, err
	}
	ws := []io.Writer{f}
	for _, h := range hashes {
		ws = append(ws, h)
	}
	n, err := io.CopyBuffer(io.MultiWriter(ws...), c.r.Body, make([]byte, 256<<10))
	c.s.stats.received(c.oid, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != c.r.ContentLength {
		err = fmt.Errorf("received %d bytes, Content-Length says %d", n, c.r.ContentLength)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", n, err
	}
	return f.Name(), n, nil
}

// put handles a basic-transfer PUT: the whole object, verified against its sha256 and size before it is stored.
func (c *storageCall) put() {
	size, err := strconv.ParseInt(c.r.URL.Query().Get("size"), 10, 64)
	if !isHex(c.oid, 64, 64) || err != nil {
		c.discard()
		c.s3Error(http.StatusBadRequest, "InvalidArgument", "Malformed storage URL")
		return
	}
	if !c.needLength() || !c.storageFaults() {
		return
	}
	sh, mh := sha256.New(), md5.New()
	tmp, n, err := c.receive(sh, mh)
	if err != nil {
		c.s3Error(http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	if got := hex.EncodeToString(sh.Sum(nil)); n != size || got != c.oid {
		os.Remove(tmp)
		c.s3Error(http.StatusBadRequest, "BadDigest", fmt.Sprintf("The content does not match the object: got %d bytes with sha256 %s, want %d bytes with sha256 %s", n, got, size, c.oid))
		return
	}
	if err := install(tmp, c.s.store.objectPath(c.oid)); err != nil {
		os.Remove(tmp)
		c.s3Error(http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	q := c.r.URL.Query()
	if err := c.s.grantUpload(q.Get("repo"), q.Get("rid"), c.oid); err != nil {
		c.s3Error(http.StatusNotFound, "NoSuchBucket", "The repository of this upload URL is gone: "+err.Error())
		return
	}
	c.s.stats.update(func(st *Stats) { st.ObjectsStored++ })
	c.w.Header().Set("ETag", `"`+hex.EncodeToString(mh.Sum(nil))+`"`)
	c.w.WriteHeader(http.StatusOK)
}

func partFile(dir string, n int) string { return filepath.Join(dir, fmt.Sprintf("part-%05d", n)) }

// putPart handles a multipart part PUT; the answer carries the part's quoted MD5 as ETag. A re-PUT of a part
// replaces it.
func (c *storageCall) putPart() {
	seg := strings.Split(strings.Trim(c.r.URL.Path, "/"), "/")
	up := c.s.uploadMeta(seg[2])
	if up == nil {
		c.discard()
		c.s3Error(http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist (completed, expired or never created)")
		return
	}
	if c.part < 1 || c.part > MaxParts || strconv.Itoa(c.part) != seg[3] {
		c.discard()
		c.s3Error(http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000")
		return
	}
	c.s.stats.update(func(st *Stats) { st.Parts[partKey(up.OID, c.part)]++ })
	if !c.needLength() || !c.storageFaults() {
		return
	}
	mh := md5.New()
	tmp, _, err := c.receive(mh)
	if err != nil {
		c.s3Error(http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	etag := `"` + hex.EncodeToString(mh.Sum(nil)) + `"`
	dir := c.s.uploadDir(up.ID)
	m := c.s.uploadLock(up.ID)
	m.Lock()
	err = c.installPart(tmp, dir, etag)
	m.Unlock()
	if err != nil {
		os.Remove(tmp)
		c.s3Error(http.StatusNotFound, "NoSuchUpload", "The multipart upload is gone (completed or expired): "+err.Error())
		return
	}
	c.s.stats.update(func(st *Stats) { st.PartsStored[partKey(up.OID, c.part)]++ })
	c.w.Header().Set("ETag", etag)
	c.w.WriteHeader(http.StatusOK)
}

// installPart moves a received part into its upload's directory with its ETag; the caller holds the upload lock.
func (c *storageCall) installPart(tmp, dir, etag string) error {
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		return err
	}
	pf := partFile(dir, c.part)
	os.Remove(pf + ".etag")
	if err := os.Rename(tmp, pf); err != nil {
		return err
	}
	return writeAtomic(pf+".etag", []byte(etag), 0o600)
}

// get serves an LFS object (the target of resolve's redirect and of download actions), with Range support.
func (c *storageCall) get() {
	if !isHex(c.oid, 64, 64) {
		c.s3Error(http.StatusBadRequest, "InvalidArgument", "Malformed storage URL")
		return
	}
	f, err := os.Open(c.s.store.objectPath(c.oid))
	if err != nil {
		c.s3Error(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	defer f.Close()
	h := c.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+c.oid+`"`)
	if name := c.r.URL.Query().Get("filename"); name != "" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	http.ServeContent(c.w, c.r, "", time.Time{}, f)
}

// completeRequest is the body of a multipart completion.
type completeRequest struct {
	OID   string `json:"oid"`
	Parts []struct {
		PartNumber int    `json:"partNumber"`
		ETag       string `json:"etag"`
	} `json:"parts"`
}

// complete answers POST /api/complete_multipart?uploadId=&oid=&expiration=&iat=&signature= (no token: the
// URL authorizes itself). It checks the complete, ascending part list and the ETags, reassembles the parts by
// streaming them into the object store and verifies the sha256 and size.
func (c *call) complete() {
	s := c.s
	q := c.r.URL.Query()
	if err := s.sign.check(http.MethodPost, c.r.URL.Path, q, completeParams); err != nil {
		discardBody(c.r)
		c.fail(http.StatusForbidden, "", "Completion URL refused: "+err.Error())
		return
	}
	body, ok := c.readBody(4 << 20)
	if !ok {
		return
	}
	s.stats.received(c.rt.oid, int64(len(body)))
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != lfsMediaType && mt != "application/json") {
			c.fail(http.StatusUnsupportedMediaType, "", fmt.Sprintf("Content-Type %q: want %s or application/json", ct, lfsMediaType))
			return
		}
	}
	var req completeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		c.fail(http.StatusBadRequest, "", "Invalid completion body: "+err.Error())
		return
	}
	oid := q.Get("oid")
	if req.OID != oid {
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Completion body oid %q does not match the upload's object %s", req.OID, oid))
		return
	}
	if s.faults.roll("complete-5xx") {
		s.stats.fault("complete-5xx")
		c.fail(http.StatusInternalServerError, "", "Internal Error (injected complete-5xx fault)")
		return
	}
	id := q.Get("uploadId")
	m := s.uploadLock(id)
	m.Lock()
	defer m.Unlock()
	up := s.uploadMeta(id)
	if up == nil {
		// Completed already (a retry after a lost answer) or expired.
		if size, stored := s.store.objectSize(oid); stored {
			c.ok(map[string]any{"oid": oid, "size": size})
			return
		}
		c.fail(http.StatusNotFound, "", "No such multipart upload "+id+" (expired or never created)")
		return
	}
	if herr := s.assemble(up, &req); herr != nil {
		c.fail(herr.status, herr.code, herr.msg)
		return
	}
	if err := s.grantUpload(up.Repo, up.RepoID, up.OID); err != nil {
		c.fail(http.StatusNotFound, "RepoNotFound", "The repository of this upload is gone: "+err.Error())
		return
	}
	os.RemoveAll(s.uploadDir(up.ID))
	s.uploadsMu.Lock()
	delete(s.uploadLocks, up.ID)
	s.uploadsMu.Unlock()
	s.stats.update(func(st *Stats) { st.ObjectsStored++ })
	c.ok(map[string]any{"oid": oid, "size": up.Size})
}

// assemble validates the part list and streams the parts into the object store; the caller holds the upload lock.
func (s *Server) assemble(up *upload, req *completeRequest) *httpError {
	if len(req.Parts) != up.Parts {
		return errf(http.StatusBadRequest, "", "Completion lists %d parts; the upload of %s (%d bytes, chunk_size %d) has %d", len(req.Parts), up.OID, up.Size, up.ChunkSize, up.Parts)
	}
	dir := s.uploadDir(up.ID)
	sizes := make([]int64, len(req.Parts))
	for i, p := range req.Parts {
		if p.PartNumber != i+1 {
			return errf(http.StatusBadRequest, "", "InvalidPartOrder: part %d is listed at position %d; parts must be listed in ascending order 1..%d", p.PartNumber, i+1, up.Parts)
		}
		pf := partFile(dir, p.PartNumber)
		fi, err := os.Stat(pf)
		if err != nil {
			return errf(http.StatusBadRequest, "", "InvalidPart: part %d was never uploaded", p.PartNumber)
		}
		etag, err := readAll(pf + ".etag")
		if err != nil {
			etag, err = md5File(pf)
			if err != nil {
				return errf(http.StatusInternalServerError, "", "part %d: %v", p.PartNumber, err)
			}
		}
		if strings.Trim(string(etag), `"`) != strings.Trim(p.ETag, `"`) {
			return errf(http.StatusBadRequest, "", "InvalidPart: the ETag of part %d is %s, not %s", p.PartNumber, etag, p.ETag)
		}
		if i < len(req.Parts)-1 && fi.Size() < s.opts.MinPartSize {
			return errf(http.StatusBadRequest, "", "EntityTooSmall: part %d has %d bytes; every part but the last needs at least %d", p.PartNumber, fi.Size(), s.opts.MinPartSize)
		}
		sizes[i] = fi.Size()
	}
	tmp, err := s.store.tempFile()
	if err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	defer os.Remove(tmp.Name())
	sh := sha256.New()
	w := io.MultiWriter(tmp, sh)
	buf := make([]byte, 1<<20)
	var total int64
	for i := range req.Parts {
		f, err := os.Open(partFile(dir, i+1))
		if err != nil {
			tmp.Close()
			return errf(http.StatusInternalServerError, "", "part %d: %v", i+1, err)
		}
		n, err := io.CopyBuffer(w, f, buf)
		f.Close()
		total += n
		if err != nil {
			tmp.Close()
			return errf(http.StatusInternalServerError, "", "part %d: %v", i+1, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	if got := hex.EncodeToString(sh.Sum(nil)); total != up.Size || got != up.OID {
		return errf(http.StatusBadRequest, "", "The parts do not make the object: %d bytes with sha256 %s, want %d bytes with sha256 %s", total, got, up.Size, up.OID)
	}
	if err := install(tmp.Name(), s.store.objectPath(up.OID)); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	return nil
}

// md5File returns the quoted MD5 of a file.
func md5File(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return []byte(`"` + hex.EncodeToString(h.Sum(nil)) + `"`), nil
}
