// Package hub is a client for the Hugging Face Hub HTTP API: token discovery, whoami, repositories, branches,
// tags, listings, resumable parallel LFS uploads committed as one commit, and downloads into the HF cache layout.
//
// The token is only ever sent to the endpoint's exact scheme, host and port, and only on requests that need it;
// presigned storage URLs, multipart completion URLs and redirects to other hosts never see it, and neither do
// logs or error messages (error URLs drop their query strings, which may be presigned credentials too).
package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/internal/xet"
)

// DefaultEndpoint is the public Hub.
const DefaultEndpoint = "https://huggingface.co"

// Defaults for the transfer parallelism.
const (
	DefaultParallelFiles = 4
	DefaultParallelParts = 8
)

// Options configure a Client. The zero value talks anonymously to DefaultEndpoint.
type Options struct {
	// Endpoint is the Hub's base URL (scheme://host[:port]), default DefaultEndpoint. A trailing slash is dropped.
	Endpoint string
	// Token is the Hub token ("" = anonymous). It is sent only to Endpoint's scheme+host+port.
	Token string
	// Version is hubsync's version for the User-Agent (default "dev").
	Version string
	// Logger receives request logs (debug: one line per request; trace: headers, Authorization redacted).
	Logger zerolog.Logger
	// HTTPClient is the underlying client (default: a tuned transport). Its CheckRedirect is replaced on a copy:
	// the Hub client follows redirects itself so it can drop Authorization when the host changes.
	HTTPClient *http.Client
	// Retry is the retry policy (zero value = DefaultRetryPolicy).
	Retry RetryPolicy
	// ParallelFiles is how many files are hashed/uploaded/downloaded at once (default 4).
	ParallelFiles int
	// ParallelParts is how many parts of one multipart upload are in flight at once (default 8).
	ParallelParts int
	// Journal records multipart upload state so another process can resume it (nil: no resume).
	Journal Journal
	// StallTimeout aborts (and retries) an attempt when no byte was read or written for that long: an API
	// answer, a download body, an upload PUT. Default DefaultStallTimeout; negative disables it.
	StallTimeout time.Duration
	// MaxResponseBytes caps the decoded size of a non-streamed API answer (after decompression). Default
	// DefaultMaxResponseBytes; listing pages and commit answers may be up to MaxListingPageBytes.
	MaxResponseBytes int64
	// Xet says whether uploads offer (and use) the Xet transfer: XetOff (the zero value), XetAuto or XetOn.
	Xet XetMode
	// XetCacheDir is the Xet cache directory (XetCacheDir(getenv): $HF_XET_CACHE, else $HF_HOME/xet); the shards
	// of finished Xet uploads are kept under it so that the next upload dedupes against them. "" = no cache.
	XetCacheDir string
}

// Client talks to one Hub endpoint with one token. It is safe for concurrent use.
type Client struct {
	endpoint      string   // normalised base URL, no trailing slash
	origin        *url.URL // scheme + host:port of the endpoint, for the token check
	token         string
	rc            *resty.Client
	log           zerolog.Logger
	retry         RetryPolicy
	ua            string
	parallelFiles int
	parallelParts int
	journal       Journal
	stallTimeout  time.Duration
	maxResponse   int64
	listLimits    listLimits
	adapters      map[string]transferAdapter // upload transfer adapters by name (registerAdapters)
	xetMode       XetMode
	xetCacheDir   string
	xetXorbLimit  int // serialized bytes at which a xorb is closed (xet.MaxXorbBytes; smaller in tests)
}

// New returns a client for opts.Endpoint.
func New(opts Options) (*Client, error) {
	ep := strings.TrimRight(strings.TrimSpace(opts.Endpoint), "/")
	if ep == "" {
		ep = DefaultEndpoint
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub: invalid endpoint %q: want http(s)://host[:port]", redactURL(ep))
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("hub: endpoint %q must not carry credentials or a query", redactURL(ep))
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient //nolint:govet // copying the struct is intended: we replace CheckRedirect on our copy
	} else {
		hc.Transport = newTransport()
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if hc.Transport == nil {
		hc.Transport = newTransport()
	}
	c := &Client{
		endpoint:      ep,
		origin:        &url.URL{Scheme: strings.ToLower(u.Scheme), Host: canonicalHost(u)},
		token:         strings.TrimSpace(opts.Token),
		log:           opts.Logger,
		retry:         opts.Retry.withDefaults(),
		ua:            fmt.Sprintf("hubsync/%s; go/%s; os/%s", version, strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS),
		parallelFiles: opts.ParallelFiles,
		parallelParts: opts.ParallelParts,
		journal:       opts.Journal,
		stallTimeout:  opts.StallTimeout,
		maxResponse:   opts.MaxResponseBytes,
		listLimits:    defaultListLimits(),
	}
	if c.stallTimeout == 0 {
		c.stallTimeout = DefaultStallTimeout
	}
	if c.maxResponse <= 0 {
		c.maxResponse = DefaultMaxResponseBytes
	}
	if c.parallelFiles <= 0 {
		c.parallelFiles = DefaultParallelFiles
	}
	if c.parallelParts <= 0 {
		c.parallelParts = DefaultParallelParts
	}
	rc := resty.NewWithClient(&hc)
	rc.SetRetryCount(0) // exactly one retry layer: ours (send)
	rc.SetDisableWarn(true)
	rc.SetLogger(restyLogger{c.log})
	rc.SetDebug(false)
	rc.SetHeader("User-Agent", c.ua)
	rc.SetPreRequestHook(c.preRequest)
	c.rc = rc
	switch opts.Xet {
	case XetOff, XetAuto, XetOn:
		c.xetMode = opts.Xet
	default:
		return nil, fmt.Errorf("hub: invalid Xet mode %q", string(opts.Xet))
	}
	c.xetCacheDir = opts.XetCacheDir
	c.xetXorbLimit = xet.MaxXorbBytes
	c.adapters = c.registerAdapters()
	return c, nil
}

// Endpoint returns the Hub base URL the client talks to.
func (c *Client) Endpoint() string { return c.endpoint }

// HasToken reports whether the client sends a token.
func (c *Client) HasToken() bool { return c.token != "" }

// CloseIdleConnections closes the pooled connections that are not in use.
func (c *Client) CloseIdleConnections() { c.rc.GetClient().CloseIdleConnections() }

// UserAgent returns the User-Agent the client sends.
func (c *Client) UserAgent() string { return c.ua }

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 5 * time.Minute
	t.WriteBufferSize = 256 << 10
	t.ReadBufferSize = 256 << 10
	t.ForceAttemptHTTP2 = true
	return t
}

// canonicalHost returns host:port with the scheme's default port made explicit and the host lowercased, so that
// https://h and https://h:443 compare equal and h:443 vs h:8443 do not.
func canonicalHost(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return net.JoinHostPort(host, port)
}

// sameOrigin reports whether u has exactly the endpoint's scheme, host and port.
func (c *Client) sameOrigin(u *url.URL) bool {
	return u != nil && strings.EqualFold(u.Scheme, c.origin.Scheme) && canonicalHost(u) == c.origin.Host
}

// originOf says whether raw is on the endpoint's origin (the Hub) or on another host (storage, CAS).
func (c *Client) originOf(raw string) Origin {
	u, err := url.Parse(raw)
	if err == nil && c.sameOrigin(u) {
		return OriginHub
	}
	return OriginStorage
}

// ctxKey keys per-request values the pre-request hook reads.
type ctxKey int

const (
	ctxWantAuth ctxKey = iota // bool: this request may carry the token (only honoured for the endpoint's origin)
	ctxRequestID
	ctxBody   // *requestBody
	ctxBearer // string: a non-Hub bearer token (a Xet CAS token) for this request, never the Hub token
)

// requestBody is a request body handed to the pre-request hook through the context. Bodies bypass resty on
// purpose: resty 2.17 reads an io.Reader body whole into memory to build GetBody, which would buffer every part
// and file; the hook instead streams the reader with its exact Content-Length (S3 rejects chunked PUTs).
type requestBody struct {
	r io.Reader
	n int64
}

// preRequest is the one place where the token enters a request: only when the request asked for it and its URL
// has the endpoint's exact origin. It also removes any Authorization header otherwise, and logs at trace level.
func (c *Client) preRequest(_ *resty.Client, req *http.Request) error {
	if b, ok := req.Context().Value(ctxBody).(*requestBody); ok {
		req.ContentLength = b.n
		req.GetBody = nil // retries are ours, with a fresh reader
		if b.n == 0 {
			req.Body = http.NoBody
		} else {
			req.Body = io.NopCloser(b.r)
		}
	}
	want, _ := req.Context().Value(ctxWantAuth).(bool)
	bearer, _ := req.Context().Value(ctxBearer).(string)
	if bearer != "" {
		// A CAS token goes wherever its CAS is; the Hub token never rides along.
		req.Header.Set("Authorization", "Bearer "+bearer)
	} else if want && c.token != "" && c.sameOrigin(req.URL) {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else {
		req.Header.Del("Authorization")
	}
	if c.sameOrigin(req.URL) {
		if id, _ := req.Context().Value(ctxRequestID).(string); id != "" {
			req.Header.Set("X-Amzn-Trace-Id", id)
		}
	}
	if e := c.log.Trace(); e.Enabled() {
		e.Str("method", req.Method).Str("url", redactURL(req.URL.String())).
			Interface("headers", redactHeaders(req.Header)).Int64("content_length", req.ContentLength).
			Msg("hub request")
	}
	return nil
}

// redactHeaders returns a copy of h safe to log.
func redactHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Xet-Access-Token":
			out[k] = "REDACTED"
		default:
			out[k] = strings.Join(v, ", ")
		}
	}
	return out
}

// newRequestID returns a random UUIDv4 for X-Amzn-Trace-Id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// call describes one logical request; send retries it.
type call struct {
	method string
	url    string // absolute
	auth   bool   // send the token (only if url is on the endpoint's origin)
	// bearer, when set, is sent as "Authorization: Bearer" instead of the Hub token, to any host (a Xet CAS
	// token, which only its CAS accepts). auth is ignored then.
	bearer  func() (string, error)
	headers map[string]string
	query   url.Values
	// body, when set, returns a fresh reader for every attempt (rewind) and its exact length.
	body func() (io.Reader, int64, error)
	// noRetry: one attempt only (the commit call: its caller decides whether a resend is safe).
	noRetry bool
	// stream: leave the response body unread (reply.raw); the caller must close it.
	stream bool
	// redirects: follow 3xx (GET/HEAD), dropping Authorization when the origin changes.
	redirects bool
	// ok lists extra non-2xx statuses that are answers, not errors (e.g. 409 on create).
	ok []int
	// maxBody caps the decoded answer of a non-streamed call (0: the client's MaxResponseBytes).
	maxBody int64
	// budget, when set, is shared by several sends of one operation (a part across re-batches): together they
	// make at most RetryPolicy.MaxAttempts attempts.
	budget *attemptBudget
}

// attemptBudget counts the attempts several sends of one operation made.
type attemptBudget struct {
	mu   sync.Mutex
	used int
}

// take reserves one attempt out of max; false when the budget is spent.
func (b *attemptBudget) take(max int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used >= max {
		return false
	}
	b.used++
	return true
}

// reply is a response to a call.
type reply struct {
	status int
	header http.Header
	body   []byte        // when !stream
	raw    io.ReadCloser // when stream
	url    string        // final URL (after redirects)
}

func jsonBody(b []byte) func() (io.Reader, int64, error) {
	return func() (io.Reader, int64, error) { return bytes.NewReader(b), int64(len(b)), nil }
}

// lostResponseError marks a request whose outcome is unknown: it may have been applied by the server
// (network error after sending, timeout, 5xx/408).
type lostResponseError struct{ err error }

func (e *lostResponseError) Error() string { return e.err.Error() }
func (e *lostResponseError) Unwrap() error { return e.err }

// send runs a call with retries (unless noRetry) and returns a 2xx (or listed) reply, else an error.
func (c *Client) send(ctx context.Context, cl call) (*reply, error) {
	reqID := newRequestID()
	ctx = context.WithValue(ctx, ctxRequestID, reqID)
	attempts := c.retry.MaxAttempts
	if cl.noRetry {
		attempts = 1
	}
	for attempt := 1; ; attempt++ {
		if cl.budget != nil && !cl.budget.take(c.retry.MaxAttempts) {
			return nil, fmt.Errorf("%s %s: gave up after %d attempts in all", cl.method, redactURL(cl.url), c.retry.MaxAttempts)
		}
		r, err := c.sendFollowing(ctx, cl, reqID, attempt)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", cl.method, redactURL(cl.url), ctx.Err())
		}
		wait, retry := c.retryDecision(err, attempt)
		if !retry || attempt >= attempts {
			return nil, finalError(err, attempt)
		}
		c.logRetry(cl, reqID, wait, attempt+1, attempts, err)
		if err := c.retry.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%s %s: %w", cl.method, redactURL(cl.url), err)
		}
	}
}

// logRetry says at info level, at once, that a request failed and when it is tried again:
// "retrying in 2s (attempt 2/6): connection refused".
func (c *Client) logRetry(cl call, reqID string, wait time.Duration, next, of int, err error) {
	c.log.Info().Str("method", cl.method).Str("url", redactURL(cl.url)).Int("attempt", next).Int("attempts", of).
		Str("request_id", reqID).Msgf("retrying in %s (attempt %d/%d): %s", roundWait(wait), next, of, retryReason(err))
}

// roundWait rounds a backoff for a human: 1.2s, 350ms.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// retryReason is the short cause of a failed attempt: the system error (connection refused, reset by peer),
// a stall, or the status line.
func retryReason(err error) string {
	var st *StallError
	if errors.As(err, &st) {
		return st.Error()
	}
	var se *statusError
	if errors.As(err, &se) {
		r := fmt.Sprintf("%d %s", se.httpErr.Status, http.StatusText(se.httpErr.Status))
		if plainCode(se.httpErr.Code) { // server text reaches the log only when it is a plain code
			r += " (" + se.httpErr.Code + ")"
		}
		return r
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "connection closed early"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// finalError turns the last attempt's error into what the caller sees: 429 becomes a *RateLimitError.
func finalError(err error, attempts int) error {
	var se *statusError
	if errors.As(err, &se) {
		if se.httpErr.Status == http.StatusTooManyRequests {
			return &RateLimitError{RetryAfter: se.wait, Err: se.httpErr}
		}
		if retryableStatus(se.httpErr.Status) || se.transient {
			return &lostResponseError{fmt.Errorf("after %d attempts: %w", attempts, se.httpErr)}
		}
		return se.httpErr
	}
	var ne *networkError
	if errors.As(err, &ne) {
		return &lostResponseError{fmt.Errorf("after %d attempts: %w", attempts, ne.err)}
	}
	return err
}

// statusError is an attempt that got a non-success status; wait is the server-advertised wait if any.
type statusError struct {
	httpErr *HTTPError
	wait    time.Duration
	hasWait bool
	// transient: a status that is not retryable in general but is here (S3's 400 RequestTimeout).
	transient bool
}

func (e *statusError) Error() string { return e.httpErr.Error() }
func (e *statusError) Unwrap() error { return e.httpErr }

// networkError is an attempt that got no response (connection refused/reset, timeout, truncated body).
type networkError struct{ err error }

func (e *networkError) Error() string { return e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }

// retryDecision says whether to retry after attempt n failed with err, and how long to wait.
func (c *Client) retryDecision(err error, n int) (time.Duration, bool) {
	var se *statusError
	if errors.As(err, &se) {
		if !retryableStatus(se.httpErr.Status) && !se.transient {
			return 0, false
		}
		if se.hasWait {
			if se.wait > c.retry.MaxRetryAfter {
				return 0, false
			}
			return se.wait, true
		}
		return c.retry.backoff(n), true
	}
	var ne *networkError
	if errors.As(err, &ne) {
		return c.retry.backoff(n), true
	}
	return 0, false
}

// maxRedirects bounds the redirect chain send follows.
const maxRedirects = 10

// sendFollowing performs one attempt, following redirects when asked.
func (c *Client) sendFollowing(ctx context.Context, cl call, reqID string, attempt int) (*reply, error) {
	target := cl.url
	for hop := 0; ; hop++ {
		r, err := c.once(ctx, cl, target, reqID, attempt)
		if err != nil {
			return nil, err
		}
		if !cl.redirects || r.status < 300 || r.status > 399 || r.status == http.StatusNotModified {
			return c.checkStatus(cl, target, r, reqID)
		}
		loc := r.header.Get("Location")
		if r.raw != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.raw, 64<<10))
			_ = r.raw.Close()
		}
		if loc == "" {
			he := newHTTPError(cl.method, target, r.status, r.header, nil, reqID)
			he.Origin = c.originOf(target)
			return nil, he
		}
		if hop >= maxRedirects {
			return nil, fmt.Errorf("%s %s: stopped after %d redirects", cl.method, redactURL(cl.url), maxRedirects)
		}
		base, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", cl.method, redactURL(target), err)
		}
		next, err := base.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%s %s: bad redirect location: %w", cl.method, redactURL(target), err)
		}
		if next.Scheme != "http" && next.Scheme != "https" {
			return nil, fmt.Errorf("%s %s: redirect to unsupported scheme %q", cl.method, redactURL(target), next.Scheme)
		}
		c.log.Debug().Str("from", redactURL(target)).Str("to", redactURL(next.String())).Msg("hub redirect")
		// The query of the first URL belongs to that URL only.
		cl.query = nil
		target = next.String()
	}
}

// checkStatus returns r when its status is an answer, else a *statusError.
func (c *Client) checkStatus(cl call, target string, r *reply, reqID string) (*reply, error) {
	if r.status >= 200 && r.status < 300 {
		return r, nil
	}
	for _, s := range cl.ok {
		if r.status == s {
			return r, nil
		}
	}
	body := r.body
	if r.raw != nil {
		body, _ = io.ReadAll(io.LimitReader(r.raw, 64<<10))
		_ = r.raw.Close()
	}
	he := newHTTPError(cl.method, target, r.status, r.header, body, reqID)
	he.Origin = c.originOf(target)
	wait, has := serverWait(r.status, r.header, time.Now())
	return nil, &statusError{httpErr: he, wait: wait, hasWait: has, transient: transientStorageError(he)}
}

// once performs exactly one HTTP exchange. A watchdog aborts it when no byte is read or written for the stall
// timeout (while sending the body and while reading the answer; the wait for the answer's headers after a
// complete request is ResponseHeaderTimeout's). A non-streamed answer is read here, capped on its decoded size.
func (c *Client) once(ctx context.Context, cl call, target, reqID string, attempt int) (*reply, error) {
	actx, cancel := context.WithCancelCause(ctx)
	wd := newWatchdog(c.stallTimeout, cancel)
	finish := func() { wd.stop(); cancel(nil) }
	actx = context.WithValue(actx, ctxWantAuth, cl.auth)
	if cl.bearer != nil {
		tok, err := cl.bearer()
		if err != nil {
			finish()
			return nil, err
		}
		if tok == "" || c.token != "" && tok == c.token {
			finish()
			return nil, errors.New("refusing to send a request with an empty CAS token or the Hub token as CAS token")
		}
		actx = context.WithValue(actx, ctxBearer, tok)
	}
	if cl.body != nil {
		body, n, err := cl.body()
		if err != nil {
			finish()
			return nil, err
		}
		actx = context.WithValue(actx, ctxBody, &requestBody{r: &watchedReader{r: body, w: wd, pauseEOF: true}, n: n})
		if n == 0 {
			wd.pause()
		}
	} else {
		wd.pause()
	}
	req := c.rc.R().SetContext(actx)
	for k, v := range cl.headers {
		req.SetHeader(k, v)
	}
	if cl.query != nil {
		req.SetQueryParamsFromValues(cl.query)
	}
	req.SetDoNotParseResponse(true)
	start := time.Now()
	resp, err := req.Execute(cl.method, target)
	if err != nil {
		if resp != nil && resp.RawResponse != nil && resp.RawResponse.Body != nil {
			_ = resp.RawResponse.Body.Close()
		}
		err = stallErr(actx, c.stallTimeout, err)
		finish()
		c.log.Debug().Str("method", cl.method).Str("url", redactURL(target)).Int("attempt", attempt).
			Str("request_id", reqID).Stringer("took", time.Since(start).Round(time.Microsecond)).Err(sanitizeErr(err)).Msg("hub request error")
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &networkError{fmt.Errorf("%s %s: %w", cl.method, redactURL(target), sanitizeErr(err))}
	}
	raw := resp.RawResponse
	wd.touch()
	r := &reply{status: raw.StatusCode, header: raw.Header, url: target}
	body := &watchedBody{rc: raw.Body, w: wd, actx: actx, cancel: cancel, timeout: c.stallTimeout}
	if cl.stream {
		r.raw = body
	} else {
		b, err := c.readAnswer(cl, target, r, body)
		_ = body.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		r.body = b
	}
	c.log.Debug().Str("method", cl.method).Str("url", redactURL(target)).Int("status", r.status).
		Int("attempt", attempt).Str("request_id", firstNonEmpty(raw.Header.Get("X-Request-Id"), reqID)).
		Stringer("took", time.Since(start).Round(time.Microsecond)).Msg("hub request")
	return r, nil
}

// sanitizeErr rewrites *url.Error values so the URL in the message carries no query string.
func sanitizeErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// apiURL joins the endpoint and a path made of already-escaped segments.
func (c *Client) apiURL(path string) string { return c.endpoint + path }

// restyLogger forwards resty's own messages to zerolog at debug level.
type restyLogger struct{ log zerolog.Logger }

func (l restyLogger) Errorf(format string, v ...any) { l.log.Debug().Msgf("resty: "+format, v...) }
func (l restyLogger) Warnf(format string, v ...any)  { l.log.Debug().Msgf("resty: "+format, v...) }
func (l restyLogger) Debugf(format string, v ...any) { l.log.Trace().Msgf("resty: "+format, v...) }
