package hubtest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The Xet CAS (Options.Xet). The real content-addressed store is another host than huggingface.co, reached
// with a short-lived CAS token that the Hub hands out (GET /api/{t}/{repo}/xet-{read,write}-token/{rev}, or
// the X-Xet-* headers of an LFS batch answer with transfer "xet"); the Hub token is never valid there. devhub
// runs it on a third listener (Options.CASAddr) so that a client sending its Hub token to the CAS is caught
// (401, counted in Stats.TokenLeaks).
//
// CAS tokens are signed like storage URLs (same key, same issue stamps), so FaultExpireURLs expires them too
// and they stay valid across a restart on the same data directory. A token names the repository (and its
// id, so that a repository created again under the same name does not inherit it), the revision and the
// scope ("read" or "write"; write implies read).

// DefaultXetTokenTTL is the validity of CAS tokens.
const DefaultXetTokenTTL = time.Hour

// casTokenPrefix starts every CAS token (never a Hub token: those start with "hf_" or are chosen by --token).
const casTokenPrefix = "xet1."

// casToken is what a CAS token grants.
type casToken struct {
	repo  repoKey
	rid   string
	rev   string
	write bool
	exp   time.Time
}

// xetScopes are the token routes' names.
const (
	xetReadScope  = "read"
	xetWriteScope = "write"
)

// issueCASToken signs a CAS token for the repository.
func (s *Server) issueCASToken(k repoKey, rid, rev string, write bool) (string, time.Time) {
	q := url.Values{"repo": {k.grantName()}, "rid": {rid}, "rev": {rev}, "scope": {xetReadScope}}
	if write {
		q.Set("scope", xetWriteScope)
	}
	exp := s.sign.sign("XET", "/cas-token", q, storageParams, s.opts.XetTokenTTL)
	return casTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(q.Encode())), exp
}

// errCASToken is a token that is not one of ours.
var errCASToken = errors.New("invalid CAS token")

// parseCASToken checks a CAS token's signature and expiry.
func (s *Server) parseCASToken(v string) (*casToken, error) {
	raw, ok := strings.CutPrefix(v, casTokenPrefix)
	if !ok {
		return nil, errCASToken
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return nil, errCASToken
	}
	q, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, errCASToken
	}
	if err := s.sign.check("XET", "/cas-token", q, storageParams); err != nil {
		if errors.Is(err, errURLExpired) {
			return nil, fmt.Errorf("CAS token expired: %w", err)
		}
		return nil, errCASToken
	}
	k, ok := parseGrantName(q.Get("repo"))
	if !ok {
		return nil, errCASToken
	}
	exp, _ := strconv.ParseInt(q.Get(storageParams.exp), 10, 64)
	return &casToken{repo: k, rid: q.Get("rid"), rev: q.Get("rev"), write: q.Get("scope") == xetWriteScope, exp: time.Unix(exp, 0)}, nil
}

// XetSessionHeader names the session id header of the batch answer's Xet upload action.
const XetSessionHeader = "X-Xet-Session-Id"

// xetTokenHeaders are the X-Xet-* headers that carry a CAS token.
func (s *Server) xetTokenHeaders(tok string, exp time.Time) map[string]string {
	return map[string]string{
		"X-Xet-Cas-Url":          s.CASURL(),
		"X-Xet-Access-Token":     tok,
		"X-Xet-Token-Expiration": strconv.FormatInt(exp.Unix(), 10),
	}
}

// xetTokenURL is the API route that hands out CAS tokens of a scope for a revision.
func (s *Server) xetTokenURL(k repoKey, scope, rev string) string {
	return s.URL() + "/api/" + k.Type + "s/" + k.ID() + "/xet-" + scope + "-token/" + url.PathEscape(rev)
}

// xetToken answers GET /api/{t}/{repo}/xet-{read,write}-token/{rev}: {accessToken, exp, casUrl}, with the
// same values in X-Xet-* headers. A write token needs write access to the namespace; a read token needs the
// revision to exist and the repository to be readable (gated repositories: owners only).
func (c *call) xetToken() {
	if !c.s.opts.Xet {
		c.fail(http.StatusNotFound, "", "Xet storage is not enabled on this server (devhub --xet)")
		return
	}
	write := c.rt.path == xetWriteScope
	need := readAccess
	if write {
		need = writeAccess
	}
	h, unlock, ok := c.repo(need, false)
	if !ok {
		return
	}
	rid := h.st.ID
	if !write {
		if h.st.Gated != "" && !c.owns(c.rt.key.NS) {
			unlock()
			c.gateOK(h)
			return
		}
		if _, found, err := h.resolve(c.rt.rev); err != nil || !found {
			unlock()
			if err != nil {
				c.internal(err)
				return
			}
			c.notFoundRev(c.rt.rev)
			return
		}
	}
	unlock()
	tok, exp := c.s.issueCASToken(c.rt.key, rid, c.rt.rev, write)
	for k, v := range c.s.xetTokenHeaders(tok, exp) {
		c.w.Header().Set(k, v)
	}
	c.s.stats.update(func(st *Stats) { st.Xet.TokensIssued++ })
	c.ok(map[string]any{"accessToken": tok, "exp": exp.Unix(), "casUrl": c.s.CASURL()})
}

// CASURL is the base URL of the Xet CAS listener ("" without Options.Xet).
func (s *Server) CASURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.casURL
}

// casCall is one request to the CAS listener.
type casCall struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	reqID string
	op    Op
	arg   string // the hash in the path
	tok   *casToken
}

// casFail answers a CAS error: JSON {"error": msg} (and X-Error-Message), the shape of the CAS's errors.
func (c *casCall) fail(status int, msg string) {
	h := c.w.Header()
	h.Set("X-Error-Message", headerText(msg))
	b, _ := json.Marshal(map[string]string{"error": msg})
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(status)
	if c.r.Method != http.MethodHead {
		c.w.Write(b)
	}
}

func (c *casCall) okJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.fail(http.StatusInternalServerError, "cannot encode the answer")
		return
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
}

// casRoute is one CAS route: its op, its handler and whether it needs a write token.
type casRoute struct {
	op     Op
	h      func(*casCall)
	write  bool
	signed bool // a signed xorb download URL: no token at all
}

// routeCAS matches the CAS routes.
func routeCAS(r *http.Request) (casRoute, string) {
	seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "xorbs" && seg[2] == "default" && post:
		return casRoute{op: OpXorbPut, h: (*casCall).putXorb, write: true}, seg[3]
	case len(seg) == 2 && (seg[0] == "v1" || seg[0] == "v2") && seg[1] == "shards" && post:
		return casRoute{op: OpShardPut, h: (*casCall).putShard, write: true}, seg[0]
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "chunks" && (seg[2] == "default" || seg[2] == "default-merkledb") && get:
		return casRoute{op: OpXetChunk, h: (*casCall).chunkQuery}, seg[3]
	case len(seg) == 3 && (seg[0] == "v1" || seg[0] == "v2") && seg[1] == "reconstructions" && get:
		return casRoute{op: OpXetReconstruct, h: (*casCall).reconstruction}, seg[0] + "/" + seg[2]
	case len(seg) == 3 && seg[0] == "_xet" && seg[1] == "xorb" && get:
		return casRoute{op: OpXetGet, h: (*casCall).getXorb, signed: true}, seg[2]
	}
	return casRoute{op: OpUnknown}, ""
}

// serveCAS is the CAS listener's handler.
func (s *Server) serveCAS(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &casCall{s: s, w: sw, r: r, reqID: newRequestID(r, s.opts.Now()), op: OpUnknown}
	sw.Header().Set("X-Request-Id", c.reqID)
	rt, arg := routeCAS(r)
	c.op, c.arg = rt.op, arg
	s.stats.update(func(st *Stats) { st.Requests[c.op]++ })
	defer func() {
		s.stats.status(c.op, sw.code)
		s.log.Debug().Str("req", c.reqID).Str("op", string(c.op)).Str("method", r.Method).Str("path", r.URL.Path).
			Int("status", sw.code).Stringer("took", time.Since(start).Round(time.Microsecond)).Msg("cas")
	}()
	if rt.h == nil {
		discardBody(r)
		c.fail(http.StatusNotFound, "no such CAS route")
		return
	}
	if !c.auth(rt) || !c.casFaults() {
		return
	}
	rt.h(c)
}

// auth checks the request's credentials; false means it has answered.
func (c *casCall) auth(rt casRoute) bool {
	s := c.s
	h := c.r.Header.Get("Authorization")
	if rt.signed {
		if h != "" {
			c.leak("Authorization header sent to a signed xorb URL (token leak)")
			return false
		}
		if err := s.sign.check(http.MethodGet, c.r.URL.Path, c.r.URL.Query(), storageParams); err != nil {
			c.fail(http.StatusForbidden, err.Error())
			return false
		}
		return true
	}
	value := ""
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		value = strings.TrimSpace(h[7:])
	}
	if _, hub := s.tokens[value]; hub && value != "" {
		c.leak("a Hub token was sent to the CAS (token leak): send the CAS token from the xet token route")
		return false
	}
	if value == "" {
		discardBody(c.r)
		c.fail(http.StatusUnauthorized, "missing CAS token (Authorization: Bearer <accessToken>)")
		return false
	}
	t, err := s.parseCASToken(value)
	if err != nil {
		discardBody(c.r)
		c.fail(http.StatusUnauthorized, err.Error())
		return false
	}
	if rt.write && !t.write {
		discardBody(c.r)
		c.fail(http.StatusForbidden, "this CAS token has the read scope; uploads need a write token")
		return false
	}
	c.tok = t
	return true
}

// leak refuses a request carrying a credential where none (or another one) belongs.
func (c *casCall) leak(msg string) {
	c.s.stats.update(func(st *Stats) { st.TokenLeaks++ })
	c.s.log.Warn().Str("req", c.reqID).Str("op", string(c.op)).Msg(msg)
	discardBody(c.r)
	c.fail(http.StatusUnauthorized, msg)
}

// casFaults applies injected faults (rules on the CAS ops and the xet-5xx / xorb-reset probabilities).
func (c *casCall) casFaults() bool {
	s := c.s
	if rule, ok := s.faults.take(c.op, c.arg, 0, FaultStatus, FaultReset); ok {
		s.stats.fault("rule:" + string(c.op) + ":" + rule.Kind.String())
		if rule.Kind == FaultReset {
			resetAfter(c.w, c.r, rule.AfterBytes, func(n int64) { s.stats.update(func(st *Stats) { st.Xet.BytesReceived += n }) })
			return false
		}
		discardBody(c.r)
		c.fail(orDefault(rule.Status, http.StatusInternalServerError), orText(rule.Message, "Internal Error (injected fault)"))
		return false
	}
	if c.op != OpXorbPut && c.op != OpShardPut {
		return true
	}
	if s.faults.roll("xet-5xx") {
		s.stats.fault("xet-5xx")
		discardBody(c.r)
		if s.faults.intn(2) == 0 {
			c.fail(http.StatusInternalServerError, "Internal Error (injected fault)")
		} else {
			c.fail(http.StatusServiceUnavailable, "Service Unavailable (injected fault)")
		}
		return false
	}
	if c.op == OpXorbPut && s.faults.roll("xorb-reset") {
		s.stats.fault("xorb-reset")
		n := int64(0)
		if c.r.ContentLength > 1 {
			n = int64(s.faults.intn(int(min(c.r.ContentLength, 1<<30))))
		}
		resetAfter(c.w, c.r, n, func(n int64) { s.stats.update(func(st *Stats) { st.Xet.BytesReceived += n }) })
		return false
	}
	return true
}

// XetFileInfoType is the media type a Xet-aware client accepts on /resolve/ to get the file's Xet
// reconstruction info instead of a redirect.
const XetFileInfoType = "application/vnd.xet-fileinfo+json"

// xetResolve adds the Xet headers to the /resolve/ answer of an LFS file stored through Xet: X-Xet-Hash and
// Link (rel "xet-auth": the read-token route; rel "xet-reconstruction-info": the CAS reconstruction URL).
// When the client accepts XetFileInfoType it answers 200 with the file info and reports true; otherwise the
// caller redirects as for any LFS file.
func (c *call) xetResolve(oid string, size int64) bool {
	s := c.s
	if s.xet == nil {
		return false
	}
	f := s.xet.fileBySHA(oid)
	if f == nil {
		return false
	}
	hd := c.w.Header()
	auth := s.xetTokenURL(c.rt.key, xetReadScope, c.rt.rev)
	recon := s.CASURL() + "/v1/reconstructions/" + f.Hash.String()
	hd.Set("X-Xet-Hash", f.Hash.String())
	hd.Set("Link", fmt.Sprintf(`<%s>; rel="xet-auth", <%s>; rel="xet-reconstruction-info"`, auth, recon))
	if !strings.Contains(c.r.Header.Get("Accept"), XetFileInfoType) {
		return false
	}
	c.writeJSON(http.StatusOK, XetFileInfoType, map[string]any{
		"hash": f.Hash.String(), "size": size, "etag": oid, "refreshUrl": auth, "reconstructionUrl": recon,
	})
	return true
}
