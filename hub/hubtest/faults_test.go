package hubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// try sends a request and returns the transport error instead of failing.
func (e *env) try(method, url string, body io.Reader, hdr ...string) (int, error) {
	if strings.HasPrefix(url, "/") {
		url = e.s.URL() + url
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, err = io.ReadAll(res.Body)
	return res.StatusCode, err
}

func TestFaultRules(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(90, 5*(64<<10))
	chunk := 64 << 10
	oid, href, hdr := e.multipartFixture(data)
	part := func(n int) []byte { return data[(n-1)*chunk : n*chunk] }

	// Next 2 part PUTs fail with 500, without storing.
	e.s.InjectFault(FaultRule{Op: OpPartPut, Count: 2, Status: 500})
	for i, want := range []int{500, 500, 200} {
		if r := e.do("PUT", hdr["00001"], "", bytes.NewReader(part(1))); r.StatusCode != want {
			t.Errorf("PUT %d: %d, want %d", i, r.StatusCode, want)
		}
	}
	st := e.s.Stats()
	if st.Parts[partKey(oid, 1)] != 3 || st.PartsStored[partKey(oid, 1)] != 1 || st.Faults["rule:storage_part:status"] != 2 {
		t.Errorf("stats after 5xx: parts %v stored %v faults %v", st.Parts, st.PartsStored, st.Faults)
	}

	// Reset the connection after 1000 bytes of part 3 of this object.
	e.s.InjectFault(FaultRule{Op: OpPartPut, Kind: FaultReset, OID: oid, Part: 3, AfterBytes: 1000})
	if r := e.do("PUT", hdr["00002"], "", bytes.NewReader(part(2))); r.StatusCode != 200 {
		t.Errorf("part 2: %d", r.StatusCode)
	}
	before := e.s.Stats().Objects[oid]
	if code, err := e.try("PUT", hdr["00003"], bytes.NewReader(part(3))); err == nil {
		t.Errorf("part 3 with a reset: status %d, want a connection error", code)
	}
	if got := e.s.Stats().Objects[oid] - before; got != 1000 {
		t.Errorf("bytes counted for the cut attempt: %d, want 1000", got)
	}
	if e.s.PendingFaults() != 0 {
		t.Errorf("%d rules left", e.s.PendingFaults())
	}
	parts := e.putParts(data, hdr)
	if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Fatalf("complete: %d", r.StatusCode)
	}

	// Next commit applies but its response is lost (connection cut), then one answered 504.
	for _, status := range []int{0, 504} {
		head := e.head(aliceTok, "alice/m", "main")
		e.s.InjectFault(FaultRule{Op: OpCommit, Kind: FaultLoseResponse, Status: status})
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"key":"header","value":{"summary":"lost %d","parentCommit":"%s"}}`, status, head)
		code, err := e.try("POST", "/api/models/alice/m/commit/main", &b, "Authorization", "Bearer "+aliceTok)
		if status == 0 && err == nil {
			t.Errorf("lost commit answered %d", code)
		}
		if status != 0 && code != status {
			t.Errorf("lost commit: %d %v, want %d", code, err, status)
		}
		var commits []map[string]any
		e.api("GET", "/api/models/alice/m/commits/main", aliceTok, nil, 200).json(t, &commits)
		if commits[0]["title"] != fmt.Sprintf("lost %d", status) {
			t.Errorf("the commit with a lost answer was not applied: %v", commits[0])
		}
	}

	// A commit refused by an injected 503 is not applied.
	head := e.head(aliceTok, "alice/m", "main")
	e.s.InjectFault(FaultRule{Op: OpCommit, Status: 503})
	if r := e.commitLines(aliceTok, "alice/m", "main", "", header("refused", "")); r.StatusCode != 503 {
		t.Errorf("commit with an injected 503: %d", r.StatusCode)
	}
	if e.head(aliceTok, "alice/m", "main") != head {
		t.Error("a refused commit moved the branch")
	}

	// The batch answer carries an error for one object only.
	x, y := sha256hex([]byte("x")), sha256hex([]byte("y"))
	e.s.InjectFault(FaultRule{Op: OpBatch, Kind: FaultBatchError, OID: x, Status: 404, Message: "gone"})
	a := e.batch(aliceTok, "alice/m", "upload", obj(x, 1), obj(y, 1))
	if a.Objects[0].Error == nil || a.Objects[0].Error.Code != 404 || a.Objects[0].Error.Message != "gone" || a.Objects[1].Error != nil {
		t.Errorf("batch error rule: %+v", a.Objects)
	}

	// A rate-limit rule answers 429 with Retry-After and RateLimit.
	e.s.InjectFault(FaultRule{Op: OpWhoami, Kind: FaultRateLimit})
	r := e.do("GET", "/api/whoami-v2", aliceTok, nil)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" || r.Header.Get("RateLimit") != `"api";r=0;t=1` {
		t.Errorf("rate-limit rule: %d %v", r.StatusCode, r.Header)
	}
	if r := e.do("GET", "/api/whoami-v2", aliceTok, nil); r.StatusCode != 200 {
		t.Errorf("after the rule: %d", r.StatusCode)
	}
	// A failing completion.
	d2 := randomBytes(91, 300<<10)
	oid2, href2, hdr2 := e.multipartFixture(d2)
	parts2 := e.putParts(d2, hdr2)
	e.s.InjectFault(FaultRule{Op: OpComplete, Status: 500})
	if r := e.do("POST", href2, "", completeBody(oid2, parts2), "Content-Type", lfsMediaType); r.StatusCode != 500 {
		t.Errorf("completion rule: %d", r.StatusCode)
	}
	if r := e.do("POST", href2, "", completeBody(oid2, parts2), "Content-Type", lfsMediaType); r.StatusCode != 200 {
		t.Errorf("completion after the rule: %d", r.StatusCode)
	}
}

func TestProbabilisticFaults(t *testing.T) {
	tests := []struct {
		name  string
		f     Faults
		check func(t *testing.T, e *env)
	}{
		{"part-5xx", Faults{PartError: 1}, func(t *testing.T, e *env) {
			data := randomBytes(1, 300<<10)
			_, _, hdr := e.multipartFixture(data)
			r := e.do("PUT", hdr["00001"], "", bytes.NewReader(data[:64<<10]))
			if r.StatusCode != 500 && r.StatusCode != 503 {
				t.Errorf("part PUT: %d", r.StatusCode)
			}
			if e.s.Stats().Faults["part-5xx"] != 1 {
				t.Errorf("faults %v", e.s.Stats().Faults)
			}
		}},
		{"part-reset", Faults{PartReset: 1}, func(t *testing.T, e *env) {
			data := randomBytes(2, 300<<10)
			_, _, hdr := e.multipartFixture(data)
			if code, err := e.try("PUT", hdr["00001"], bytes.NewReader(data[:64<<10])); err == nil {
				t.Errorf("part PUT answered %d", code)
			}
		}},
		{"put-5xx", Faults{PutError: 1}, func(t *testing.T, e *env) {
			a := e.batch(aliceTok, "alice/m", "upload", obj(sha256hex([]byte("a")), 1))
			if r := e.do("PUT", a.Objects[0].Actions["upload"].Href, "", strings.NewReader("a")); r.StatusCode < 500 {
				t.Errorf("basic PUT: %d", r.StatusCode)
			}
		}},
		{"rate-limit", Faults{RateLimit: 1}, func(t *testing.T, e *env) {
			for _, p := range []string{"/api/whoami-v2", "/api/models/alice/m", "/alice/m/resolve/main/.gitattributes"} {
				r := e.do("GET", p, aliceTok, nil)
				if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" || !strings.Contains(r.Header.Get("RateLimit"), ";r=0;t=1") {
					t.Errorf("%s: %d %v", p, r.StatusCode, r.Header)
				}
			}
			if r := e.do("GET", "/_devhub/stats", "", nil); r.StatusCode != 200 {
				t.Errorf("stats are not rate limited: %d", r.StatusCode)
			}
		}},
		{"commit-lost", Faults{CommitLost: 1, Seed: 7}, func(t *testing.T, e *env) {
			for i := range 4 {
				var b bytes.Buffer
				fmt.Fprintf(&b, `{"key":"header","value":{"summary":"c%d"}}`, i)
				code, err := e.try("POST", "/api/models/alice/m/commit/main", &b, "Authorization", "Bearer "+aliceTok)
				if err == nil && code != 504 {
					t.Errorf("commit-lost answered %d", code)
				}
			}
			if got := e.s.Stats().Commits; got != 4 {
				t.Errorf("%d commits applied, want 4", got)
			}
		}},
		{"batch-error", Faults{BatchError: 1}, func(t *testing.T, e *env) {
			a := e.batch(aliceTok, "alice/m", "upload", obj(sha256hex([]byte("b")), 1))
			if a.Objects[0].Error == nil {
				t.Errorf("%+v", a.Objects[0])
			}
		}},
		{"complete-5xx", Faults{CompleteError: 1}, func(t *testing.T, e *env) {
			data := randomBytes(3, 300<<10)
			oid, href, hdr := e.multipartFixture(data)
			parts := e.putParts(data, hdr)
			if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 500 {
				t.Errorf("completion: %d", r.StatusCode)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			e := newEnv(t, opts)
			e.createRepo(aliceTok, "alice", "m", false)
			// Faults are read from the options at start; switch them on after the setup.
			e.s.SetFaults(tt.f)
			tt.check(t, e)
		})
	}
}

func TestFaultsAreSeeded(t *testing.T) {
	run := func() []int {
		opts := testOptions()
		e := newEnv(t, opts)
		e.createRepo(aliceTok, "alice", "m", false)
		e.s.SetFaults(Faults{PartError: 0.5, Seed: 42})
		data := randomBytes(4, 300<<10)
		_, _, hdr := e.multipartFixture(data)
		var codes []int
		for range 16 {
			codes = append(codes, e.do("PUT", hdr["00001"], "", bytes.NewReader(data[:64<<10])).StatusCode)
		}
		return codes
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	ok := 0
	for _, c := range a {
		if c == 200 {
			ok++
		}
	}
	if ok == 0 || ok == len(a) {
		t.Errorf("p=0.5 gave %d successes of %d", ok, len(a))
	}
}

func TestRateLimitQuota(t *testing.T) {
	opts := testOptions()
	opts.RateLimitQuota = 3
	e := newEnv(t, opts)
	for i := range 3 {
		r := e.do("GET", "/api/whoami-v2", aliceTok, nil)
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("RateLimit"), fmt.Sprintf(`"api";r=%d;t=`, 2-i)) ||
			r.Header.Get("RateLimit-Policy") != `"fixed window";"api";q=3;w=300` {
			t.Errorf("request %d: %d %q %q", i, r.StatusCode, r.Header.Get("RateLimit"), r.Header.Get("RateLimit-Policy"))
		}
	}
	r := e.do("GET", "/api/whoami-v2", aliceTok, nil)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("over quota: %d %v", r.StatusCode, r.Header)
	}
	// Other users and the resolvers bucket have their own quota.
	if r := e.do("GET", "/api/whoami-v2", bobTok, nil); r.StatusCode != 200 {
		t.Errorf("bob: %d", r.StatusCode)
	}
	if r := e.do("GET", "/alice/none/resolve/main/x", aliceTok, nil); r.StatusCode != 404 || !strings.HasPrefix(r.Header.Get("RateLimit"), `"resolvers";r=2;`) {
		t.Errorf("resolvers bucket: %d %q", r.StatusCode, r.Header.Get("RateLimit"))
	}
}

func TestStatsEndpoint(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(6, 1000)
	oid := e.upload(aliceTok, "alice/m", data)
	e.commitLines(aliceTok, "alice/m", "main", "", header("c", ""), lfsLine("a.bin", oid, 1000))
	r := e.do("GET", "/_devhub/stats", "", nil)
	var raw map[string]json.RawMessage
	r.json(t, &raw)
	for _, k := range []string{"bytes_received", "objects", "parts", "requests", "commits", "token_leaks", "faults", "uploads_started", "objects_stored"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stats lack %q: %s", k, r.body)
		}
	}
	var st Stats
	r.json(t, &st)
	if st.BytesReceived != 1000 || st.Objects[oid] != 1000 || st.Commits != 1 || st.Requests[OpBatch] != 1 || st.Requests[OpBasicPut] != 1 || st.Requests[OpCreateRepo] != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.Statuses["commit 200"] != 1 || st.Statuses["storage_put 200"] != 1 {
		t.Errorf("statuses %v", st.Statuses)
	}
}
