package hubtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hubsync/hubsync/internal/xet"
)

// FuzzCASUpload sends arbitrary xorb and shard bodies to the CAS handlers: the answer is 200 or a 4xx with a
// JSON error, never a 5xx or a panic, and a shard accepted only ever registers files whose LFS object is
// stored with the sha256 the shard names.
func FuzzCASUpload(f *testing.F) {
	s := NewTestServer(f, Options{Xet: true, Tokens: testTokens})
	e := &env{t: f, s: s, hc: noRedirectClient()}
	e.createRepo(aliceTok, "", "m", false)
	h, _ := s.store.repo(repoKey{Type: "model", NS: "alice", Name: "m"})
	tok, _ := s.issueCASToken(h.key, h.st.ID, "main", true)

	fx := newXetFixture(f, append(randomBytes(5, 90<<10), bytes.Repeat([]byte{7}, 20<<10)...))
	small := newXetFixture(f, []byte("a small file"))
	f.Add(true, fx.xorb.Serialize())
	f.Add(true, fx.xorb.SerializeWithFooter())
	f.Add(true, small.xorb.Serialize())
	f.Add(false, fx.shard.Marshal(false))
	f.Add(false, fx.shard.Marshal(true))
	f.Add(false, small.shard.Marshal(false))
	f.Add(false, []byte("HFRepoMetaData\x00"))
	f.Fuzz(func(t *testing.T, isXorb bool, body []byte) {
		path := "/v1/shards"
		if isXorb {
			// The hash in the path: the body's own (if it parses) or the fixture's.
			path = "/v1/xorbs/default/" + fx.xorb.Hash().String()
			if xo, err := parseXorbForFuzz(body); err == nil {
				path = "/v1/xorbs/default/" + xo
			}
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		s.serveCAS(w, req)
		switch {
		case w.Code == http.StatusOK:
		case w.Code >= 400 && w.Code < 500:
			if !bytes.Contains(w.Body.Bytes(), []byte(`"error"`)) {
				t.Fatalf("%d without a JSON error: %q", w.Code, w.Body.Bytes())
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
		if w.Code == http.StatusOK && !isXorb {
			s.xet.mu.RLock()
			files := make([]*xetFile, 0, len(s.xet.files))
			for _, xf := range s.xet.files {
				files = append(files, xf)
			}
			s.xet.mu.RUnlock()
			for _, xf := range files {
				if size, ok := s.store.objectSize(xf.SHA256); !ok || size != xf.Size {
					t.Fatalf("registered file %s: object %s stored %v with size %d, want %d", xf.Hash, xf.SHA256, ok, size, xf.Size)
				}
			}
		}
	})
}

// parseXorbForFuzz returns the hash of a body that parses as a xorb.
func parseXorbForFuzz(b []byte) (string, error) {
	xo, err := xet.ParseXorb(b)
	if err != nil {
		return "", err
	}
	return xo.Hash.String(), nil
}

func FuzzParseSingleRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=5-", "bytes=3-1", "bytes=-5", "bytes=0-9,20-30", "items=0-1", "bytes=99999999999999999999-"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size <= 0 {
			return
		}
		a, b, ok := parseSingleRange(h, size)
		if ok && (a < 0 || b < a || b >= size) {
			t.Fatalf("parseSingleRange(%q, %d) = %d, %d", h, size, a, b)
		}
	})
}
