package hub

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeRepo is a minimal hostile Hub for one repo "o/r" holding one file: handlers for the revision request,
// the tree listing and the file body can each be replaced.
type fakeRepo struct {
	content  []byte
	commit   string
	revision http.HandlerFunc // GET /api/models/o/r/revision/main
	tree     http.HandlerFunc // GET /api/models/o/r/tree/<commit>
	file     http.HandlerFunc // GET /o/r/resolve/<commit>/f.bin
	other    http.HandlerFunc
	requests atomic.Int64 // file requests
}

func newFakeRepo(t *testing.T, content []byte) (*fakeRepo, *httptest.Server) {
	t.Helper()
	f := &fakeRepo{content: content, commit: strings.Repeat("ab", 20)}
	f.revision = func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"id":"o/r","sha":%q}`, f.commit)
	}
	f.tree = func(w http.ResponseWriter, _ *http.Request) {
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", len(f.content))
		h.Write(f.content)
		fmt.Fprintf(w, `[{"type":"file","oid":%q,"size":%d,"path":"f.bin"}]`, hex.EncodeToString(h.Sum(nil)), len(f.content))
	}
	f.file = func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f.bin", time.Time{}, bytes.NewReader(f.content))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/models/o/r/revision/main":
			f.revision(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/models/o/r/tree/"):
			f.tree(w, r)
		case strings.HasPrefix(r.URL.Path, "/o/r/resolve/"):
			f.requests.Add(1)
			f.file(w, r)
		case f.other != nil:
			f.other(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// gzipBomb returns a gzip stream of `members` concatenated members, each `each` zero bytes decoded.
func gzipBomb(t *testing.T, each, members int) []byte {
	t.Helper()
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for i := 0; i < each>>20; i++ {
		zw.Write(zero)
	}
	zw.Close()
	return bytes.Repeat(one.Bytes(), members)
}

// Issue 14.1: a 4 MB gzip answer to the revision request (about 4 GB decoded) is cut at the cap: the download
// fails naming the endpoint and allocates far less than 100 MB on the way.
func TestGzipBombAnswerIsCapped(t *testing.T) {
	bomb := gzipBomb(t, 64<<20, 64) // about 4 MB compressed, 4 GB decoded
	t.Logf("gzip answer: %d bytes compressed", len(bomb))
	f, srv := newFakeRepo(t, []byte("x"))
	f.revision = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/json")
		w.Write(bomb)
	}
	c := newTestClient(t, srv.URL, "", nil)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.Download(context.Background(), "o/r", "main", DownloadOptions{CacheDir: t.TempDir()})
	runtime.ReadMemStats(&after)
	var tl *ResponseTooLargeError
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), "/api/models/o/r/revision/main") {
		t.Fatalf("err = %v, want a ResponseTooLargeError naming the revision endpoint", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MB during the download (heap in use after: %.1f MB)", float64(alloc)/(1<<20), float64(after.HeapInuse)/(1<<20))
	if alloc > 100<<20 {
		t.Errorf("allocated %d bytes, want < 100 MB", alloc)
	}
}

// Issue 14.1: an endless plain answer is cut at the cap with an error naming the endpoint.
func TestEndlessPlainAnswerIsCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := bytes.Repeat([]byte("a"), 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", func(o *Options) { o.MaxResponseBytes = 1 << 20 })
	_, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/api/whoami-v2?x=secret"})
	var tl *ResponseTooLargeError
	if !errors.As(err, &tl) || tl.Limit != 1<<20 || !strings.Contains(err.Error(), "/api/whoami-v2") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v, want a ResponseTooLargeError naming the endpoint (without its query)", err)
	}
}

// Issue 14.1: an endless chain of tree pages ends at the entry cap, and at the time cap.
func TestEndlessTreePaginationIsCapped(t *testing.T) {
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := pages.Add(1)
		w.Header().Set("Link", fmt.Sprintf(`<%s?cursor=%d>; rel="next"`, r.URL.Path, n))
		var b strings.Builder
		b.WriteString("[")
		for i := 0; i < 100; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"type":"directory","oid":"%040d","size":0,"path":"d%d-%d"}`, 0, n, i)
		}
		b.WriteString("]")
		io.WriteString(w, b.String())
	}))
	defer srv.Close()
	tests := []struct {
		name   string
		limits listLimits
		want   string
	}{
		{"entries", listLimits{entries: 1000, duration: time.Hour}, "1000 entries"},
		{"time", listLimits{entries: 1 << 30, duration: 100 * time.Millisecond}, "took longer than 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages.Store(0)
			c := newTestClient(t, srv.URL, "", nil)
			c.listLimits = tt.limits
			_, err := c.ListTree(context.Background(), "o/r", "main", "", true)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/api/models/o/r/tree/main") {
				t.Fatalf("err = %v, want %q naming the endpoint", err, tt.want)
			}
			t.Logf("stopped after %d pages: %v", pages.Load(), err)
		})
	}
}

// stallUntil blocks a handler until the client goes away or the test ends.
func stallUntil(r *http.Request, done <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-done:
	}
}

// Issue 14.2: an API answer that stops after 7 bytes is aborted at the stall deadline and retried.
func TestStalledAnswerIsRetried(t *testing.T) {
	done := make(chan struct{})
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"name":"alice","type":"user"}`
		if n.Add(1) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body[:7])
			w.(http.Flusher).Flush()
			stallUntil(r, done)
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	defer close(done)
	c := newTestClient(t, srv.URL, "", func(o *Options) { o.StallTimeout = time.Second })
	r, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/api/whoami-v2"})
	if err != nil || !strings.Contains(string(r.body), "alice") || n.Load() != 2 {
		t.Fatalf("err=%v attempts=%d", err, n.Load())
	}
}

// Issue 14.2: a slow answer that keeps moving is not cut, although it takes longer than the stall deadline.
func TestSlowMovingAnswerIsNotCut(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		for i := 0; i < 30; i++ {
			io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond) // a trickle: one byte per 50 ms, 1.5 s in all
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", func(o *Options) { o.StallTimeout = time.Second })
	r, err := c.send(context.Background(), call{method: "GET", url: srv.URL + "/x"})
	if err != nil || len(r.body) != 30 || n.Load() != 1 {
		t.Fatalf("err=%v len=%d attempts=%d", err, len(r.body), n.Load())
	}
}

// Issue 14.2: a file body that stops at 10 of 120 bytes is resumed from byte 10 after the stall deadline.
func TestStalledDownloadBodyIsResumed(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 12)
	done := make(chan struct{})
	f, srv := newFakeRepo(t, content)
	var ranges []string
	var mu sync.Mutex
	f.file = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if f.requests.Load() == 1 {
			w.Header().Set("Content-Length", "120")
			w.Write(content[:10])
			w.(http.Flusher).Flush()
			stallUntil(r, done)
			return
		}
		http.ServeContent(w, r, "f.bin", time.Time{}, bytes.NewReader(content))
	}
	defer close(done)
	c := newTestClient(t, srv.URL, "", func(o *Options) { o.StallTimeout = time.Second })
	dir, err := c.Download(context.Background(), "o/r", "main", DownloadOptions{LocalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f.bin"))
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got, content) || len(ranges) != 2 || ranges[1] != "bytes=10-" {
		t.Fatalf("content ok=%v, ranges=%q", bytes.Equal(got, content), ranges)
	}
}

// Issue 14.2: a storage host that stops reading a PUT is abandoned at the stall deadline and the PUT resent.
func TestStorageHostThatStopsReadingIsRetried(t *testing.T) {
	const size = 32 << 20
	done := make(chan struct{})
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			io.CopyN(io.Discard, r.Body, 4<<20)
			stallUntil(r, done)
			return
		}
		got, _ := io.Copy(io.Discard, r.Body)
		if got != size {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		w.Header().Set("ETag", `"e1"`)
	}))
	defer srv.Close()
	defer close(done)
	c := newTestClient(t, srv.URL, "", func(o *Options) { o.StallTimeout = time.Second })
	payload := make([]byte, size)
	r, err := c.send(context.Background(), call{method: "PUT", url: srv.URL + "/part/1", body: jsonBody(payload)})
	if err != nil || r.header.Get("ETag") != `"e1"` || n.Load() != 2 {
		t.Fatalf("err=%v attempts=%d", err, n.Load())
	}
}

// Issue 14.3: a server that truncates every file and ignores Range ends in a clear error after a bounded
// number of requests (one restart from zero).
func TestServerIgnoringRangeAndTruncatingEnds(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 120)
	f, srv := newFakeRepo(t, content)
	f.file = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "120")
		w.WriteHeader(http.StatusOK) // never 206
		w.Write(content[:50])        // and cut short
	}
	c := newTestClient(t, srv.URL, "", nil)
	_, err := c.Download(context.Background(), "o/r", "main", DownloadOptions{LocalDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "does not honour Range") {
		t.Fatalf("err = %v, want a Range error", err)
	}
	if got := f.requests.Load(); got > 4 {
		t.Errorf("%d file requests, want at most 4", got)
	}
}

// Issue 14.3: a server that honours Range but sends one byte per answer: progress does not buy unlimited
// retries; the total per file is bounded.
func TestTricklingTruncationIsBounded(t *testing.T) {
	content := bytes.Repeat([]byte("y"), 1000)
	f, srv := newFakeRepo(t, content)
	f.file = func(w http.ResponseWriter, r *http.Request) {
		var from int
		if rg := r.Header.Get("Range"); rg != "" {
			from, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(content)-1, len(content)))
			w.Header().Set("Content-Length", strconv.Itoa(len(content)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		}
		w.Write(content[from : from+1])
	}
	c := newTestClient(t, srv.URL, "", nil)
	_, err := c.Download(context.Background(), "o/r", "main", DownloadOptions{LocalDir: t.TempDir()})
	want := maxFileRequests(c.retry.MaxAttempts)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d requests", want)) {
		t.Fatalf("err = %v", err)
	}
	if got := f.requests.Load(); got != int64(want) {
		t.Errorf("%d file requests, want %d", got, want)
	}
}

// Issue 7: S3's 400 RequestTimeout is retried in place, and is not a refusal of the URL.
func TestStorageRequestTimeoutRetriedInPlace(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeout</Code><Message>Your socket connection to the server was not read from or written to within the timeout period.</Message></Error>`)
			return
		}
		w.Header().Set("ETag", `"e1"`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "", nil)
	r, err := c.send(context.Background(), call{method: "PUT", url: srv.URL + "/part", body: jsonBody([]byte("abc"))})
	if err != nil || r.header.Get("ETag") != `"e1"` || n.Load() != 2 {
		t.Fatalf("err=%v attempts=%d", err, n.Load())
	}
	he := newHTTPError("PUT", srv.URL, 400, http.Header{}, []byte(`<Error><Code>RequestTimeout</Code></Error>`), "")
	if urlRefused(he) {
		t.Error("RequestTimeout counted as a refused URL")
	}
	he = newHTTPError("PUT", srv.URL, 403, http.Header{}, []byte(`<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`), "")
	if !urlRefused(he) || he.Code != "AccessDenied" {
		t.Errorf("expired signature not a refusal (code %q)", he.Code)
	}
}

// fakeStorage is a hostile LFS batch + multipart storage for one object; every batch answer re-signs the URLs
// of the same upload id (as the Hub does for an upload in progress) unless newUploadEachBatch.
type fakeStorage struct {
	srv        *httptest.Server
	oid        string
	size       int64
	chunk      int64
	batches    atomic.Int64
	part       func(n int, send int64) int // status for the send-th PUT of part n
	sends      sync.Map                    // part n -> *atomic.Int64
	completes  atomic.Int64
	completed  []completionPart
	expiredURL bool // the first batch answer's URLs are already expired
	mu         sync.Mutex
}

func (s *fakeStorage) sendsOf(n int) int64 {
	v, _ := s.sends.LoadOrStore(n, &atomic.Int64{})
	return v.(*atomic.Int64).Load()
}

func newFakeStorage(t *testing.T, content []byte, chunk int64) *fakeStorage {
	t.Helper()
	sum := sha256.Sum256(content)
	s := &fakeStorage{oid: hex.EncodeToString(sum[:]), size: int64(len(content)), chunk: chunk}
	s.part = func(int, int64) int { return http.StatusOK }
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/lfs/objects/batch"):
			b := s.batches.Add(1)
			header := map[string]string{"chunk_size": strconv.FormatInt(chunk, 10)}
			date := time.Now().UTC()
			if s.expiredURL && b == 1 {
				date = date.Add(-2 * time.Hour)
			}
			parts := partCount(s.size, chunk)
			for n := int64(1); n <= parts; n++ {
				header[fmt.Sprintf("%05d", n)] = fmt.Sprintf("%s/part/%d?batch=%d&X-Amz-Date=%s&X-Amz-Expires=3600", s.srv.URL, n, b, date.Format("20060102T150405Z"))
			}
			w.Header().Set("Content-Type", lfsMediaType)
			json.NewEncoder(w).Encode(map[string]any{"transfer": "multipart", "objects": []any{map[string]any{
				"oid": s.oid, "size": s.size, "authenticated": true,
				"actions": map[string]any{"upload": map[string]any{"href": s.srv.URL + "/complete?uploadId=U1", "header": header}},
			}}})
		case strings.HasPrefix(r.URL.Path, "/part/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/part/"))
			v, _ := s.sends.LoadOrStore(n, &atomic.Int64{})
			k := v.(*atomic.Int64).Add(1)
			io.Copy(io.Discard, r.Body)
			if st := s.part(n, k); st != http.StatusOK {
				w.WriteHeader(st)
				if st == http.StatusForbidden {
					io.WriteString(w, `<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`)
				}
				return
			}
			w.Header().Set("ETag", fmt.Sprintf(`"etag-%d"`, n))
		case r.URL.Path == "/complete":
			s.completes.Add(1)
			var body struct {
				Parts []completionPart `json:"parts"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			s.mu.Lock()
			s.completed = body.Parts
			s.mu.Unlock()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// uploadFake runs uploadOne for content against s, starting with a first batch answer.
func uploadFake(t *testing.T, s *fakeStorage, content []byte, mod func(*Options)) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, s.srv.URL, "", mod)
	f := &preparedFile{UploadFile: UploadFile{LocalPath: path}, path: "blob", sha256: s.oid, size: s.size}
	ctx := context.Background()
	plans, err := c.batchUpload(ctx, "o/r", "main", false, []batchItem{{OID: s.oid, Size: s.size}})
	if err != nil {
		t.Fatal(err)
	}
	return c.uploadOne(ctx, "o/r", "main", false, f, plans[s.oid], nil, newProgressSink(nil))
}

// Issue 7: one retry budget per part across re-batches: a part that fails with 500s and, now and then, an
// expired-signature 403 is sent at most MaxAttempts times in all (not 6 per batch answer x 3 batch answers).
func TestPartSendsBoundedAcrossRebatches(t *testing.T) {
	content := bytes.Repeat([]byte("z"), 300)
	s := newFakeStorage(t, content, 100)
	s.part = func(n int, k int64) int {
		if n != 2 {
			return http.StatusOK
		}
		if k%3 == 0 {
			return http.StatusForbidden
		}
		return http.StatusInternalServerError
	}
	err := uploadFake(t, s, content, nil)
	if err == nil {
		t.Fatal("upload succeeded against a part that always fails")
	}
	if got := s.sendsOf(2); got > int64(DefaultRetryPolicy().MaxAttempts) {
		t.Errorf("part 2 sent %d times, want at most %d", got, DefaultRetryPolicy().MaxAttempts)
	}
	t.Logf("part 2 sent %d times over %d batch answers: %v", s.sendsOf(2), s.batches.Load(), err)
}

// Issue 7: a real refusal (expired signature) asks for a new batch; the new batch (same upload) keeps the
// parts already stored.
func TestRebatchKeepsStoredParts(t *testing.T) {
	content := bytes.Repeat([]byte("w"), 300)
	s := newFakeStorage(t, content, 100)
	s.part = func(n int, k int64) int {
		if n == 2 && k == 1 {
			return http.StatusForbidden
		}
		return http.StatusOK
	}
	if err := uploadFake(t, s, content, func(o *Options) { o.ParallelParts = 1 }); err != nil {
		t.Fatal(err)
	}
	if s.batches.Load() != 2 || s.sendsOf(1) != 1 || s.sendsOf(3) > 1 || s.sendsOf(2) != 2 || s.completes.Load() != 1 {
		t.Fatalf("batches=%d sends: part1=%d part2=%d part3=%d completes=%d", s.batches.Load(), s.sendsOf(1), s.sendsOf(2), s.sendsOf(3), s.completes.Load())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.completed) != 3 {
		t.Fatalf("completed with %v", s.completed)
	}
}

// Issue 7: URLs that are already expired are not used: fresh ones are asked for before any part is sent.
func TestExpiredURLsAreNotUsed(t *testing.T) {
	content := bytes.Repeat([]byte("v"), 300)
	s := newFakeStorage(t, content, 100)
	s.expiredURL = true
	var sawExpired atomic.Bool
	s.part = func(int, int64) int { return http.StatusOK }
	inner := s.srv.Config.Handler
	s.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/part/") && r.URL.Query().Get("batch") == "1" {
			sawExpired.Store(true)
		}
		inner.ServeHTTP(w, r)
	})
	if err := uploadFake(t, s, content, nil); err != nil {
		t.Fatal(err)
	}
	if sawExpired.Load() || s.batches.Load() != 2 {
		t.Fatalf("a part was sent with an expired URL (%v) or batches=%d", sawExpired.Load(), s.batches.Load())
	}
}

// Issue 7: network trouble is visible at once: each retry logs "retrying in …s (attempt 2/6): connection
// refused" at info level.
func TestRetriesAreLoggedAtInfo(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	w := zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) }))
	c := newTestClient(t, u, "", func(o *Options) { o.Logger = zerolog.New(w).Level(zerolog.InfoLevel) })
	_, err := c.send(context.Background(), call{method: "GET", url: u + "/api/whoami-v2"})
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	for _, want := range []string{"(attempt 2/6): connection refused", "(attempt 6/6): connection refused", `"level":"info"`, "retrying in "} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FuzzStorageErrorCode: any body gives a short alphanumeric code or "".
func FuzzStorageErrorCode(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><Error><Code>RequestTimeout</Code></Error>`))
	f.Add([]byte(`<Error><Code>`))
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := storageErrorCode(b)
		if len(c) > 64 || strings.ContainsAny(c, "<>/ \n") {
			t.Fatalf("code %q", c)
		}
	})
}

// Issue 7: a new batch answer for the same upload keeps the journaled parts: after a refusal and a later
// failure, the journal holds the fresh URLs and every part stored under either answer.
func TestRebatchKeepsJournaledParts(t *testing.T) {
	content := bytes.Repeat([]byte("u"), 300)
	s := newFakeStorage(t, content, 100)
	s.part = func(n int, k int64) int {
		switch {
		case n == 2 && k == 1:
			return http.StatusForbidden
		case n == 3:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	j, err := OpenBoltJournal(filepath.Join(t.TempDir(), "uploads.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := uploadFake(t, s, content, func(o *Options) { o.ParallelParts = 1; o.Journal = j }); err == nil {
		t.Fatal("upload succeeded although part 3 always fails")
	}
	c := newTestClient(t, s.srv.URL, "", nil)
	rec, err := j.Get(context.Background(), c.journalKey("o/r", s.oid))
	if err != nil || rec == nil {
		t.Fatalf("journal record: %v, %v", rec, err)
	}
	if !strings.Contains(rec.PartURLs[0], "batch=2") || rec.ETags[1] != `"etag-1"` || rec.ETags[2] != `"etag-2"` || rec.ETags[3] != "" {
		t.Fatalf("journal: urls %v etags %v", rec.PartURLs, rec.ETags)
	}
}

// The retry line names the status and a plain error code, never raw server text.
func TestRetryLogShowsStatusNotServerText(t *testing.T) {
	for _, tc := range []struct {
		code, want, never string
	}{
		{"SlowDown", "(attempt 2/6): 503 Service Unavailable (SlowDown)", ""},
		{"Done! commit https://evil.example/ok", "(attempt 2/6): 503 Service Unavailable", "evil.example"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["X-Error-Code"] = []string{tc.code}
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		var buf bytes.Buffer
		var mu sync.Mutex
		w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
		c := newTestClient(t, srv.URL, "", func(o *Options) { o.Logger = zerolog.New(w).Level(zerolog.InfoLevel) })
		_, _ = c.send(context.Background(), call{method: "GET", url: srv.URL + "/x"})
		srv.Close()
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if !strings.Contains(out, tc.want) || (tc.never != "" && strings.Contains(out, tc.never)) {
			t.Errorf("code %q: log:\n%s", tc.code, out)
		}
	}
}
