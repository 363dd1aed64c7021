package hubtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func xetOptions() Options {
	o := testOptions()
	o.Xet = true
	return o
}

// xetTokenAnswer is the JSON of the token routes.
type xetTokenAnswer struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CASURL      string `json:"casUrl"`
}

func (e *env) xetToken(token, repo, scope string) xetTokenAnswer {
	e.t.Helper()
	var a xetTokenAnswer
	e.api("GET", "/api/models/"+repo+"/xet-"+scope+"-token/main", token, nil, 200).json(e.t, &a)
	return a
}

func TestXetTokenRoutes(t *testing.T) {
	e := newEnv(t, xetOptions())
	e.createRepo(aliceTok, "", "m", false)
	e.createRepo(aliceTok, "", "p", true)
	cases := []struct {
		name, token, repo, scope, rev string
		want                          int
	}{
		{"write owner", aliceTok, "alice/m", "write", "main", 200},
		{"read public anonymous", "", "alice/m", "read", "main", 200},
		{"read public other user", bobTok, "alice/m", "read", "main", 200},
		{"write other user", bobTok, "alice/m", "write", "main", 403},
		{"write read-role token", readerTok, "alice/m", "write", "main", 403},
		{"write anonymous", "", "alice/m", "write", "main", 401},
		{"read private other user", bobTok, "alice/p", "read", "main", 404},
		{"read private owner", aliceTok, "alice/p", "read", "main", 200},
		{"read unknown revision", aliceTok, "alice/m", "read", "nope", 404},
		{"unknown repo", aliceTok, "alice/none", "read", "main", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("GET", "/api/models/"+tc.repo+"/xet-"+tc.scope+"-token/"+tc.rev, tc.token, nil)
			if r.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.want, r.body)
			}
			if tc.want != 200 {
				return
			}
			var a xetTokenAnswer
			r.json(t, &a)
			if a.AccessToken == "" || a.CASURL != e.s.CASURL() || a.Exp <= 0 {
				t.Fatalf("answer %+v (CAS %s)", a, e.s.CASURL())
			}
			if r.Header.Get("X-Xet-Access-Token") != a.AccessToken || r.Header.Get("X-Xet-Cas-Url") != a.CASURL ||
				r.Header.Get("X-Xet-Token-Expiration") != strconv.FormatInt(a.Exp, 10) {
				t.Fatalf("headers %v do not match %+v", r.Header, a)
			}
			if strings.Contains(a.AccessToken, aliceTok) || a.CASURL == e.s.URL() || a.CASURL == e.s.StorageURL() {
				t.Fatalf("the CAS must be its own host with its own tokens: %+v", a)
			}
		})
	}
	plain := newEnv(t, testOptions())
	plain.createRepo(aliceTok, "", "m", false)
	if r := plain.do("GET", "/api/models/alice/m/xet-write-token/main", aliceTok, nil); r.StatusCode != 404 {
		t.Fatalf("without Xet: status %d, want 404", r.StatusCode)
	}
}

func (e *env) xetBatch(token, repo string, transfers []string, objs ...any) batchAnswer {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"operation": "upload", "transfers": transfers, "objects": objs, "hash_algo": "sha256", "ref": map[string]string{"name": "refs/heads/main"}})
	r := e.do("POST", "/"+repo+".git/info/lfs/objects/batch", token, bytes.NewReader(b), "Content-Type", lfsMediaType)
	if r.StatusCode != 200 {
		e.t.Fatalf("batch: %d %s", r.StatusCode, r.body)
	}
	var a batchAnswer
	r.json(e.t, &a)
	return a
}

func TestXetBatchTransfer(t *testing.T) {
	e := newEnv(t, xetOptions())
	e.createRepo(aliceTok, "", "m", false)
	data := randomBytes(1, 1000)
	stored := e.upload(aliceTok, "alice/m", randomBytes(2, 500))
	cases := []struct {
		name      string
		transfers []string
		want      string
	}{
		{"xet offered", []string{"basic", "multipart", "xet"}, "xet"},
		{"xet not offered", []string{"basic", "multipart"}, "basic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.xetBatch(aliceTok, "alice/m", tc.transfers, obj(sha256hex(data), len(data)), obj(stored, 500))
			if a.Transfer != tc.want {
				t.Fatalf("transfer %q, want %q", a.Transfer, tc.want)
			}
			if len(a.Objects[1].Actions) != 0 {
				t.Fatalf("a stored object got actions: %+v", a.Objects[1])
			}
			up := a.Objects[0].Actions["upload"]
			if tc.want != "xet" {
				if strings.Contains(up.Href, "xet") || up.Header["X-Xet-Access-Token"] != "" {
					t.Fatalf("LFS answer with Xet action: %+v", up)
				}
				return
			}
			if up.Href != e.s.URL()+"/api/models/alice/m/xet-write-token/main" {
				t.Fatalf("href %s", up.Href)
			}
			for _, h := range []string{"X-Xet-Cas-Url", "X-Xet-Access-Token", "X-Xet-Token-Expiration", "X-Xet-Session-Id"} {
				if up.Header[h] == "" {
					t.Fatalf("upload action lacks %s: %+v", h, up.Header)
				}
			}
			// The token of the answer is a write token of the CAS.
			r := e.do("POST", up.Header["X-Xet-Cas-Url"]+"/v1/shards", up.Header["X-Xet-Access-Token"], strings.NewReader("x"))
			if r.StatusCode != http.StatusBadRequest {
				t.Fatalf("shard POST with the batch token: %d %s, want 400 (malformed)", r.StatusCode, r.body)
			}
		})
	}
}

func TestXetCASAuth(t *testing.T) {
	e := newEnv(t, xetOptions())
	e.createRepo(aliceTok, "", "m", false)
	w := e.xetToken(aliceTok, "alice/m", "write")
	rd := e.xetToken(aliceTok, "alice/m", "read")
	chunk := strings.Repeat("00", 32)
	cas := e.s.CASURL()
	cases := []struct {
		name, method, path, token string
		want                      int
		leak                      bool
	}{
		{"hub token to CAS", "GET", "/v1/chunks/default/" + chunk, aliceTok, 401, true},
		{"hub token to xorb upload", "POST", "/v1/xorbs/default/" + chunk, aliceTok, 401, true},
		{"no token", "GET", "/v1/chunks/default/" + chunk, "", 401, false},
		{"forged token", "GET", "/v1/chunks/default/" + chunk, "xet1.AAAA", 401, false},
		{"read token uploads", "POST", "/v1/xorbs/default/" + chunk, rd.AccessToken, 403, false},
		{"write token queries", "GET", "/v1/chunks/default/" + chunk, w.AccessToken, 404, false},
		{"merkledb prefix", "GET", "/v1/chunks/default-merkledb/" + chunk, rd.AccessToken, 404, false},
		{"unknown file", "GET", "/v1/reconstructions/" + chunk, rd.AccessToken, 404, false},
		{"unknown route", "GET", "/v1/nothing", rd.AccessToken, 404, false},
		{"unsigned xorb URL", "GET", "/_xet/xorb/" + chunk, "", 403, false},
		{"token on xorb URL", "GET", "/_xet/xorb/" + chunk, rd.AccessToken, 401, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.s.Stats().TokenLeaks
			r := e.do(tc.method, cas+tc.path, tc.token, strings.NewReader(""))
			if r.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.want, r.body)
			}
			var body struct{ Error string }
			if json.Unmarshal(r.body, &body) != nil || body.Error == "" {
				t.Fatalf("error body %q", r.body)
			}
			if leaked := e.s.Stats().TokenLeaks > before; leaked != tc.leak {
				t.Fatalf("leak counted %v, want %v", leaked, tc.leak)
			}
		})
	}
	// Expired tokens are refused; a fresh one works.
	e.s.InjectFault(FaultRule{Kind: FaultExpireURLs})
	if r := e.do("GET", cas+"/v1/chunks/default/"+chunk, w.AccessToken, nil); r.StatusCode != 401 || !strings.Contains(string(r.body), "expired") {
		t.Fatalf("expired token: %d %s", r.StatusCode, r.body)
	}
	w = e.xetToken(aliceTok, "alice/m", "write")
	if r := e.do("GET", cas+"/v1/chunks/default/"+chunk, w.AccessToken, nil); r.StatusCode != 404 {
		t.Fatalf("fresh token: %d %s", r.StatusCode, r.body)
	}
}
