package hubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/xet"
)

// Limits of the CAS, as the Xet service documents them.
const (
	// MaxXorbBytes is the largest serialized xorb accepted (64 MiB, plus room for the footer).
	MaxXorbBytes = 64<<20 + 1<<20
	// MaxShardBytes is the largest shard accepted.
	MaxShardBytes = 64 << 20
)

// readBody reads the whole request body up to limit; on failure it has answered.
func (c *casCall) readBody(limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, limit))
	c.s.stats.update(func(st *Stats) { st.Xet.BytesReceived += int64(len(b)) })
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		c.reject("too-large", http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
		return nil, false
	case err != nil:
		c.fail(http.StatusBadRequest, "cannot read the request body: "+err.Error())
		return nil, false
	case c.r.ContentLength >= 0 && int64(len(b)) != c.r.ContentLength:
		c.fail(http.StatusBadRequest, fmt.Sprintf("received %d bytes, Content-Length says %d", len(b), c.r.ContentLength))
		return nil, false
	}
	return b, true
}

// reject answers a refused upload and counts it by reason.
func (c *casCall) reject(reason string, status int, msg string) {
	c.s.stats.update(func(st *Stats) { st.Xet.Rejected[reason]++ })
	c.fail(status, msg)
}

// putXorb answers POST /v1/xorbs/default/{hash}: the xorb is parsed (every chunk header checked, every chunk
// decompressed), its chunk hashes and xorb hash recomputed and compared with the path; {"was_inserted": bool}.
func (c *casCall) putXorb() {
	want, err := xet.ParseHash(c.arg)
	if err != nil {
		discardBody(c.r)
		c.reject("bad-hash", http.StatusBadRequest, "invalid xorb hash in the path: "+err.Error())
		return
	}
	body, ok := c.readBody(MaxXorbBytes)
	if !ok {
		return
	}
	xo, err := xet.ParseXorb(body)
	if err != nil {
		c.reject("malformed-xorb", http.StatusBadRequest, "malformed xorb: "+err.Error())
		return
	}
	if xo.Hash != want {
		c.reject("xorb-hash-mismatch", http.StatusBadRequest, fmt.Sprintf("xorb hash mismatch: the chunks hash to %s, the path says %s", xo.Hash, want))
		return
	}
	inserted, err := c.s.xet.putXorb(body, xo)
	if err != nil {
		c.fail(http.StatusInternalServerError, "cannot store the xorb: "+err.Error())
		return
	}
	c.s.stats.update(func(st *Stats) {
		st.Xet.XorbsReceived++
		if inserted {
			st.Xet.XorbsStored++
			st.Xet.ChunksStored += int64(len(xo.Chunks))
		}
	})
	c.okJSON(map[string]bool{"was_inserted": inserted})
}

// putShard answers POST /v1/shards (and /v2/shards): the shard is parsed and validated (every referenced
// xorb stored, CAS info matching the stored xorbs, verification hashes, file hashes, the sha256 extension
// against the reconstructed bytes), then each file becomes an LFS object granted to the token's repository.
// {"result": 1} (SyncPerformed), or 0 when the same shard was stored before.
func (c *casCall) putShard() {
	body, ok := c.readBody(MaxShardBytes)
	if !ok {
		return
	}
	sh, err := xet.ParseShard(body)
	if err != nil {
		c.reject("malformed-shard", http.StatusBadRequest, "malformed shard: "+err.Error())
		return
	}
	x := c.s.xet
	own := map[xet.Hash]bool{}
	for i := range sh.CAS {
		ci := &sh.CAS[i]
		if reason, msg := checkCASInfo(x.xorb(ci.Xorb), ci); reason != "" {
			c.reject(reason, http.StatusBadRequest, msg)
			return
		}
		own[ci.Xorb] = true
	}
	files := make([]*xetFile, 0, len(sh.Files))
	var dedupChunks, dedupBytes int64
	for i := range sh.Files {
		f, reason, msg := c.checkFile(&sh.Files[i])
		if reason != "" {
			c.reject(reason, http.StatusBadRequest, msg)
			return
		}
		for _, t := range f.Terms {
			if !own[t.Xorb] {
				dedupChunks += int64(t.End - t.Start)
				dedupBytes += int64(t.Bytes)
			}
		}
		files = append(files, f)
	}
	for _, f := range files {
		if herr := c.materialize(f); herr != nil {
			c.fail(herr.status, herr.msg)
			return
		}
	}
	existed, err := x.putShard(sha256.Sum256(body), body)
	if err != nil {
		c.fail(http.StatusInternalServerError, "cannot store the shard: "+err.Error())
		return
	}
	result := 1 // SyncPerformed
	if existed {
		result = 0 // the shard exists already (the files are registered all the same)
	}
	c.s.stats.update(func(st *Stats) {
		st.Xet.ShardsStored++
		st.Xet.FilesStored += int64(len(files))
		st.Xet.ChunksDeduplicated += dedupChunks
		st.Xet.BytesDeduplicated += dedupBytes
	})
	if c.arg == "v2" {
		b := []byte(fmt.Sprintf(`{"result":%d}`+"\n", result))
		c.w.Header().Set("Content-Type", "application/x-ndjson")
		c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		c.w.WriteHeader(http.StatusOK)
		c.w.Write(b)
		return
	}
	c.okJSON(map[string]int{"result": result})
}

// checkCASInfo compares a shard's CAS info with the stored xorb; it returns a reason and message on mismatch.
func checkCASInfo(xi *xorbIndex, ci *xet.CASInfo) (string, string) {
	if xi == nil {
		return "missing-xorb", fmt.Sprintf("the shard's CAS info names xorb %s, which was never uploaded (upload every xorb before the shard)", ci.Xorb)
	}
	if len(ci.Chunks) != len(xi.Chunks) {
		return "cas-info-mismatch", fmt.Sprintf("CAS info of xorb %s lists %d chunks, the xorb has %d", ci.Xorb, len(ci.Chunks), len(xi.Chunks))
	}
	var pos uint32
	for j, ch := range ci.Chunks {
		if ch.Hash != xi.Chunks[j].Hash || ch.Len != xi.Chunks[j].Len || ch.ByteStart != pos {
			return "cas-info-mismatch", fmt.Sprintf("CAS info of xorb %s: chunk %d (%s, %d bytes at %d) does not match the xorb (%s, %d bytes at %d)",
				ci.Xorb, j, ch.Hash, ch.Len, ch.ByteStart, xi.Chunks[j].Hash, xi.Chunks[j].Len, pos)
		}
		pos += ch.Len
	}
	if ci.Bytes != pos {
		return "cas-info-mismatch", fmt.Sprintf("CAS info of xorb %s says %d unpacked bytes, its chunks hold %d", ci.Xorb, ci.Bytes, pos)
	}
	return "", ""
}

// shardSHA256 is the sha256 hex of a shard's metadata extension. The official clients write it as they write
// every hash, through the Xet hex form (each 8-byte group reversed): huggingface.js 2.17.5 parses the sha256
// hex with its Xet hash parser, so the shard's raw bytes are the digest with each 8-byte group reversed.
func shardSHA256(fi *xet.FileInfo) string { return xet.Hash(fi.SHA256).String() }

// checkFile validates one file reconstruction of a shard against the stored xorbs (xet.VerifyFileInfo: chunk
// ranges, byte counts, verification hashes, file hash), after the checks that have their own refusal reason.
func (c *casCall) checkFile(fi *xet.FileInfo) (*xetFile, string, string) {
	if !fi.HasSHA256 {
		return nil, "missing-sha256", fmt.Sprintf("file %s has no sha256 metadata extension (required: the commit refers to the file by sha256)", fi.Hash)
	}
	if !fi.HasVerification && len(fi.Terms) > 0 {
		return nil, "missing-verification", fmt.Sprintf("file %s has no verification entries (required on upload)", fi.Hash)
	}
	x := c.s.xet
	f := &xetFile{Hash: fi.Hash, SHA256: shardSHA256(fi)}
	for i, t := range fi.Terms {
		if x.xorb(t.Xorb) == nil {
			return nil, "missing-xorb", fmt.Sprintf("file %s term %d names xorb %s, which was never uploaded", fi.Hash, i, t.Xorb)
		}
		f.Terms = append(f.Terms, xetTerm{Xorb: t.Xorb, Start: t.ChunkStart, End: t.ChunkEnd, Bytes: t.Bytes})
		f.Size += int64(t.Bytes)
	}
	err := xet.VerifyFileInfo(fi, func(h xet.Hash) ([]xet.ChunkRef, bool) {
		xi := x.xorb(h)
		if xi == nil {
			return nil, false
		}
		return xi.Chunks, true
	})
	if err != nil {
		return nil, "bad-file-info", err.Error()
	}
	return f, "", ""
}

// materialize reassembles a registered file into the LFS object store (checking its sha256), grants it to the
// token's repository and records the reconstruction.
func (c *casCall) materialize(f *xetFile) *httpError {
	s, x := c.s, c.s.xet
	if _, stored := s.store.objectSize(f.SHA256); !stored {
		tmp, err := s.store.tempFile()
		if err != nil {
			return errf(http.StatusInternalServerError, "", "%v", err)
		}
		defer os.Remove(tmp.Name())
		sh := sha256.New()
		w := io.MultiWriter(tmp, sh)
		var cur *xet.Xorb
		for _, t := range f.Terms {
			if cur == nil || cur.Hash != t.Xorb {
				if cur, err = x.readXorb(t.Xorb); err != nil {
					tmp.Close()
					return errf(http.StatusInternalServerError, "", "xorb %s: %v", t.Xorb, err)
				}
			}
			for _, ch := range cur.Chunks[t.Start:t.End] {
				if _, err := w.Write(ch.Data); err != nil {
					tmp.Close()
					return errf(http.StatusInternalServerError, "", "%v", err)
				}
			}
		}
		if err := tmp.Close(); err != nil {
			return errf(http.StatusInternalServerError, "", "%v", err)
		}
		if got := hex.EncodeToString(sh.Sum(nil)); got != f.SHA256 {
			s.stats.update(func(st *Stats) { st.Xet.Rejected["sha256-mismatch"]++ })
			return errf(http.StatusBadRequest, "", "file %s: the reconstructed bytes have sha256 %s, the shard says %s", f.Hash, got, f.SHA256)
		}
		if err := install(tmp.Name(), s.store.objectPath(f.SHA256)); err != nil {
			return errf(http.StatusInternalServerError, "", "%v", err)
		}
		s.stats.update(func(st *Stats) { st.ObjectsStored++ })
	}
	if err := s.grantUpload(c.tok.repo.grantName(), c.tok.rid, f.SHA256); err != nil {
		return errf(http.StatusNotFound, "", "the repository of this CAS token is gone: %v", err)
	}
	if err := x.putFile(f); err != nil {
		return errf(http.StatusInternalServerError, "", "%v", err)
	}
	return nil
}

// chunkQuery answers GET /v1/chunks/default[-merkledb]/{hash}: 404 for an unknown chunk, else a shard (with
// footer) holding the CAS info of the xorb that contains it, chunk hashes keyed with a fresh HMAC key.
func (c *casCall) chunkQuery() {
	ch, err := xet.ParseHash(c.arg)
	if err != nil {
		c.fail(http.StatusBadRequest, "invalid chunk hash: "+err.Error())
		return
	}
	c.s.stats.update(func(st *Stats) { st.Xet.DedupQueries++ })
	xh, ok := c.s.xet.chunkXorb(ch)
	if !ok {
		c.fail(http.StatusNotFound, "chunk not found")
		return
	}
	xi := c.s.xet.xorb(xh)
	var key xet.Hash
	rand.Read(key[:])
	now := c.s.opts.Now()
	sh := &xet.Shard{HMACKey: key, CreatedAt: uint64(now.Unix()), KeyExpiresAt: uint64(now.Add(time.Hour).Unix())}
	ci := xet.CASInfo{Xorb: xi.Hash, BytesOnDisk: uint32(xi.Size)}
	for _, cr := range xi.Chunks {
		ci.Chunks = append(ci.Chunks, xet.CASChunk{Hash: xet.HMAC(key, cr.Hash), ByteStart: ci.Bytes, Len: cr.Len})
		ci.Bytes += cr.Len
	}
	sh.CAS = append(sh.CAS, ci)
	b := sh.Marshal(true)
	c.s.stats.update(func(st *Stats) { st.Xet.DedupHits++ })
	c.w.Header().Set("Content-Type", "application/octet-stream")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
}

// reconTerm is a term of a reconstruction answer.
type reconTerm struct {
	Hash           string    `json:"hash"`
	UnpackedLength uint32    `json:"unpacked_length"`
	Range          chunkSpan `json:"range"`
}

type chunkSpan struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// byteSpan is an HTTP byte range, end inclusive.
type byteSpan struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// reconstruction answers GET /v1/reconstructions/{file_id} (and v2) with an optional Range on the file:
// the terms covering the range and, per xorb, signed URLs with the byte ranges to fetch (end inclusive).
// The file must be an object of the token's repository.
func (c *casCall) reconstruction() {
	ver, id, _ := strings.Cut(c.arg, "/")
	fh, err := xet.ParseHash(id)
	if err != nil {
		c.fail(http.StatusBadRequest, "invalid file hash: "+err.Error())
		return
	}
	f := c.s.xet.file(fh)
	if f == nil || !c.repoHas(f.SHA256) {
		c.fail(http.StatusNotFound, "file not found")
		return
	}
	first, last := int64(0), f.Size-1
	if rh := c.r.Header.Get("Range"); rh != "" && f.Size > 0 {
		a, b, ok := parseSingleRange(rh, f.Size)
		if !ok {
			c.w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(f.Size, 10))
			c.fail(http.StatusRequestedRangeNotSatisfiable, "invalid or unsatisfiable Range "+rh)
			return
		}
		first, last = a, b
	}
	terms := []reconTerm{}
	type fetch struct {
		xorb   string
		chunks chunkSpan
	}
	var fetches []fetch
	offsetInFirst := int64(0)
	pos := int64(0)
	for _, t := range f.Terms {
		xi := c.s.xet.xorb(t.Xorb)
		if xi == nil {
			c.fail(http.StatusInternalServerError, "xorb "+t.Xorb.String()+" is gone")
			return
		}
		start, end := t.Start, t.End
		cpos := pos
		// Skip the chunks that end before the range, keep those that start before its end.
		for start < end && cpos+int64(xi.Chunks[start].Len) <= first {
			cpos += int64(xi.Chunks[start].Len)
			start++
		}
		begin := cpos
		var n uint32
		e := start
		for e < end && cpos <= last {
			cpos += int64(xi.Chunks[e].Len)
			n += xi.Chunks[e].Len
			e++
		}
		pos += int64(t.Bytes)
		if start >= e {
			continue
		}
		if len(terms) == 0 {
			offsetInFirst = first - begin
		}
		terms = append(terms, reconTerm{Hash: t.Xorb.String(), UnpackedLength: n, Range: chunkSpan{start, e}})
		fetches = append(fetches, fetch{xorb: t.Xorb.String(), chunks: chunkSpan{start, e}})
		if pos > last {
			break
		}
	}
	c.s.stats.update(func(st *Stats) { st.Xet.Reconstructions++ })
	// One fetch entry per merged chunk interval of a xorb, each with its own signed URL (clients key their
	// fetch plans by URL), each a single byte range.
	byXorb := map[string][]chunkSpan{}
	for _, ft := range fetches {
		byXorb[ft.xorb] = append(byXorb[ft.xorb], ft.chunks)
	}
	type entry struct {
		chunks chunkSpan
		bytes  byteSpan
		url    string
	}
	entries := map[string][]entry{}
	for xh, spans := range byXorb {
		xhash, _ := xet.ParseHash(xh)
		xi := c.s.xet.xorb(xhash)
		for _, sp := range mergeSpans(spans) {
			entries[xh] = append(entries[xh], entry{sp, byteSpan{xi.Offsets[sp.Start], xi.Offsets[sp.End] - 1}, c.s.xorbURL(xh)})
		}
	}
	if ver == "v2" {
		type v2Range struct {
			Chunks chunkSpan `json:"chunks"`
			Bytes  byteSpan  `json:"bytes"`
		}
		type v2Entry struct {
			URL    string    `json:"url"`
			Ranges []v2Range `json:"ranges"`
		}
		xorbs := map[string][]v2Entry{}
		for xh, es := range entries {
			for _, en := range es {
				xorbs[xh] = append(xorbs[xh], v2Entry{URL: en.url, Ranges: []v2Range{{en.chunks, en.bytes}}})
			}
		}
		c.okJSON(map[string]any{"offset_into_first_range": offsetInFirst, "terms": terms, "xorbs": xorbs})
		return
	}
	type v1Fetch struct {
		Range    chunkSpan `json:"range"`
		URL      string    `json:"url"`
		URLRange byteSpan  `json:"url_range"`
	}
	info := map[string][]v1Fetch{}
	for xh, es := range entries {
		for _, en := range es {
			info[xh] = append(info[xh], v1Fetch{Range: en.chunks, URL: en.url, URLRange: en.bytes})
		}
	}
	c.okJSON(map[string]any{"offset_into_first_range": offsetInFirst, "terms": terms, "fetch_info": info})
}

// mergeSpans sorts chunk intervals and merges overlapping or adjacent ones.
func mergeSpans(spans []chunkSpan) []chunkSpan {
	sorted := append([]chunkSpan(nil), spans...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	var out []chunkSpan
	for _, sp := range sorted {
		if n := len(out); n > 0 && sp.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, sp.End)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// repoHas reports whether the token's repository (still the one the token was issued for) has the object.
func (c *casCall) repoHas(oid string) bool {
	h, err := c.s.store.repo(c.tok.repo)
	if err != nil || h == nil {
		return false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.st == nil || h.st.ID != c.tok.rid {
		return false
	}
	_, ok := h.hasObject(oid)
	return ok
}

// parseSingleRange parses "bytes=a-b" or "bytes=a-" against a size; b is inclusive and clamped.
func parseSingleRange(h string, size int64) (int64, int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	as, bs, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	a, err := strconv.ParseInt(as, 10, 64)
	if err != nil || a < 0 || a >= size {
		return 0, 0, false
	}
	b := size - 1
	if bs != "" {
		if b, err = strconv.ParseInt(bs, 10, 64); err != nil || b < a {
			return 0, 0, false
		}
		b = min(b, size-1)
	}
	return a, b, true
}

// xorbURL is a signed GET URL of a stored xorb on the CAS host (fetched with a Range header, no token).
func (s *Server) xorbURL(hash string) string {
	p := "/_xet/xorb/" + hash
	q := url.Values{}
	s.sign.sign(http.MethodGet, p, q, storageParams, s.opts.URLTTL)
	return s.CASURL() + p + "?" + q.Encode()
}

// getXorb serves a stored xorb (GET /_xet/xorb/{hash}, signed) with Range support.
func (c *casCall) getXorb() {
	h, err := xet.ParseHash(c.arg)
	if err != nil {
		c.fail(http.StatusBadRequest, "invalid xorb hash")
		return
	}
	f, err := os.Open(c.s.xet.xorbPath(h))
	if err != nil {
		c.fail(http.StatusNotFound, "no such xorb")
		return
	}
	defer f.Close()
	c.w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(c.w, c.r, "", time.Time{}, f)
}
