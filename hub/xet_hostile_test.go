package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/internal/xet"
)

// TestXetFetchHostileReconstruction: a CAS whose reconstruction answer lists two fetch entries for the same
// URL and byte range but different chunk ranges (so a term would slice the first entry's chunks past their
// end) gets an error, not a panic; so do other inconsistent answers. Each case must end in an error.
// hostileXorb is a xorb of 6 uncompressed random 100-byte chunks, and the file made of them.
type hostileXorb struct {
	data     []byte
	hash     string
	fileHash xet.Hash
}

const hostileChunks, hostileChunkLen = 6, 100

func newHostileXorb(t testing.TB) hostileXorb {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	b := xet.NewXorbBuilder()
	for range hostileChunks {
		data := make([]byte, hostileChunkLen)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		if _, err := b.AddChunk(data); err != nil {
			t.Fatal(err)
		}
	}
	x := hostileXorb{data: b.Serialize(), hash: b.Hash().String(), fileHash: xet.FileHash(b.Chunks())}
	if len(x.data) != hostileChunks*(hostileChunkLen+8) {
		t.Fatalf("xorb of %d bytes: the test assumes uncompressed chunks", len(x.data))
	}
	return x
}

// hostileCAS serves a read token (/token), the reconstruction answer recon() with {CAS} replaced by its URL,
// and the xorb's byte ranges (/xorb).
func hostileCAS(t testing.TB, x hostileXorb, recon func() string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case req.URL.Path == "/token":
			json.NewEncoder(w).Encode(map[string]any{"accessToken": "cas-token", "exp": time.Now().Add(time.Hour).Unix(), "casUrl": srv.URL})
		case strings.HasPrefix(req.URL.Path, "/v1/reconstructions/"):
			io.WriteString(w, strings.ReplaceAll(recon(), "{CAS}", srv.URL))
		case req.URL.Path == "/xorb":
			var a, z int
			if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &a, &z); err != nil || a > z || a >= len(x.data) {
				http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			z = min(z, len(x.data)-1)
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(a)+"-"+strconv.Itoa(z)+"/"+strconv.Itoa(len(x.data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(x.data[a : z+1])
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// hostileRecon renders a reconstruction answer: terms (chunk range, unpacked length) of the xorb and its fetch
// entries (chunk range, byte range end inclusive), all at {CAS}/xorb.
func hostileRecon(x hostileXorb, terms [][3]int, entries [][4]int) string {
	var rec struct {
		Terms     []map[string]any            `json:"terms"`
		FetchInfo map[string][]map[string]any `json:"fetch_info"`
	}
	for _, tm := range terms {
		rec.Terms = append(rec.Terms, map[string]any{"hash": x.hash, "unpacked_length": tm[2],
			"range": map[string]int{"start": tm[0], "end": tm[1]}})
	}
	rec.FetchInfo = map[string][]map[string]any{}
	for _, e := range entries {
		rec.FetchInfo[x.hash] = append(rec.FetchInfo[x.hash], map[string]any{"url": "{CAS}/xorb",
			"range": map[string]int{"start": e[0], "end": e[1]}, "url_range": map[string]int{"start": e[2], "end": e[3]}})
	}
	b, _ := json.Marshal(rec)
	return string(b)
}

// hostileEnd is the url_range end (inclusive) after n chunks.
func hostileEnd(n int) int { return n*(hostileChunkLen+8) - 1 }

// TestXetFetchHostileReconstruction: a CAS whose reconstruction answer lists two fetch entries for the same
// URL and byte range but different chunk ranges (so a term would slice the first entry's chunks past their
// end) gets an error, not a panic; so do other inconsistent answers. A consistent answer gives the file.
func TestXetFetchHostileReconstruction(t *testing.T) {
	x := newHostileXorb(t)
	const size = hostileChunks * hostileChunkLen
	cases := []struct {
		name    string
		terms   [][3]int
		entries [][4]int
		ok      bool
	}{
		{"consistent", [][3]int{{0, 2, 200}, {2, 6, 400}}, [][4]int{{0, 6, 0, hostileEnd(6)}}, true},
		{"one byte range under two chunk ranges", [][3]int{{0, 2, 200}, {2, 6, 400}},
			[][4]int{{0, 2, 0, hostileEnd(2)}, {0, 6, 0, hostileEnd(2)}}, false},
		{"an entry claiming more chunks than its bytes hold", [][3]int{{0, 6, size}}, [][4]int{{0, 6, 0, hostileEnd(3)}}, false},
		{"a term length that is not the chunks'", [][3]int{{0, 6, size - 100}}, [][4]int{{0, 6, 0, hostileEnd(6)}}, false},
		{"url_range past the xorb", [][3]int{{0, 6, size}}, [][4]int{{0, 6, 0, hostileEnd(6) + 500}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := hostileCAS(t, x, func() string { return hostileRecon(x, tc.terms, tc.entries) })
			c := newTestClient(t, srv.URL, "hf_hostile_test", nil)
			var out strings.Builder
			n, err := c.xetFetch(context.Background(), &xetFileRef{hash: x.fileHash, authURL: srv.URL + "/token"}, 0, size, &out)
			if tc.ok != (err == nil) || tc.ok && n != size {
				t.Fatalf("%d bytes, error %v; want ok=%v", n, err, tc.ok)
			}
			t.Logf("%d bytes, %v", n, err)
		})
	}
}

// FuzzXetReconstruction: whatever reconstruction answer the CAS gives, xetFetch never panics, and when it
// succeeds it wrote exactly the file (the Xet file hash is checked).
func FuzzXetReconstruction(f *testing.F) {
	x := newHostileXorb(f)
	f.Add(hostileRecon(x, [][3]int{{0, 2, 200}, {2, 6, 400}}, [][4]int{{0, 6, 0, hostileEnd(6)}}))
	f.Add(hostileRecon(x, [][3]int{{0, 2, 200}, {2, 6, 400}}, [][4]int{{0, 2, 0, hostileEnd(2)}, {0, 6, 0, hostileEnd(2)}}))
	f.Add(hostileRecon(x, [][3]int{{1, 3, 200}, {0, 6, 600}}, [][4]int{{0, 6, 0, hostileEnd(6)}}))
	f.Add(`{"offset_into_first_range": 99999, "terms": [], "fetch_info": {}}`)
	var mu sync.Mutex
	var body string
	srv := hostileCAS(f, x, func() string { mu.Lock(); defer mu.Unlock(); return body })
	// Whatever host a mutated answer names, every connection goes to the test server: no other network.
	addr := srv.Listener.Addr().String()
	rt := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	f.Cleanup(rt.CloseIdleConnections)
	c, err := New(Options{Endpoint: srv.URL, Token: "hf_hostile_test", Retry: RetryPolicy{MaxAttempts: 1},
		HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(c.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, recon string) {
		mu.Lock()
		body = recon
		mu.Unlock()
		var out strings.Builder
		n, err := c.xetFetch(context.Background(), &xetFileRef{hash: x.fileHash, authURL: srv.URL + "/token"}, 0,
			hostileChunks*hostileChunkLen, &out)
		if err == nil && (n != hostileChunks*hostileChunkLen || int64(out.Len()) != n) {
			t.Fatalf("success with %d bytes (%d written)", n, out.Len())
		}
	})
}
