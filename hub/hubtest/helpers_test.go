package hubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// Tokens of the test users.
const (
	aliceTok  = "hf_alice_write"
	bobTok    = "hf_bob_write"
	readerTok = "hf_reader_read"
	carolTok  = "hf_carol_write"
)

var testTokens = []Token{
	{Name: "alice", Value: aliceTok, Write: true},
	{Name: "bob", Value: bobTok, Write: true},
	{Name: "reader", Value: readerTok},
	{Name: "carol", Value: carolTok, Write: true, Orgs: []string{"acme"}},
}

// env is a test server with a plain net/http client that never follows redirects.
type env struct {
	t  testing.TB
	s  *Server
	hc *http.Client
}

// testOptions are small sizes so that tests use small files.
func testOptions() Options {
	return Options{
		Tokens:             testTokens,
		MinPartSize:        64 << 10,
		MultipartThreshold: 256 << 10,
		PageSize:           2,
	}
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	if opts.Tokens == nil {
		opts.Tokens = testTokens
	}
	return &env{t: t, s: NewTestServer(t, opts), hc: noRedirectClient()}
}

// noRedirectClient is an HTTP client that returns redirects instead of following them.
func noRedirectClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// resp is a finished response.
type resp struct {
	*http.Response
	body []byte
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v (body %q)", r.Request.URL.Path, err, r.body)
	}
}

// do sends a request; url may be a path on the API host. hdr holds header name/value pairs.
func (e *env) do(method, url, token string, body io.Reader, hdr ...string) resp {
	e.t.Helper()
	if strings.HasPrefix(url, "/") {
		url = e.s.URL() + url
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp{res, b}
}

// api sends a JSON body (nil for none) and checks the status.
func (e *env) api(method, path, token string, body any, want int) resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	r := e.do(method, path, token, rd, "Content-Type", "application/json")
	if r.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d (body %s)", method, path, r.StatusCode, want, r.body)
	}
	return r
}

func (e *env) createRepo(token, org, name string, private bool) {
	e.t.Helper()
	e.api("POST", "/api/repos/create", token, map[string]any{"name": name, "organization": org, "private": private}, 200)
}

// commitLines posts an NDJSON commit built from lines.
func (e *env) commitLines(token, repo, rev string, query string, lines ...any) resp {
	e.t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		j, err := json.Marshal(l)
		if err != nil {
			e.t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return e.do("POST", "/api/models/"+repo+"/commit/"+rev+query, token, &b, "Content-Type", "application/x-ndjson")
}

func header(summary string, parent string) map[string]any {
	v := map[string]any{"summary": summary, "description": ""}
	if parent != "" {
		v["parentCommit"] = parent
	}
	return map[string]any{"key": "header", "value": v}
}

func fileLine(path string, content []byte) map[string]any {
	return map[string]any{"key": "file", "value": map[string]any{
		"path": path, "content": base64.StdEncoding.EncodeToString(content), "encoding": "base64"}}
}

func lfsLine(path, oid string, size int64) map[string]any {
	return map[string]any{"key": "lfsFile", "value": map[string]any{"path": path, "algo": "sha256", "oid": oid, "size": size}}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// randomBytes returns n pseudo-random bytes from a seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// batchAnswer is the decoded answer of a batch call.
type batchAnswer struct {
	Transfer string `json:"transfer"`
	Objects  []struct {
		OID     string `json:"oid"`
		Size    int64  `json:"size"`
		Actions map[string]struct {
			Href   string            `json:"href"`
			Header map[string]string `json:"header"`
		} `json:"actions"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"objects"`
}

func (e *env) batch(token, repo string, op string, objs ...any) batchAnswer {
	e.t.Helper()
	body := map[string]any{"operation": op, "transfers": []string{"basic", "multipart"}, "objects": objs, "hash_algo": "sha256", "ref": map[string]string{"name": "main"}}
	b, _ := json.Marshal(body)
	r := e.do("POST", "/"+repo+".git/info/lfs/objects/batch", token, bytes.NewReader(b),
		"Content-Type", lfsMediaType, "Accept", lfsMediaType)
	if r.StatusCode != 200 {
		e.t.Fatalf("batch: %d %s", r.StatusCode, r.body)
	}
	var a batchAnswer
	r.json(e.t, &a)
	return a
}

func obj(oid string, size int) map[string]any { return map[string]any{"oid": oid, "size": size} }

// putParts uploads every part of a multipart action and returns the completion body.
func (e *env) putParts(data []byte, hdr map[string]string) []map[string]any {
	e.t.Helper()
	var chunk int
	fmt.Sscan(hdr["chunk_size"], &chunk)
	var parts []map[string]any
	for n := 1; ; n++ {
		u, ok := hdr[fmt.Sprintf("%05d", n)]
		if !ok {
			break
		}
		lo, hi := (n-1)*chunk, min(n*chunk, len(data))
		r := e.do("PUT", u, "", bytes.NewReader(data[lo:hi]))
		if r.StatusCode != 200 {
			e.t.Fatalf("part %d: %d %s", n, r.StatusCode, r.body)
		}
		parts = append(parts, map[string]any{"partNumber": n, "etag": r.Header.Get("ETag")})
	}
	return parts
}

// upload stores data as an LFS object through the batch API (basic or multipart) and returns its oid.
func (e *env) upload(token, repo string, data []byte) string {
	e.t.Helper()
	oid := sha256hex(data)
	a := e.batch(token, repo, "upload", obj(oid, len(data)))
	o := a.Objects[0]
	if o.Error != nil {
		e.t.Fatalf("batch error: %+v", o.Error)
	}
	up, ok := o.Actions["upload"]
	if !ok {
		return oid // already stored
	}
	if _, multi := up.Header["chunk_size"]; !multi {
		r := e.do("PUT", up.Href, "", bytes.NewReader(data))
		if r.StatusCode != 200 {
			e.t.Fatalf("basic PUT: %d %s", r.StatusCode, r.body)
		}
		return oid
	}
	parts := e.putParts(data, up.Header)
	b, _ := json.Marshal(map[string]any{"oid": oid, "parts": parts})
	r := e.do("POST", up.Href, "", bytes.NewReader(b), "Content-Type", lfsMediaType)
	if r.StatusCode != 200 {
		e.t.Fatalf("complete: %d %s", r.StatusCode, r.body)
	}
	return oid
}

// head returns the commit id a revision of a model repo resolves to.
func (e *env) head(token, repo, rev string) string {
	e.t.Helper()
	var info struct {
		SHA string `json:"sha"`
	}
	e.api("GET", "/api/models/"+repo+"/revision/"+rev, token, nil, 200).json(e.t, &info)
	return info.SHA
}
