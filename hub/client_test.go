package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// recordedWaits wraps TestFastRetries so a test can see the waits the client asked for.
type recordedWaits struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recordedWaits) policy() RetryPolicy {
	p := TestFastRetries()
	inner := p.Sleep
	p.Sleep = func(ctx context.Context, d time.Duration) error {
		r.mu.Lock()
		r.waits = append(r.waits, d)
		r.mu.Unlock()
		return inner(ctx, d)
	}
	return p
}

func (r *recordedWaits) get() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

func newTestClient(t *testing.T, endpoint, token string, mod func(*Options)) *Client {
	t.Helper()
	o := Options{Endpoint: endpoint, Token: token, Retry: TestFastRetries()}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	// Idle pooled connections would keep a test server's graceful shutdown waiting.
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestNewRejectsBadEndpoints(t *testing.T) {
	for _, ep := range []string{"ftp://x", "huggingface.co", "https://user:pw@h", "https://h?q=1", "http://"} {
		if _, err := New(Options{Endpoint: ep}); err == nil {
			t.Errorf("New(%q): want an error", ep)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q): error leaks the password: %v", ep, err)
		}
	}
	c, err := New(Options{Endpoint: "https://huggingface.co/"})
	if err != nil || c.Endpoint() != "https://huggingface.co" {
		t.Fatalf("trailing slash: %v %q", err, c.Endpoint())
	}
}

func TestUserAgentAndRequestID(t *testing.T) {
	var ua, trace string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua, trace = r.Header.Get("User-Agent"), r.Header.Get("X-Amzn-Trace-Id")
		w.Write([]byte(`{"name":"u","auth":{"accessToken":{"role":"write"}}}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "hf_x", func(o *Options) { o.Version = "1.2.3" })
	w, err := c.WhoAmI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w.Name != "u" || w.Role() != "write" {
		t.Errorf("whoami = %+v", w)
	}
	if !strings.HasPrefix(ua, "hubsync/1.2.3; go/") || !strings.Contains(ua, "; os/") {
		t.Errorf("User-Agent = %q", ua)
	}
	if len(trace) != 36 || strings.Count(trace, "-") != 4 {
		t.Errorf("X-Amzn-Trace-Id = %q, want a UUID", trace)
	}
}

// TestTokenOnlyToEndpointOrigin: the token goes to the endpoint, never to another port on the same host, not
// through a redirect to another origin, and not on calls that do not want it.
func TestTokenOnlyToEndpointOrigin(t *testing.T) {
	const token = "hf_secret_token_value"
	var leaks atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaks.Add(1)
		}
		w.Write([]byte("payload"))
	}))
	defer other.Close()
	var gotAuth []string
	var mu sync.Mutex
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/redirect-away":
			http.Redirect(w, r, other.URL+"/blob?sig=abc", http.StatusFound)
		case "/redirect-here":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer api.Close()
	c := newTestClient(t, api.URL, token, nil)
	ctx := context.Background()

	r, err := c.send(ctx, call{method: "GET", url: api.URL + "/redirect-away", auth: true, redirects: true})
	if err != nil || string(r.body) != "payload" {
		t.Fatalf("redirect away: %v %q", err, r.body)
	}
	if _, err := c.send(ctx, call{method: "GET", url: api.URL + "/redirect-here", auth: true, redirects: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.send(ctx, call{method: "PUT", url: other.URL + "/put", auth: true, body: jsonBody([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.send(ctx, call{method: "POST", url: api.URL + "/complete", auth: false, body: jsonBody([]byte("{}"))}); err != nil {
		t.Fatal(err)
	}
	if leaks.Load() != 0 {
		t.Errorf("%d requests to another origin carried Authorization", leaks.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer " + token, "Bearer " + token, "Bearer " + token, ""}
	if strings.Join(gotAuth, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization on the endpoint = %q, want %q", gotAuth, want)
	}
}

func TestSameOrigin(t *testing.T) {
	c := newTestClient(t, "https://huggingface.co", "", nil)
	for _, tc := range []struct {
		u    string
		want bool
	}{
		{"https://huggingface.co/api/x", true},
		{"https://huggingface.co:443/api/x", true},
		{"https://HuggingFace.co/x", true},
		{"http://huggingface.co/x", false},
		{"https://huggingface.co:8443/x", false},
		{"https://cdn-lfs.huggingface.co/x", false},
		{"https://huggingface.co.evil.com/x", false},
		{"https://evil.com/huggingface.co", false},
	} {
		u := mustParse(t, tc.u)
		if got := c.sameOrigin(u); got != tc.want {
			t.Errorf("sameOrigin(%s) = %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestRetriesHonourRetryAfterAndRateLimit(t *testing.T) {
	tests := []struct {
		name     string
		header   http.Header
		status   int
		wantWait time.Duration
	}{
		{"retry-after", http.Header{"Retry-After": {"7"}}, 503, 7 * time.Second},
		{"ratelimit", http.Header{"Ratelimit": {`"api";r=0;t=42`}}, 429, 42 * time.Second},
		{"retry-after wins", http.Header{"Retry-After": {"3"}, "Ratelimit": {`"api";r=0;t=42`}}, 429, 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if string(body) != "payload" {
					t.Errorf("attempt %d: body %q (not rewound)", n.Load()+1, body)
				}
				if n.Add(1) == 1 {
					for k, v := range tc.header {
						w.Header()[k] = v
					}
					w.WriteHeader(tc.status)
					return
				}
				w.Write([]byte("ok"))
			}))
			defer srv.Close()
			var rec recordedWaits
			c := newTestClient(t, srv.URL, "", func(o *Options) { o.Retry = rec.policy() })
			if _, err := c.send(context.Background(), call{method: "POST", url: srv.URL + "/x", body: jsonBody([]byte("payload"))}); err != nil {
				t.Fatal(err)
			}
			if w := rec.get(); len(w) != 1 || w[0] != tc.wantWait {
				t.Errorf("waits = %v, want [%v]", w, tc.wantWait)
			}
		})
	}
}

func TestRateLimitErrorAfterRetries(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "2")
		w.Header().Set("X-Request-Id", "req-1")
		w.WriteHeader(429)
		w.Write([]byte(`{"error":"slow down"}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	_, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/api/x?secret=1"})
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v, want a RateLimitError with 2s", err)
	}
	if got := n.Load(); got != int64(c.retry.MaxAttempts) {
		t.Errorf("%d attempts, want %d", got, c.retry.MaxAttempts)
	}
	var he *HTTPError
	if !errors.As(err, &he) || he.RequestID != "req-1" || he.Message != "slow down" || strings.Contains(he.URL, "secret") {
		t.Errorf("HTTPError = %+v", he)
	}
}

func TestRetryAfterBeyondCapFailsFast(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(429)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	_, err := c.send(context.Background(), call{method: "GET", url: srv.URL})
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Hour || n.Load() != 1 {
		t.Fatalf("err = %v after %d attempts; want an immediate RateLimitError of 1h", err, n.Load())
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 409, 412, 422} {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("X-Error-Code", "RepoNotFound")
			w.WriteHeader(status)
		}))
		c := newTestClient(t, srv.URL, "", nil)
		_, err := c.send(context.Background(), call{method: "GET", url: srv.URL})
		srv.Close()
		if n.Load() != 1 {
			t.Errorf("status %d: %d attempts, want 1", status, n.Load())
		}
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != status {
			t.Errorf("status %d: err = %v", status, err)
		}
	}
}

func TestNetworkErrorsAreRetriedAndRedacted(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	r, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/x?X-Signature=topsecret"})
	if err != nil || string(r.body) != "ok" || n.Load() != 3 {
		t.Fatalf("err=%v attempts=%d", err, n.Load())
	}
	// A dead server: the error names the URL without its query.
	srv.Close()
	_, err = c.send(context.Background(), call{method: "GET", url: srv.URL + "/x?X-Signature=topsecret"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("err = %v: want an error without the query", err)
	}
	var lost *lostResponseError
	if !errors.As(err, &lost) {
		t.Errorf("err = %T, want a lostResponseError", err)
	}
}

func TestContentLengthOnStreamedBodies(t *testing.T) {
	var gotCL int64
	var gotTE []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotCL, gotTE = r.ContentLength, r.TransferEncoding
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	data := bytes.Repeat([]byte("a"), 100000)
	_, err := c.send(context.Background(), call{method: "PUT", url: srv.URL, body: func() (io.Reader, int64, error) {
		return io.NewSectionReader(bytes.NewReader(data), 10, 5000), 5000, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gotCL != 5000 || len(gotTE) != 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v; want 5000 and none", gotCL, gotTE)
	}
}

func TestTraceLogsRedactToken(t *testing.T) {
	const token = "hf_trace_log_secret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
	}))
	defer srv.Close()
	var buf bytes.Buffer
	c := newTestClient(t, srv.URL, token, func(o *Options) {
		o.Logger = zerolog.New(&buf).Level(zerolog.TraceLevel)
	})
	_, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/api/x", auth: true})
	if err == nil {
		t.Fatal("want an error")
	}
	if !strings.Contains(buf.String(), "REDACTED") {
		t.Errorf("trace log does not show the redacted header:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), token) || strings.Contains(err.Error(), token) {
		t.Errorf("token leaked into logs or error")
	}
}

// TestBodiesAreStreamed: a large body is not read into memory before it is sent (the server sees its first
// bytes while the client has produced only a small prefix).
func TestBodiesAreStreamed(t *testing.T) {
	const size = 64 << 20
	var produced atomic.Int64
	var producedAtFirstByte int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var one [1]byte
		io.ReadFull(r.Body, one[:])
		producedAtFirstByte = produced.Load()
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	_, err := c.send(context.Background(), call{method: "PUT", url: srv.URL, body: func() (io.Reader, int64, error) {
		return io.LimitReader(&countingZeros{n: &produced}, size), size, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if producedAtFirstByte > 16<<20 {
		t.Errorf("%d bytes produced before the server saw the first one: the body was buffered", producedAtFirstByte)
	}
}

type countingZeros struct{ n *atomic.Int64 }

func (z *countingZeros) Read(p []byte) (int, error) {
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}

// TestRequestLogDurationHasUnit: a request log line states its duration with a unit ("took":"1.2ms"), never
// zerolog's bare number of milliseconds.
func TestRequestLogDurationHasUnit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	var buf bytes.Buffer
	c := newTestClient(t, srv.URL, "", func(o *Options) {
		o.Logger = zerolog.New(&buf).Level(zerolog.DebugLevel)
	})
	if _, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/api/x"}); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Took any `json:"took"`
	}
	first, _, _ := strings.Cut(buf.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("log line %q: %v", first, err)
	}
	s, ok := line.Took.(string)
	if !ok {
		t.Fatalf("took = %#v (%T), want a duration string with its unit", line.Took, line.Took)
	}
	if _, err := time.ParseDuration(s); err != nil {
		t.Errorf("took = %q: %v", s, err)
	}
}
