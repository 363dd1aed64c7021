package hubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// multipartFixture starts a multipart upload of data and returns the action.
func (e *env) multipartFixture(data []byte) (oid, href string, hdr map[string]string) {
	e.t.Helper()
	oid = sha256hex(data)
	a := e.batch(aliceTok, "alice/m", "upload", obj(oid, len(data)))
	up := a.Objects[0].Actions["upload"]
	if up.Header["chunk_size"] == "" {
		e.t.Fatalf("want a multipart answer, got %+v", a)
	}
	return oid, up.Href, up.Header
}

func completeBody(oid string, parts []map[string]any) io.Reader {
	b, _ := json.Marshal(map[string]any{"oid": oid, "parts": parts})
	return bytes.NewReader(b)
}

func TestStoragePutValidation(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(30, 5000)
	oid := sha256hex(data)
	a := e.batch(aliceTok, "alice/m", "upload", obj(oid, len(data)))
	href := a.Objects[0].Actions["upload"].Href

	// Chunked transfer encoding (no Content-Length) is refused.
	req, _ := http.NewRequest("PUT", href, io.MultiReader(bytes.NewReader(data)))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusLengthRequired {
		t.Errorf("chunked PUT: %d", res.StatusCode)
	}
	tests := []struct {
		name  string
		href  string
		body  []byte
		token string
		want  int
		code  string
	}{
		{"wrong content", href, randomBytes(31, 5000), "", 400, "BadDigest"},
		{"short content", href, data[:4999], "", 400, "BadDigest"},
		{"with a token", href, data, aliceTok, 400, "InvalidRequest"},
		{"tampered signature", strings.Replace(href, "X-Signature=", "X-Signature=00", 1), data, "", 403, "SignatureDoesNotMatch"},
		{"tampered size", strings.Replace(href, "size=5000", "size=5001", 1), data, "", 403, "SignatureDoesNotMatch"},
		{"other object", strings.Replace(href, oid, sha256hex([]byte("x")), 1), data, "", 403, "SignatureDoesNotMatch"},
		{"no signature", strings.Split(href, "?")[0], data, "", 403, "SignatureDoesNotMatch"},
		{"unknown storage path", e.s.StorageURL() + "/nope", data, "", 404, "NoSuchKey"},
		{"good", href, data, "", 200, ""},
		{"idempotent", href, data, "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("PUT", tt.href, tt.token, bytes.NewReader(tt.body))
			if r.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.want, r.body)
			}
			if tt.code != "" && !strings.Contains(string(r.body), "<Code>"+tt.code+"</Code>") {
				t.Errorf("body %s, want code %s", r.body, tt.code)
			}
			if tt.want != 200 && r.Header.Get("X-Error-Message") == "" {
				t.Error("no X-Error-Message")
			}
		})
	}
	if st := e.s.Stats(); st.TokenLeaks != 1 || st.ObjectsStored != 2 {
		t.Errorf("token_leaks %d, objects_stored %d", st.TokenLeaks, st.ObjectsStored)
	}
}

func TestMultipartValidation(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(40, 4*(64<<10)+100) // 5 parts, the last one of 100 bytes
	oid, href, hdr := e.multipartFixture(data)
	parts := e.putParts(data, hdr) // 5 parts
	if len(parts) != 5 {
		t.Fatalf("%d parts", len(parts))
	}
	// Re-PUT of a part overwrites it with a new ETag.
	chunk := 64 << 10
	r := e.do("PUT", hdr["00002"], "", bytes.NewReader(bytes.Repeat([]byte{7}, chunk)))
	changed := r.Header.Get("ETag")
	if r.StatusCode != 200 || changed == parts[1]["etag"] {
		t.Fatalf("re-PUT: %d %s", r.StatusCode, changed)
	}
	with := func(mod func([]map[string]any) []map[string]any) []map[string]any {
		cp := make([]map[string]any, len(parts))
		for i, p := range parts {
			cp[i] = map[string]any{"partNumber": p["partNumber"], "etag": p["etag"]}
		}
		return mod(cp)
	}
	tests := []struct {
		name  string
		href  string
		body  io.Reader
		ctype string
		token string
		want  int
		msg   string
	}{
		{"stale ETag of an overwritten part", href, completeBody(oid, parts), lfsMediaType, "", 400, "ETag of part 2"},
		{"parts out of order", href, completeBody(oid, with(func(p []map[string]any) []map[string]any { p[0], p[1] = p[1], p[0]; return p })), lfsMediaType, "", 400, "InvalidPartOrder"},
		{"missing part", href, completeBody(oid, with(func(p []map[string]any) []map[string]any { return p[:4] })), lfsMediaType, "", 400, "lists 4 parts"},
		{"wrong oid", href, completeBody(sha256hex([]byte("x")), parts), lfsMediaType, "", 400, "does not match"},
		{"unquoted ETags are fine but part 2 is still stale", href, completeBody(oid, with(func(p []map[string]any) []map[string]any {
			p[0]["etag"] = strings.Trim(p[0]["etag"].(string), `"`)
			return p
		})), "application/json", "", 400, "ETag of part 2"},
		{"with a token", href, completeBody(oid, parts), lfsMediaType, aliceTok, 400, leakMessage},
		{"bad signature", strings.Replace(href, "signature=", "signature=0", 1), completeBody(oid, parts), lfsMediaType, "", 403, "signature"},
		{"not JSON", href, strings.NewReader("{"), lfsMediaType, "", 400, "Invalid completion body"},
		{"wrong content type", href, completeBody(oid, parts), "text/plain", "", 415, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", tt.href, tt.token, tt.body, "Content-Type", tt.ctype)
			if r.StatusCode != tt.want || !strings.Contains(string(r.body), tt.msg) {
				t.Fatalf("status %d, want %d with %q: %s", r.StatusCode, tt.want, tt.msg, r.body)
			}
		})
	}
	// Restore part 2; a part PUT with a token is a leak.
	if r := e.do("PUT", hdr["00002"], aliceTok, bytes.NewReader(data[chunk:2*chunk])); r.StatusCode != 400 {
		t.Errorf("part PUT with a token: %d", r.StatusCode)
	}
	r = e.do("PUT", hdr["00002"], "", bytes.NewReader(data[chunk:2*chunk]))
	if r.Header.Get("ETag") != parts[1]["etag"] {
		t.Fatalf("restored part ETag %s, want %s", r.Header.Get("ETag"), parts[1]["etag"])
	}
	if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete: %d %s", r.StatusCode, r.body)
	}
	// A retried completion (lost answer) succeeds; a part PUT after completion finds no upload.
	if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Errorf("second completion: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("PUT", hdr["00001"], "", bytes.NewReader(data[:chunk])); r.StatusCode != 404 {
		t.Errorf("part PUT after completion: %d", r.StatusCode)
	}
	if st := e.s.Stats(); st.TokenLeaks != 2 {
		t.Errorf("token_leaks %d", st.TokenLeaks)
	}
}

func TestMultipartPartRules(t *testing.T) {
	opts := testOptions()
	opts.ChunkSize = 32 << 10 // below MinPartSize: the completion must refuse it
	e := newEnv(t, opts)
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(50, 300<<10)
	oid, href, hdr := e.multipartFixture(data)
	if hdr["chunk_size"] != fmt.Sprint(32<<10) {
		t.Fatalf("chunk_size %s", hdr["chunk_size"])
	}
	parts := e.putParts(data, hdr)
	r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType)
	if r.StatusCode != 400 || !strings.Contains(string(r.body), "EntityTooSmall") {
		t.Errorf("small parts: %d %s", r.StatusCode, r.body)
	}
	// Parts whose bytes do not make the object are refused after reassembly.
	opts2 := testOptions()
	e2 := newEnv(t, opts2)
	e2.createRepo(aliceTok, "alice", "m", false)
	data2 := randomBytes(51, 300<<10)
	oid2, href2, hdr2 := e2.multipartFixture(data2)
	bad := append([]byte(nil), data2...)
	bad[len(bad)-1] ^= 1
	parts2 := e2.putParts(bad, hdr2)
	r = e2.do("POST", href2, "", completeBody(oid2, parts2), "Content-Type", lfsMediaType)
	if r.StatusCode != 400 || !strings.Contains(string(r.body), "do not make the object") {
		t.Errorf("corrupt parts: %d %s", r.StatusCode, r.body)
	}
	if _, ok := e2.s.HasObject(oid2); ok {
		t.Error("a corrupt object was stored")
	}
	// Part numbers out of range.
	u := strings.Replace(hdr2["00001"], "/1?", "/0?", 1)
	if r := e2.do("PUT", u, "", bytes.NewReader([]byte("x"))); r.StatusCode != 403 {
		t.Errorf("part 0 (URL not signed for it): %d", r.StatusCode)
	}
}

func TestFreshUploadIDPerBatch(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(60, 300<<10)
	oid, href1, hdr1 := e.multipartFixture(data)
	_, href2, hdr2 := e.multipartFixture(data)
	id := func(h string) string { u, _ := url.Parse(h); return u.Query().Get("uploadId") }
	if id(href1) == id(href2) || id(href1) == "" {
		t.Fatalf("upload ids %q %q: want two fresh ids", id(href1), id(href2))
	}
	// Both uploads are alive; the first one finishes with parts from... itself only.
	parts1 := e.putParts(data, hdr1)
	r := e.do("POST", href2, "", completeBody(oid, parts1), "Content-Type", lfsMediaType)
	if r.StatusCode != 400 {
		t.Errorf("completing upload 2 with upload 1's parts: %d", r.StatusCode)
	}
	if r := e.do("POST", href1, "", completeBody(oid, parts1), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete upload 1: %d %s", r.StatusCode, r.body)
	}
	// The second upload can still finish (the object is then simply stored again).
	parts2 := e.putParts(data, hdr2)
	if r := e.do("POST", href2, "", completeBody(oid, parts2), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete upload 2: %d %s", r.StatusCode, r.body)
	}
	if st := e.s.Stats(); st.UploadsStarted != 2 || st.Parts[partKey(oid, 1)] != 2 {
		t.Errorf("stats %+v", st)
	}
}

// clock is a settable clock for URL expiry tests.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestURLExpiry(t *testing.T) {
	var clk clock
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	opts := testOptions()
	opts.Now = clk.now
	opts.URLTTL = time.Minute
	e := newEnv(t, opts)
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(70, 300<<10)
	oid, href, hdr := e.multipartFixture(data)
	parts := e.putParts(data, hdr)
	clk.advance(61 * time.Second)
	r := e.do("PUT", hdr["00001"], "", bytes.NewReader(data[:64<<10]))
	if r.StatusCode != 403 || !strings.Contains(string(r.body), "<Code>AccessDenied</Code>") || !strings.Contains(string(r.body), "expired") {
		t.Errorf("expired part URL: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 403 {
		t.Errorf("expired completion URL: %d %s", r.StatusCode, r.body)
	}
	// A new batch gives fresh URLs; "expire every URL issued so far" kills them at once.
	small := randomBytes(71, 100)
	a := e.batch(aliceTok, "alice/m", "upload", obj(sha256hex(small), len(small)))
	put := a.Objects[0].Actions["upload"].Href
	e.s.InjectFault(FaultRule{Kind: FaultExpireURLs})
	if r := e.do("PUT", put, "", bytes.NewReader(small)); r.StatusCode != 403 {
		t.Errorf("revoked URL: %d", r.StatusCode)
	}
	a = e.batch(aliceTok, "alice/m", "upload", obj(sha256hex(small), len(small)))
	if r := e.do("PUT", a.Objects[0].Actions["upload"].Href, "", bytes.NewReader(small)); r.StatusCode != 200 {
		t.Errorf("URL issued after the revocation: %d %s", r.StatusCode, r.body)
	}
	// Expired uploads are swept from disk when new ones start.
	upID, _ := url.Parse(href)
	clk.advance(5 * time.Minute)
	e.multipartFixture(data)
	if e.s.uploadMeta(upID.Query().Get("uploadId")) != nil {
		t.Error("expired upload not swept")
	}
	// The resolve redirect expires too.
	e.commitLines(aliceTok, "alice/m", "main", "", header("add", ""), lfsLine("s.bin", sha256hex(small), int64(len(small))))
	loc := e.do("GET", "/alice/m/resolve/main/s.bin", "", nil).Header.Get("Location")
	if r := e.do("GET", loc, "", nil); r.StatusCode != 200 {
		t.Errorf("fresh download URL: %d", r.StatusCode)
	}
	clk.advance(2 * time.Minute)
	if r := e.do("GET", loc, "", nil); r.StatusCode != 403 {
		t.Errorf("expired download URL: %d", r.StatusCode)
	}
}

func TestConcurrentParts(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(80, 20*(64<<10)+7)
	oid, href, hdr := e.multipartFixture(data)
	chunk := 64 << 10
	n := (len(data) + chunk - 1) / chunk
	etags := make([]string, n+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := 1; p <= n; p++ {
		for rep := 0; rep < 2; rep++ { // every part twice, concurrently: re-PUTs overwrite
			wg.Add(1)
			go func() {
				defer wg.Done()
				lo, hi := (p-1)*chunk, min(p*chunk, len(data))
				r := e.do("PUT", hdr[fmt.Sprintf("%05d", p)], "", bytes.NewReader(data[lo:hi]))
				if r.StatusCode != 200 {
					t.Errorf("part %d: %d", p, r.StatusCode)
				}
				mu.Lock()
				etags[p] = r.Header.Get("ETag") // same content: same ETag from both PUTs
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	var parts []map[string]any
	for p := 1; p <= n; p++ {
		parts = append(parts, map[string]any{"partNumber": p, "etag": etags[p]})
	}
	if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete: %d %s", r.StatusCode, r.body)
	}
	if st := e.s.Stats(); st.Objects[oid] < 2*int64(len(data)) || st.PartsStored[partKey(oid, 3)] != 2 {
		t.Errorf("stats: %d bytes, part 3 stored %d times", st.Objects[oid], st.PartsStored[partKey(oid, 3)])
	}
}
