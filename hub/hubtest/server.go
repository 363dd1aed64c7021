package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Server is a Hub-compatible HTTP server: the API on one listener and the storage (presigned PUTs, multipart
// parts, LFS downloads) on a second one, so that storage is a different host:port than the API, as S3 is a
// different host from huggingface.co.
type Server struct {
	opts   Options
	log    zerolog.Logger
	store  *store
	sign   *signer
	faults *faultEngine
	stats  *counters
	rl     *rateLimiter
	tokens map[string]Token // by value
	ownDir string           // temporary data directory removed by Close

	uploadsMu   sync.Mutex
	uploadLocks map[string]*sync.Mutex

	mu         sync.Mutex
	api, stor  *http.Server
	cas        *http.Server
	apiURL     string
	storageURL string
	casURL     string
	xet        *xetStore
	closed     bool
}

// NewServer prepares a server on opts.DataDir; Start makes it listen.
func NewServer(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	s := &Server{
		opts:        opts,
		log:         opts.Logger,
		faults:      newFaultEngine(opts.Faults),
		stats:       newCounters(),
		rl:          &rateLimiter{quota: opts.RateLimitQuota, windows: map[string]*rlWindow{}},
		tokens:      map[string]Token{},
		uploadLocks: map[string]*sync.Mutex{},
	}
	for _, t := range opts.Tokens {
		if t.Value == "" || t.Name == "" {
			return nil, errors.New("hubtest: a token needs a name and a value")
		}
		if !validNamespace(t.Name) {
			return nil, fmt.Errorf("hubtest: token user name %q is not a valid namespace", t.Name)
		}
		if _, dup := s.tokens[t.Value]; dup {
			return nil, fmt.Errorf("hubtest: token of %s: the same value is given twice", t.Name)
		}
		s.tokens[t.Value] = t
	}
	dir := opts.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "devhub-*")
		if err != nil {
			return nil, fmt.Errorf("hubtest: %w", err)
		}
		dir, s.ownDir = d, d
	}
	st, err := newStore(dir)
	if err != nil {
		s.removeOwnDir()
		return nil, fmt.Errorf("hubtest: %w", err)
	}
	key, err := st.secret()
	if err != nil {
		s.removeOwnDir()
		return nil, fmt.Errorf("hubtest: %w", err)
	}
	s.store = st
	s.sign = &signer{key: key, now: opts.Now}
	if opts.Xet {
		if s.xet, err = openXetStore(dir); err != nil {
			s.removeOwnDir()
			return nil, fmt.Errorf("hubtest: %w", err)
		}
	}
	s.sweepUploads()
	return s, nil
}

// NewTestServer starts a server on 127.0.0.1:0 with its data in t.TempDir() (unless opts.DataDir is set)
// and closes it when the test ends.
func NewTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("hubtest: close: %v", err)
		}
	})
	return s
}

// Start listens: the API on addr, the storage on Options.StorageAddr (default 127.0.0.1:0).
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api != nil || s.closed {
		return errors.New("hubtest: server already started or closed")
	}
	apiLn, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("hubtest: api listener: %w", err)
	}
	stLn, err := net.Listen("tcp", s.opts.StorageAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("hubtest: storage listener: %w", err)
	}
	if s.opts.Xet {
		casLn, err := net.Listen("tcp", s.opts.CASAddr)
		if err != nil {
			apiLn.Close()
			stLn.Close()
			return fmt.Errorf("hubtest: CAS listener: %w", err)
		}
		s.casURL = "http://" + dialable(casLn.Addr())
		s.cas = &http.Server{Handler: http.HandlerFunc(s.serveCAS), ReadHeaderTimeout: 30 * time.Second}
		go s.cas.Serve(casLn)
	}
	s.apiURL = "http://" + dialable(apiLn.Addr())
	s.storageURL = "http://" + dialable(stLn.Addr())
	s.api = &http.Server{Handler: http.HandlerFunc(s.serveAPI), ReadHeaderTimeout: 30 * time.Second}
	s.stor = &http.Server{Handler: http.HandlerFunc(s.serveStorage), ReadHeaderTimeout: 30 * time.Second}
	go s.api.Serve(apiLn)
	go s.stor.Serve(stLn)
	s.log.Debug().Str("api", s.apiURL).Str("storage", s.storageURL).Str("data", s.store.dir).Msg("devhub listening")
	return nil
}

// dialable turns a listener address into host:port a client can dial (0.0.0.0 and :: become loopback).
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// URL is the API base URL, e.g. http://127.0.0.1:8089 (HF_ENDPOINT for clients).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiURL
}

// StorageURL is the base URL of the storage listener.
func (s *Server) StorageURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storageURL
}

// DataDir is the directory holding the server's state.
func (s *Server) DataDir() string { return s.store.dir }

// Close stops both listeners, waits briefly for requests in flight and removes a temporary data directory.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	api, stor, cas := s.api, s.stor, s.cas
	s.mu.Unlock()
	var errs []error
	for _, srv := range []*http.Server{api, stor, cas} {
		if srv == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		cancel()
	}
	if err := s.removeOwnDir(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) removeOwnDir() error {
	if s.ownDir == "" {
		return nil
	}
	return os.RemoveAll(s.ownDir)
}

// Stats returns a copy of the counters (the same data as GET /_devhub/stats).
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// InjectFault adds a deterministic fault rule; FaultExpireURLs takes effect at once.
func (s *Server) InjectFault(f FaultRule) {
	if f.Kind == FaultExpireURLs {
		s.sign.revokeAll()
		s.stats.fault("rule:expire-urls")
		return
	}
	s.faults.add(f)
}

// SetFaults replaces the probabilistic faults (and reseeds their RNG), e.g. to switch them on after a
// test's setup.
func (s *Server) SetFaults(f Faults) { s.faults.setProb(f) }

// PendingFaults is the number of injected rules not yet spent.
func (s *Server) PendingFaults() int { return s.faults.pending() }

// HasObject reports whether an LFS object is stored, and its size.
func (s *Server) HasObject(oid string) (int64, bool) { return s.store.objectSize(oid) }

// call is one API request being served.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	rt    route
	tok   *Token
	reqID string
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferWriter holds a whole response so that a "lose response" fault can throw it away.
type bufferWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.h }
func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

// newRequestID returns an id in the Hub's X-Request-Id shape, echoing the client's X-Amzn-Trace-Id.
func newRequestID(r *http.Request, now time.Time) string {
	id := fmt.Sprintf("Root=1-%08x-%s", now.Unix(), randomHex(12))
	if t := r.Header.Get("X-Amzn-Trace-Id"); t != "" && len(t) <= 128 && isHeaderSafe(t) {
		id += ";" + t
	}
	return id
}

func isHeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// headerText makes s safe for a header value.
func headerText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = ' '
		}
	}
	if len(b) > 512 {
		b = b[:512]
	}
	return string(b)
}

// serveAPI is the API listener's handler.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &call{s: s, w: sw, r: r, reqID: newRequestID(r, s.opts.Now())}
	sw.Header().Set("X-Request-Id", c.reqID)
	c.rt = s.route(r)
	op := c.rt.op
	s.stats.update(func(st *Stats) { st.Requests[op]++ })
	defer func() {
		s.stats.status(op, sw.code)
		s.log.Debug().Str("req", c.reqID).Str("op", string(op)).Str("method", r.Method).Str("path", r.URL.Path).
			Int("status", sw.code).Stringer("took", time.Since(start).Round(time.Microsecond)).Msg("api")
	}()
	authOK := true
	if c.rt.signed {
		// The completion URL authorizes itself; a token here is a leak, whatever its value.
		if r.Header.Get("Authorization") != "" {
			c.leak()
			return
		}
	} else {
		authOK = c.authenticate()
	}
	if c.rt.h == nil && c.rt.op != OpStats {
		c.rt.bucket = "api"
	}
	if c.rt.bucket != "" && !c.rateLimit() {
		return
	}
	if !authOK {
		c.fail(http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return
	}
	if c.rt.h == nil {
		if c.rt.badMethod {
			c.fail(http.StatusMethodNotAllowed, "", fmt.Sprintf("Method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		c.fail(http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
		return
	}
	if !c.injectFaults() {
		return
	}
	c.rt.h(c)
}

// authenticate resolves the Authorization header into c.tok; false means an unknown token (answer 401).
func (c *call) authenticate() bool {
	h := c.r.Header.Get("Authorization")
	if h == "" {
		return true
	}
	var value string
	switch {
	case len(h) > 7 && strings.EqualFold(h[:7], "Bearer "):
		value = strings.TrimSpace(h[7:])
	case c.rt.lfs:
		if _, pass, ok := c.r.BasicAuth(); ok {
			value = pass
		}
	}
	t, ok := c.s.tokens[value]
	if value == "" || !ok {
		return false
	}
	c.tok = &t
	return true
}

// rateLimit sets the RateLimit headers and refuses the request with 429 past the quota.
func (c *call) rateLimit() bool {
	user := "anonymous"
	if c.tok != nil {
		user = c.tok.Name
	}
	remaining, reset, ok := c.s.rl.take(c.rt.bucket+"|"+user, c.s.opts.Now())
	c.setRateHeaders(remaining, reset)
	if !ok {
		c.w.Header().Set("Retry-After", strconv.Itoa(reset))
		c.fail(http.StatusTooManyRequests, "", fmt.Sprintf("You have exceeded our %s rate limit: %d requests per 5 minutes", c.rt.bucket, c.s.opts.RateLimitQuota))
	}
	return ok
}

func (c *call) setRateHeaders(remaining, reset int) {
	c.w.Header().Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d", c.rt.bucket, remaining, reset))
	c.w.Header().Set("RateLimit-Policy", fmt.Sprintf("%q;%q;q=%d;w=%d", "fixed window", c.rt.bucket, c.s.opts.RateLimitQuota, int(RateLimitWindow/time.Second)))
}

// injectFaults applies the faults that act before or around the handler; false means the request is over.
func (c *call) injectFaults() bool {
	s, op := c.s, c.rt.op
	if op == OpStats {
		return true
	}
	if rule, ok := s.faults.take(op, c.rt.oid, c.rt.part, FaultStatus, FaultRateLimit, FaultReset, FaultLoseResponse); ok {
		s.stats.fault("rule:" + string(op) + ":" + rule.Kind.String())
		switch rule.Kind {
		case FaultStatus:
			discardBody(c.r)
			c.fail(orDefault(rule.Status, http.StatusInternalServerError), "", orText(rule.Message, "Internal Error (injected fault)"))
			return false
		case FaultRateLimit:
			c.rateLimited()
			return false
		case FaultReset:
			resetAfter(c.w, c.r, rule.AfterBytes, nil)
			return false
		case FaultLoseResponse:
			c.loseResponse(rule.Status)
			return false
		}
	}
	if c.rt.bucket != "" && s.faults.roll("rate-limit") {
		s.stats.fault("rate-limit")
		c.rateLimited()
		return false
	}
	if op == OpCommit && s.faults.roll("commit-lost") {
		s.stats.fault("commit-lost")
		status := 0
		if s.faults.intn(2) == 0 {
			status = http.StatusGatewayTimeout
		}
		c.loseResponse(status)
		return false
	}
	return true
}

func (c *call) rateLimited() {
	c.w.Header().Set("Retry-After", "1")
	bucket := orText(c.rt.bucket, "api")
	c.w.Header().Set("RateLimit", fmt.Sprintf("%q;r=0;t=1", bucket))
	c.w.Header().Set("RateLimit-Policy", fmt.Sprintf("%q;%q;q=%d;w=%d", "fixed window", bucket, c.s.opts.RateLimitQuota, int(RateLimitWindow/time.Second)))
	discardBody(c.r)
	c.fail(http.StatusTooManyRequests, "", "Too Many Requests (injected fault): retry after 1 second")
}

// loseResponse runs the handler (the work is done) and then loses its answer: status, or a cut connection.
func (c *call) loseResponse(status int) {
	real := c.w
	buf := &bufferWriter{h: http.Header{}}
	c.w = buf
	c.rt.h(c)
	c.w = real
	c.s.log.Debug().Str("req", c.reqID).Int("lost_status", buf.code).Msg("response lost (injected fault)")
	if status == 0 {
		cutConnection(real)
		return
	}
	c.fail(status, "", "Gateway Time-out (injected fault; the request was applied)")
}

// orDefault returns v, or d when v is 0.
func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orText(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// fail answers an API error: JSON {"error": msg} (plus "message" on git-lfs routes), X-Error-Code and
// X-Error-Message.
func (c *call) fail(status int, code, msg string) {
	h := c.w.Header()
	if code != "" {
		h.Set("X-Error-Code", code)
	}
	h.Set("X-Error-Message", headerText(msg))
	body := map[string]string{"error": msg}
	ct := "application/json; charset=utf-8"
	if c.rt.lfs {
		body["message"] = msg
		body["request_id"] = c.reqID
		ct = lfsMediaType + "; charset=utf-8"
	}
	c.writeJSON(status, ct, body)
}

// ok answers 200 with a JSON body.
func (c *call) ok(v any) { c.writeJSON(http.StatusOK, "application/json; charset=utf-8", v) }

func (c *call) writeJSON(status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: cannot encode the answer"}`)
	}
	c.w.Header().Set("Content-Type", contentType)
	c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(status)
	if c.r.Method != http.MethodHead {
		c.w.Write(b)
	}
}

// internal answers 500 for an unexpected error and logs it.
func (c *call) internal(err error) {
	c.s.log.Error().Err(err).Str("req", c.reqID).Str("op", string(c.rt.op)).Msg("internal error")
	c.fail(http.StatusInternalServerError, "", "Internal Error: "+err.Error())
}

// leak refuses a request that sent a token to a self-authenticating URL.
func (c *call) leak() {
	c.s.stats.update(func(st *Stats) { st.TokenLeaks++ })
	c.s.log.Warn().Str("req", c.reqID).Str("op", string(c.rt.op)).Msg("Authorization header sent to a signed URL (token leak)")
	discardBody(c.r)
	c.fail(http.StatusBadRequest, "", leakMessage)
}

const leakMessage = "Authorization header sent to a storage URL (token leak)"

// canSee reports whether the token may read the repository.
func (c *call) canSee(st *repoState) bool {
	return !st.Private || c.owns(st.Namespace)
}

// owns reports whether the token's user owns the namespace or belongs to it.
func (c *call) owns(ns string) bool {
	if c.tok == nil {
		return false
	}
	if c.tok.Name == ns {
		return true
	}
	for _, o := range c.tok.Orgs {
		if o == ns || o == "*" {
			return true
		}
	}
	return false
}

// access says what a handler needs from the token.
type access int

const (
	readAccess  access = iota
	writeAccess        // a write token of a user owning the namespace
	prAccess           // a write token (opening a pull request on a visible repository)
)

// repo looks up the route's repository and checks access; on failure it has answered.
// It returns the handle with h.mu held (the write lock when exclusive) and the function that releases it.
func (c *call) repo(need access, exclusive bool) (*repoHandle, func(), bool) {
	k := c.rt.key
	h, err := c.s.store.repo(k)
	if err != nil {
		c.internal(err)
		return nil, nil, false
	}
	if h == nil {
		c.notFoundRepo()
		return nil, nil, false
	}
	unlock := h.mu.RUnlock
	if exclusive {
		h.mu.Lock()
		unlock = h.mu.Unlock
	} else {
		h.mu.RLock()
	}
	if h.st == nil || !c.canSee(h.st) {
		unlock()
		c.notFoundRepo()
		return nil, nil, false
	}
	if need != readAccess && !c.checkWrite(k.NS, need == prAccess) {
		unlock()
		return nil, nil, false
	}
	return h, unlock, true
}

// checkWrite answers 401/403 unless the token may write to namespace ns (or open a PR when pr).
func (c *call) checkWrite(ns string, pr bool) bool {
	switch {
	case c.tok == nil:
		c.fail(http.StatusUnauthorized, "", "You must be authenticated to do this (no token sent)")
		return false
	case !c.tok.Write:
		c.fail(http.StatusForbidden, "", fmt.Sprintf("The token of %s has the read role; this operation needs a write token", c.tok.Name))
		return false
	case !pr && !c.owns(ns):
		c.fail(http.StatusForbidden, "", fmt.Sprintf("You don't have the rights to write to the namespace %q (user %s)", ns, c.tok.Name))
		return false
	}
	return true
}

func (c *call) notFoundRepo() {
	c.fail(http.StatusNotFound, "RepoNotFound", fmt.Sprintf("Repository not found: %s/%s (it does not exist, or it is private and the request is not authorized for it)", c.rt.key.urlPrefix(), c.rt.key.ID()))
}

func (c *call) notFoundRev(rev string) {
	c.fail(http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
}

// repoURL is the web URL of the route's repository.
func (c *call) repoURL() string {
	return c.s.URL() + "/" + c.rt.key.urlPrefix() + c.rt.key.ID()
}

// rateLimiter counts requests per key in fixed windows aligned on multiples of RateLimitWindow.
type rateLimiter struct {
	mu      sync.Mutex
	quota   int
	windows map[string]*rlWindow
}

type rlWindow struct {
	start time.Time
	used  int
}

// take counts one request; it returns the remaining quota, the seconds to the window's end and whether the
// request is within the quota.
func (rl *rateLimiter) take(key string, now time.Time) (remaining, reset int, ok bool) {
	start := now.Truncate(RateLimitWindow)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	w := rl.windows[key]
	if w == nil || !w.start.Equal(start) {
		w = &rlWindow{start: start}
		rl.windows[key] = w
	}
	reset = int((start.Add(RateLimitWindow).Sub(now) + time.Second - 1) / time.Second)
	if w.used >= rl.quota {
		return 0, reset, false
	}
	w.used++
	return rl.quota - w.used, reset, true
}
