package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// xetRepo creates repo on a devhub --xet, stores files through its CAS (hubtest.XetUpload) and commits them;
// it returns the client.
func xetRepo(t *testing.T, s *hubtest.Server, repo string, files map[string][]byte) *Client {
	t.Helper()
	ctx := context.Background()
	c, err := New(Options{Endpoint: s.URL(), Token: wTok, Retry: TestFastRetries()})
	if err != nil {
		t.Fatal(err)
	}
	newRepo(t, c, repo)
	req, _ := http.NewRequest("GET", s.URL()+"/api/models/"+repo+"/xet-write-token/main", nil)
	req.Header.Set("Authorization", "Bearer "+wTok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ AccessToken, CasUrl string }
	json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	dir := t.TempDir()
	for p, data := range files {
		if _, _, err := hubtest.XetUpload(ctx, nil, tok.CasUrl, tok.AccessToken, data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDownloadXet(t *testing.T) {
	s := newHubServer(t, func(o *hubtest.Options) { o.Xet = true })
	big := append(randomBytes(21, 1<<20), bytes.Repeat([]byte("0123456789abcdef"), 64<<10)...)
	files := map[string][]byte{"model.safetensors": big, "b.bin": randomBytes(22, 700<<10)}
	c := xetRepo(t, s, "w/x", files)
	ctx := context.Background()
	cases := []struct {
		name      string
		opts      DownloadOptions
		fault     *hubtest.FaultRule
		partial   int // bytes of model.safetensors already in blobs/<etag>.incomplete
		wantXet   int64
		wantPlain int64
	}{
		{name: "xet", wantXet: 2},
		{name: "HF_HUB_DISABLE_XET", opts: DownloadOptions{DisableXet: true}, wantPlain: 2},
		{name: "resume a partial blob through xet", partial: 300000, wantXet: 2},
		// Last: the rule stays armed.
		{name: "xorb fetch fails: plain fallback", fault: &hubtest.FaultRule{Op: hubtest.OpXetGet, Kind: hubtest.FaultStatus, Status: 500, Count: 1000}, wantXet: 2, wantPlain: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			tc.opts.CacheDir = cache
			if tc.partial > 0 {
				blobs := filepath.Join(RepoCacheDir(cache, "w/x"), "blobs")
				os.MkdirAll(blobs, 0o755)
				if err := os.WriteFile(filepath.Join(blobs, sha(big)+".incomplete"), big[:tc.partial], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.fault != nil {
				s.InjectFault(*tc.fault)
			}
			before := s.Stats()
			snap, err := c.Download(ctx, "w/x", "main", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for p, data := range files {
				got, err := os.ReadFile(filepath.Join(snap, p))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s: %d bytes, err %v", p, len(got), err)
				}
			}
			after := s.Stats()
			if n := after.Xet.Reconstructions - before.Xet.Reconstructions; n != tc.wantXet {
				t.Errorf("reconstructions %d, want %d", n, tc.wantXet)
			}
			if n := after.Requests[hubtest.OpStorageGet] - before.Requests[hubtest.OpStorageGet]; n != tc.wantPlain {
				t.Errorf("plain storage GETs %d, want %d", n, tc.wantPlain)
			}
			if after.TokenLeaks != 0 {
				t.Errorf("token leaks %d", after.TokenLeaks)
			}
		})
	}
}

func TestParseXetHeaders(t *testing.T) {
	const fh = "0000000000000000000000000000000000000000000000000000000000000001"
	cases := []struct {
		name       string
		hash, link string
		wantAuth   string
	}{
		{"both", fh, `<http://h/api/models/a/b/xet-read-token/main>; rel="xet-auth", <http://c/v1/reconstructions/x>; rel="xet-reconstruction-info"`, "http://h/api/models/a/b/xet-read-token/main"},
		{"no link", fh, "", ""},
		{"other rel", fh, `<http://h/x>; rel="next"`, ""},
		{"bad hash", "zz", `<http://h/t>; rel="xet-auth"`, ""},
		{"no hash", "", `<http://h/t>; rel="xet-auth"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.hash != "" {
				h.Set("X-Xet-Hash", tc.hash)
			}
			if tc.link != "" {
				h.Set("Link", tc.link)
			}
			ref := parseXetHeaders(h)
			switch {
			case tc.wantAuth == "" && ref != nil:
				t.Fatalf("got %+v, want nil", ref)
			case tc.wantAuth != "" && (ref == nil || ref.authURL != tc.wantAuth):
				t.Fatalf("got %+v, want auth %s", ref, tc.wantAuth)
			}
		})
	}
}

func FuzzParseXetHeaders(f *testing.F) {
	f.Add("0000000000000000000000000000000000000000000000000000000000000001", `<http://h/t>; rel="xet-auth", <http://c/r>; rel="xet-reconstruction-info"`)
	f.Add("zz", `<>; rel=xet-auth`)
	f.Add("", `<http://h/t>;rel="xet-auth"`)
	f.Fuzz(func(t *testing.T, hash, link string) {
		h := http.Header{"X-Xet-Hash": {hash}, "Link": {link}}
		if ref := parseXetHeaders(h); ref != nil && (ref.hash.String() == "" || !strings.Contains(link, ref.authURL)) {
			t.Fatalf("parseXetHeaders(%q, %q) = %+v", hash, link, ref)
		}
	})
}

// TestDownloadXetCorruptXorb: a xorb whose bytes changed on the CAS decodes to chunks that do not hash to the
// file hash; the download notices, drops what Xet wrote and gets the file over plain HTTP.
func TestDownloadXetCorruptXorb(t *testing.T) {
	s := newHubServer(t, func(o *hubtest.Options) { o.Xet = true })
	data := randomBytes(41, 600<<10)
	c := xetRepo(t, s, "w/c", map[string][]byte{"w.bin": data})
	var xorbs []string
	filepath.WalkDir(filepath.Join(s.DataDir(), "xet", "xorbs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".json") {
			xorbs = append(xorbs, p)
		}
		return nil
	})
	if len(xorbs) != 1 {
		t.Fatalf("xorbs on disk: %v", xorbs)
	}
	b, err := os.ReadFile(xorbs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55 // inside a chunk's bytes (random data is stored uncompressed)
	if err := os.WriteFile(xorbs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	snap, err := c.Download(context.Background(), "w/c", "main", DownloadOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(snap, "w.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("w.bin: %d bytes, %v", len(got), err)
	}
	after := s.Stats()
	if after.Xet.Reconstructions == before.Xet.Reconstructions || after.Requests[hubtest.OpStorageGet] == before.Requests[hubtest.OpStorageGet] {
		t.Fatalf("want a Xet attempt, then the plain path: reconstructions %d→%d, storage GETs %d→%d",
			before.Xet.Reconstructions, after.Xet.Reconstructions, before.Requests[hubtest.OpStorageGet], after.Requests[hubtest.OpStorageGet])
	}
}
