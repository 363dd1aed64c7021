package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/xet"
)

// fakeXet is a Hub (batch and xet-write-token routes only) and a CAS on another origin. The CAS validates what
// it is sent like the real one: xorb hashes recomputed, shards whose terms name unknown xorbs or whose chunks do
// not rebuild the file's sha256 refused.
type fakeXet struct {
	t        *testing.T
	hub, cas *httptest.Server
	hubToken string
	transfer string // batch answer's transfer ("xet" default)
	headers  bool   // put the X-Xet-* headers on the upload action

	mu          sync.Mutex
	xorbs       map[xet.Hash]*xet.Xorb
	xorbPosts   map[xet.Hash]int
	xorbBytes   int64
	shards      [][]byte
	files       map[string][]byte // sha256 → reconstructed bytes
	casAuth     []string          // Authorization of every CAS request
	tokenCalls  int
	tokenSeq    int
	queries     int
	globalDedup bool
	fail        []func(w http.ResponseWriter, r *http.Request) bool // CAS faults, first that answers wins
	expired     map[string]bool                                     // CAS tokens the CAS refuses
	onXorb      func(n int)                                         // called after each stored xorb
	xorbLimit   int                                                 // the client's xorb size (0: default)
	down        bool                                                // the CAS answers 403 to everything
	light       bool                                                // count bytes only: no parsing, no checks
}

func newFakeXet(t *testing.T) *fakeXet {
	t.Helper()
	s := &fakeXet{t: t, hubToken: "hf_hubtoken", transfer: TransferXet, headers: true,
		xorbs: map[xet.Hash]*xet.Xorb{}, xorbPosts: map[xet.Hash]int{}, files: map[string][]byte{}, expired: map[string]bool{}}
	s.cas = httptest.NewServer(http.HandlerFunc(s.serveCAS))
	s.hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	t.Cleanup(s.hub.Close)
	t.Cleanup(s.cas.Close)
	return s
}

func (s *fakeXet) newToken() (string, int64) {
	s.tokenSeq++
	return fmt.Sprintf("cas-token-%d", s.tokenSeq), time.Now().Add(time.Hour).Unix()
}

func (s *fakeXet) serveHub(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.hubToken {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/info/lfs/objects/batch"):
		var req batchRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		offered := strings.Join(req.Transfers, ",")
		transfer := s.transfer
		if transfer == TransferXet && !strings.Contains(offered, TransferXet) {
			transfer = TransferBasic
		}
		s.mu.Lock()
		tok, exp := s.newToken()
		s.mu.Unlock()
		var objs []any
		for _, o := range req.Objects {
			s.mu.Lock()
			_, have := s.files[o.OID]
			s.mu.Unlock()
			obj := map[string]any{"oid": o.OID, "size": o.Size}
			if !have {
				h := map[string]string{}
				href := s.hub.URL + "/api/models/o/r/xet-write-token/main"
				if transfer != TransferXet {
					href = s.cas.URL + "/lfs/" + o.OID
				} else if s.headers {
					h = map[string]string{"X-Xet-Cas-Url": s.cas.URL, "X-Xet-Access-Token": tok,
						"X-Xet-Token-Expiration": fmt.Sprint(exp), "X-Xet-Session-Id": "sess"}
				}
				obj["actions"] = map[string]any{"upload": map[string]any{"href": href, "header": h}}
			}
			objs = append(objs, obj)
		}
		json.NewEncoder(w).Encode(map[string]any{"transfer": transfer, "objects": objs})
	case strings.Contains(r.URL.Path, "/xet-write-token/"):
		s.mu.Lock()
		s.tokenCalls++
		tok, exp := s.newToken()
		s.mu.Unlock()
		json.NewEncoder(w).Encode(xetTokenAnswer{AccessToken: tok, Exp: exp, CasURL: s.cas.URL})
	default:
		http.NotFound(w, r)
	}
}

func (s *fakeXet) serveCAS(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.casAuth = append(s.casAuth, r.Header.Get("Authorization"))
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !strings.HasPrefix(r.URL.Path, "/lfs/") && (!strings.HasPrefix(tok, "cas-token-") || s.expired[tok]) {
		s.mu.Unlock()
		http.Error(w, "token expired", http.StatusUnauthorized)
		return
	}
	if s.down {
		s.mu.Unlock()
		http.Error(w, "gone", http.StatusForbidden)
		return
	}
	for i, f := range s.fail {
		if f(w, r) {
			s.fail = append(s.fail[:i], s.fail[i+1:]...)
			s.mu.Unlock()
			return
		}
	}
	s.mu.Unlock()
	switch {
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/lfs/"):
		sum := sha256.Sum256(body)
		s.mu.Lock()
		s.files[hex.EncodeToString(sum[:])] = body
		s.mu.Unlock()
	case s.light && r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/v1/xorbs/default/"):
		s.mu.Lock()
		s.xorbBytes += int64(len(body))
		s.mu.Unlock()
		w.Write([]byte(`{"was_inserted":true}`))
	case s.light && r.Method == "POST" && r.URL.Path == "/v1/shards":
		s.mu.Lock()
		s.shards = append(s.shards, body)
		s.mu.Unlock()
		w.Write([]byte(`{"result":1}`))
	case r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/v1/xorbs/default/"):
		h, err := xet.ParseHash(strings.TrimPrefix(r.URL.Path, "/v1/xorbs/default/"))
		if err != nil {
			http.Error(w, "bad hash", 400)
			return
		}
		x, err := xet.ParseXorb(body)
		if err != nil || x.Hash != h {
			http.Error(w, fmt.Sprintf("bad xorb: %v", err), 400)
			return
		}
		s.mu.Lock()
		_, had := s.xorbs[h]
		s.xorbs[h] = x
		s.xorbPosts[h]++
		s.xorbBytes += int64(len(body))
		n := len(s.xorbs)
		cb := s.onXorb
		s.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]bool{"was_inserted": !had})
		if cb != nil {
			cb(n)
		}
	case r.Method == "POST" && r.URL.Path == "/v1/shards":
		sh, err := xet.ParseShard(body)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad shard: %v", err), 400)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, fi := range sh.Files {
			var data []byte
			for _, tm := range fi.Terms {
				x := s.xorbs[tm.Xorb]
				if x == nil || int(tm.ChunkEnd) > len(x.Chunks) || tm.ChunkStart >= tm.ChunkEnd {
					http.Error(w, "term names an unknown xorb or range", 400)
					return
				}
				var hs []xet.Hash
				for _, c := range x.Chunks[tm.ChunkStart:tm.ChunkEnd] {
					data = append(data, c.Data...)
					hs = append(hs, c.Ref.Hash)
				}
				if xet.VerificationHash(hs) != tm.Verification {
					http.Error(w, "verification hash mismatch", 400)
					return
				}
			}
			if xetSHA256Field(sha256.Sum256(data)) != fi.SHA256 || !fi.HasSHA256 {
				http.Error(w, "file does not rebuild its sha256", 400)
				return
			}
			s.files[xet.Hash(fi.SHA256).String()] = data
		}
		s.shards = append(s.shards, body)
		json.NewEncoder(w).Encode(map[string]int{"result": 1})
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/chunks/default/"):
		h, _ := xet.ParseHash(strings.TrimPrefix(r.URL.Path, "/v1/chunks/default/"))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.queries++
		if !s.globalDedup {
			http.NotFound(w, r)
			return
		}
		key := xet.ChunkHash([]byte("hmac key"))
		for _, x := range s.xorbs {
			for _, c := range x.Chunks {
				if c.Ref.Hash == h {
					ci := x.CASInfo()
					for i := range ci.Chunks {
						ci.Chunks[i].Hash = xet.HMAC(key, ci.Chunks[i].Hash)
					}
					sh := &xet.Shard{CAS: []xet.CASInfo{ci}, HMACKey: key}
					w.Write(sh.Marshal(true))
					return
				}
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

// upload sends content through batch + uploadOne with a fresh client (mode, cache dir, journal from mod).
func (s *fakeXet) upload(content []byte, mod func(*Options)) error {
	s.t.Helper()
	path := filepath.Join(s.t.TempDir(), "blob")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return s.uploadFile(&preparedFile{UploadFile: UploadFile{LocalPath: path}}, content, mod)
}

func (s *fakeXet) uploadFile(f *preparedFile, content []byte, mod func(*Options)) error {
	sum := sha256.Sum256(content)
	f.path, f.sha256, f.size = "blob", hex.EncodeToString(sum[:]), int64(len(content))
	c := newTestClient(s.t, s.hub.URL, s.hubToken, func(o *Options) {
		o.Xet = XetAuto
		if mod != nil {
			mod(o)
		}
	})
	if s.xorbLimit > 0 {
		c.xetXorbLimit = s.xorbLimit
	}
	ctx := context.Background()
	plans, err := c.batchUpload(ctx, "o/r", "main", false, []batchItem{{OID: f.sha256, Size: f.size}})
	if err != nil {
		return err
	}
	if plans[f.sha256].kind == transferNone {
		return nil
	}
	return c.uploadOne(ctx, "o/r", "main", false, f, plans[f.sha256], nil, newProgressSink(nil))
}

func (s *fakeXet) check(content []byte) {
	s.t.Helper()
	sum := sha256.Sum256(content)
	s.mu.Lock()
	defer s.mu.Unlock()
	if got, ok := s.files[hex.EncodeToString(sum[:])]; !ok || !bytes.Equal(got, content) {
		s.t.Errorf("the CAS does not rebuild the file (stored %v)", ok)
	}
	for _, a := range s.casAuth {
		if strings.Contains(a, s.hubToken) {
			s.t.Errorf("the Hub token was sent to the CAS: %q", a)
		}
	}
}

func xetRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestXetUpload: a file goes to the CAS as xorbs and one shard that rebuilds it; the CAS sees only CAS tokens.
func TestXetUpload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers bool // token in the batch answer (else fetched from xet-write-token)
		content []byte
	}{
		{"token in the batch answer", true, xetRandom(1, 3<<20)},
		{"token from the token route", false, xetRandom(2, 300<<10)},
		{"small file, one chunk", true, []byte("hello xet")},
		{"repeated content dedupes within the file", true, bytes.Repeat(xetRandom(3, 256<<10), 6)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeXet(t)
			s.headers = tc.headers
			if err := s.upload(tc.content, nil); err != nil {
				t.Fatal(err)
			}
			s.check(tc.content)
			if len(s.shards) != 1 {
				t.Errorf("%d shards", len(s.shards))
			}
			if !tc.headers && s.tokenCalls != 1 {
				t.Errorf("%d token calls, want 1", s.tokenCalls)
			}
			if tc.name == "repeated content dedupes within the file" && s.xorbBytes > int64(len(tc.content))/2 {
				t.Errorf("sent %d xorb bytes for %d bytes of 6x repeated content", s.xorbBytes, len(tc.content))
			}
		})
	}
}

// TestXetUploadContentFunc: a file given by its ContentFunc (no disk) uploads the same way, and content that
// does not match its sha256 is refused before the shard is sent.
func TestXetUploadContentFunc(t *testing.T) {
	t.Parallel()
	content := xetRandom(4, 1<<20)
	s := newFakeXet(t)
	f := &preparedFile{UploadFile: UploadFile{LocalPath: "generated", Content: func(_ context.Context, off, n int64, w io.Writer) error {
		_, err := w.Write(content[off : off+n])
		return err
	}}}
	if err := s.uploadFile(f, content, nil); err != nil {
		t.Fatal(err)
	}
	s.check(content)

	s2 := newFakeXet(t)
	bad := &preparedFile{UploadFile: UploadFile{LocalPath: "generated", Content: func(_ context.Context, off, n int64, w io.Writer) error {
		b := bytes.Clone(content[off : off+n])
		b[0] ^= 1
		_, err := w.Write(b)
		return err
	}}}
	if err := s2.uploadFile(bad, content, nil); !errors.Is(err, ErrContentChanged) {
		t.Errorf("changed content: %v", err)
	}
	if len(s2.shards) != 0 {
		t.Error("a shard was sent for content that does not match its sha256")
	}
}

// TestXetFaults: 5xx, connection resets and an expired CAS token are retried; the upload ends complete.
func TestXetFaults(t *testing.T) {
	t.Parallel()
	content := xetRandom(5, 2<<20)
	onXorbPost := func(r *http.Request) bool {
		return r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/v1/xorbs/")
	}
	tests := []struct {
		name  string
		setup func(s *fakeXet)
	}{
		{"503 on a xorb", func(s *fakeXet) {
			s.fail = append(s.fail, func(w http.ResponseWriter, r *http.Request) bool {
				if onXorbPost(r) {
					http.Error(w, "busy", 503)
					return true
				}
				return false
			})
		}},
		{"reset on the shard", func(s *fakeXet) {
			s.fail = append(s.fail, func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v1/shards" {
					return false
				}
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			})
		}},
		{"expired CAS token", func(s *fakeXet) {
			s.expired["cas-token-1"] = true // the token of the batch answer
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeXet(t)
			tc.setup(s)
			if err := s.upload(content, nil); err != nil {
				t.Fatal(err)
			}
			s.check(content)
			if len(s.fail) != 0 {
				t.Errorf("%d faults never fired", len(s.fail))
			}
			if tc.name == "expired CAS token" && s.tokenCalls != 1 {
				t.Errorf("token refreshed %d times, want 1", s.tokenCalls)
			}
		})
	}
}

// TestXetTokenRefreshBeforeExpiry: a batch token about to expire is replaced through href before use.
func TestXetTokenRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	s := newFakeXet(t)
	c := newTestClient(t, s.hub.URL, s.hubToken, nil)
	x := c.newXetTokens(s.hub.URL+"/api/models/o/r/xet-write-token/main", map[string]string{
		"X-Xet-Cas-Url": s.cas.URL, "X-Xet-Access-Token": "cas-token-old",
		"X-Xet-Token-Expiration": fmt.Sprint(time.Now().Add(5 * time.Second).Unix())})
	tok, err := x.get(context.Background())
	if err != nil || tok.token == "cas-token-old" || s.tokenCalls != 1 || tok.casURL != s.cas.URL {
		t.Errorf("token %+v, %v, %d refreshes", tok, err, s.tokenCalls)
	}
	if tok2, _ := x.get(context.Background()); tok2 != tok || s.tokenCalls != 1 {
		t.Errorf("a fresh token was refreshed again")
	}
}

// TestXetModeSelection: off offers no xet and uses LFS; auto falls back to LFS when the Hub answers basic;
// on fails clearly then.
func TestXetModeSelection(t *testing.T) {
	t.Parallel()
	content := xetRandom(6, 100<<10)
	tests := []struct {
		mode      XetMode
		transfer  string
		wantXet   bool
		wantError error
	}{
		{XetOff, TransferXet, false, nil}, // not offered: the fake answers basic
		{XetAuto, TransferXet, true, nil},
		{XetAuto, TransferBasic, false, nil},
		{XetOn, TransferXet, true, nil},
		{XetOn, TransferBasic, false, ErrXetNotOffered},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String()+"/"+tc.transfer, func(t *testing.T) {
			t.Parallel()
			s := newFakeXet(t)
			s.transfer = tc.transfer
			err := s.upload(content, func(o *Options) { o.Xet = tc.mode })
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("error %v, want %v", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.check(content)
			if got := len(s.shards) == 1; got != tc.wantXet {
				t.Errorf("used xet %v, want %v", got, tc.wantXet)
			}
		})
	}
}

// TestXetShardCacheDedup: the second checkpoint dedupes against the first through the on-disk shard cache,
// without asking the CAS; a fresh cache falls back to the global dedup query.
func TestXetShardCacheDedup(t *testing.T) {
	t.Parallel()
	v1 := xetRandom(7, 4<<20)
	v2 := bytes.Clone(v1)
	copy(v2[1<<20:], xetRandom(8, 256<<10)) // one changed region
	s := newFakeXet(t)
	cache := t.TempDir()
	withCache := func(o *Options) { o.XetCacheDir = cache }
	if err := s.upload(v1, withCache); err != nil {
		t.Fatal(err)
	}
	first := s.xorbBytes
	if err := s.upload(v2, withCache); err != nil {
		t.Fatal(err)
	}
	s.check(v2)
	second := s.xorbBytes - first
	t.Logf("first %d xorb bytes, second checkpoint %d (%.1f%% of the file)", first, second, 100*float64(second)/float64(len(v2)))
	if second > int64(len(v2))/3 {
		t.Errorf("second checkpoint sent %d xorb bytes of %d", second, len(v2))
	}

	// No cache: the global dedup query finds the first version's xorb.
	s2 := newFakeXet(t)
	s2.globalDedup = true
	if err := s2.upload(v1, nil); err != nil {
		t.Fatal(err)
	}
	first2 := s2.xorbBytes
	if err := s2.upload(v2, nil); err != nil {
		t.Fatal(err)
	}
	s2.check(v2)
	if s2.queries == 0 {
		t.Error("no global dedup query")
	}
	t.Logf("global dedup: second checkpoint %d xorb bytes after %d queries", s2.xorbBytes-first2, s2.queries)
	if s2.xorbBytes-first2 >= int64(len(v2)) {
		t.Errorf("global dedup saved nothing: %d xorb bytes", s2.xorbBytes-first2)
	}
}

// TestXetRestartResendsNoAcknowledgedXorb: an upload that dies after some xorbs were acknowledged resumes in a
// new client with the same journal and sends none of them again; the file ends complete.
func TestXetRestartResendsNoAcknowledgedXorb(t *testing.T) {
	t.Parallel()
	content := xetRandom(9, 3<<20)
	s := newFakeXet(t)
	s.xorbLimit = 256 << 10 // about 12 xorbs
	j, err := OpenBoltJournal(filepath.Join(t.TempDir(), "uploads.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	withJournal := func(o *Options) { o.Journal = j; o.ParallelParts = 1 }
	// After 4 xorbs the CAS refuses everything (a non-retryable answer: the process "dies" here).
	s.onXorb = func(n int) {
		if n == 4 {
			s.mu.Lock()
			s.down = true
			s.mu.Unlock()
		}
	}
	if err := s.upload(content, withJournal); err == nil {
		t.Fatal("the first run succeeded despite the CAS failing")
	}
	s.mu.Lock()
	s.down, s.onXorb = false, nil
	atKill := len(s.xorbs)
	s.mu.Unlock()
	key := newTestClient(t, s.hub.URL, "", nil).journalKey("o/r", hex.EncodeToString(sha256Of(content))) + " xet"
	rec, err := j.Get(context.Background(), key)
	if err != nil || rec == nil || len(rec.ETags) == 0 {
		t.Fatalf("no acknowledged xorb journaled: %+v %v", rec, err)
	}
	if err := s.upload(content, withJournal); err != nil {
		t.Fatal(err)
	}
	s.check(content)
	for _, h := range rec.ETags {
		xh, err := xet.ParseHash(h)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.xorbPosts[xh]; n != 1 {
			t.Errorf("acknowledged xorb %s sent %d times", h, n)
		}
	}
	if len(s.xorbs) <= atKill {
		t.Errorf("%d xorbs in all, %d at the failure", len(s.xorbs), atKill)
	}
	t.Logf("%d xorbs stored at the failure, %d journaled as acknowledged, %d in all", atKill, len(rec.ETags), len(s.xorbs))
	if rec, err := j.Get(context.Background(), key); err != nil || rec != nil {
		t.Errorf("journal record left after completion: %+v %v", rec, err)
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// FuzzXetTokenAnswer: the token answer and the batch action's X-Xet-* headers never panic, and what is accepted
// has a token without line breaks and an absolute http(s) CAS URL.
func FuzzXetTokenAnswer(f *testing.F) {
	f.Add([]byte(`{"accessToken":"t","exp":1900000000,"casUrl":"https://cas.example/"}`), "https://cas.example", "t", "1900000000")
	f.Add([]byte(`{"accessToken":"","exp":-1,"casUrl":"ftp://x"}`), "", "", "x")
	f.Add([]byte(`[]`), "http://[::1]:1", "a\nb", "1e9")
	f.Fuzz(func(t *testing.T, body []byte, cas, tok, exp string) {
		if got, err := parseXetTokenAnswer(body); err == nil {
			if got.token == "" || strings.ContainsAny(got.token, "\r\n") || checkHTTPURL(got.casURL) != nil {
				t.Errorf("accepted %+v", got)
			}
		}
		c, err := New(Options{Endpoint: "http://hub.test"})
		if err != nil {
			t.Fatal(err)
		}
		x := c.newXetTokens("http://hub.test/t", map[string]string{"X-Xet-Cas-Url": cas, "x-xet-access-token": tok, "X-Xet-Token-Expiration": exp})
		if x.cur.token != "" && (checkHTTPURL(x.cur.casURL) != nil || strings.ContainsAny(x.cur.token, "\r\n")) {
			t.Errorf("accepted headers %+v", x.cur)
		}
	})
}

// TestXetShardCacheLoad: damaged cached shards are skipped, and beyond the newest xetCacheMaxShards the oldest
// are removed.
func TestXetShardCacheLoad(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "http://hub.test", "", func(o *Options) { o.XetCacheDir = t.TempDir() })
	s := newXetSession(c)
	dir := s.shardCacheDir("http://cas.test")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for i := range xetCacheMaxShards + 2 {
		p := filepath.Join(dir, fmt.Sprintf("%04d.shard", i))
		if err := os.WriteFile(p, []byte("not a shard"), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := old.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	s.loadCache("http://cas.test")
	ents, _ := os.ReadDir(dir)
	if len(ents) != xetCacheMaxShards {
		t.Errorf("%d cached shards left, want %d", len(ents), xetCacheMaxShards)
	}
	for _, e := range ents {
		if e.Name() == "0000.shard" || e.Name() == "0001.shard" {
			t.Errorf("the oldest shard %s was kept", e.Name())
		}
	}
	if len(s.known) != 0 {
		t.Errorf("learned %d chunks from damaged shards", len(s.known))
	}
}

// TestXetAutoFallsBackToLFS: with --xet auto, an object the CAS refuses goes through LFS instead; with on the
// upload fails.
func TestXetAutoFallsBackToLFS(t *testing.T) {
	t.Parallel()
	content := xetRandom(12, 200<<10)
	for _, mode := range []XetMode{XetAuto, XetOn} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			s := newFakeXet(t)
			s.fail = append(s.fail, func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasPrefix(r.URL.Path, "/v1/xorbs/") {
					http.Error(w, "xorb format not accepted", http.StatusBadRequest)
					return true
				}
				return false
			})
			err := s.upload(content, func(o *Options) { o.Xet = mode })
			if mode == XetOn {
				if err == nil || !errors.Is(err, ErrStorage) {
					t.Fatalf("on: %v, want the CAS's refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.check(content)
			if len(s.shards) != 0 {
				t.Error("a shard was accepted")
			}
		})
	}
}

// TestXetCASOnHubOrigin: a CAS on the Hub's own origin still gets only the CAS token, never the Hub token.
func TestXetCASOnHubOrigin(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte(`{"result":1}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "hf_hubtoken", nil)
	x := c.newXetTokens(srv.URL+"/api/models/o/r/xet-write-token/main", map[string]string{"X-Xet-Cas-Url": srv.URL + "/cas",
		"X-Xet-Access-Token": "cas-tok", "X-Xet-Token-Expiration": fmt.Sprint(time.Now().Add(time.Hour).Unix())})
	if err := c.putShard(context.Background(), x, []byte("shard"), &attemptBudget{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) != 1 || auth[0] != "Bearer cas-tok" {
		t.Errorf("Authorization sent: %q", auth)
	}
	// The Hub token offered as a CAS token is refused before any request.
	y := c.newXetTokens(srv.URL+"/t", map[string]string{"X-Xet-Cas-Url": srv.URL, "X-Xet-Access-Token": "hf_hubtoken",
		"X-Xet-Token-Expiration": fmt.Sprint(time.Now().Add(time.Hour).Unix())})
	if err := c.putShard(context.Background(), y, []byte("shard"), &attemptBudget{}); err == nil {
		t.Error("the Hub token was accepted as a CAS token")
	}
	if len(auth) != 1 {
		t.Errorf("%d requests", len(auth))
	}
}
