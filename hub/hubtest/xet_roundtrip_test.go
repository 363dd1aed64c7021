package hubtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/xet"
)

// xetFixture is a file packed into one xorb, with the shard that registers it.
type xetFixture struct {
	data  []byte
	refs  []xet.ChunkRef
	xorb  *xet.XorbBuilder
	shard *xet.Shard
}

func newXetFixture(t testing.TB, data []byte) *xetFixture {
	t.Helper()
	f := &xetFixture{data: data, refs: xet.Chunks(data), xorb: xet.NewXorbBuilder()}
	off := 0
	hashes := make([]xet.Hash, len(f.refs))
	for i, r := range f.refs {
		if _, err := f.xorb.AddChunk(data[off : off+int(r.Len)]); err != nil {
			t.Fatal(err)
		}
		off += int(r.Len)
		hashes[i] = r.Hash
	}
	fi := xet.FileInfo{Hash: xet.FileHash(f.refs), SHA256: shaField(sha256.Sum256(data)), HasSHA256: true, HasVerification: true,
		Terms: []xet.Term{{Xorb: f.xorb.Hash(), Bytes: uint32(len(data)), ChunkStart: 0, ChunkEnd: uint32(len(f.refs)), Verification: xet.VerificationHash(hashes)}}}
	f.shard = &xet.Shard{Files: []xet.FileInfo{fi}, CAS: []xet.CASInfo{f.xorb.CASInfo()}}
	return f
}

func (e *env) casPost(path, token string, body []byte) resp {
	e.t.Helper()
	return e.do("POST", e.s.CASURL()+path, token, bytes.NewReader(body))
}

func TestXetUploadResolveReconstruct(t *testing.T) {
	e := newEnv(t, xetOptions())
	e.createRepo(aliceTok, "", "m", false)
	tok := e.xetToken(aliceTok, "alice/m", "write").AccessToken
	data := append(randomBytes(7, 300<<10), bytes.Repeat([]byte("abcdefgh"), 40<<10)...)
	fx := newXetFixture(t, data)
	xh := fx.xorb.Hash().String()
	for i, want := range []bool{true, false} {
		r := e.casPost("/v1/xorbs/default/"+xh, tok, fx.xorb.Serialize())
		var a struct {
			WasInserted bool `json:"was_inserted"`
		}
		if r.StatusCode != 200 {
			t.Fatalf("xorb POST %d: %d %s", i, r.StatusCode, r.body)
		}
		r.json(t, &a)
		if a.WasInserted != want {
			t.Fatalf("xorb POST %d: was_inserted %v, want %v", i, a.WasInserted, want)
		}
	}
	for _, tc := range []struct {
		footer bool
		path   string
		want   string
	}{
		{false, "/v1/shards", `{"result":1}`},
		{false, "/v1/shards", `{"result":0}`}, // the same shard again
		{true, "/v2/shards", `{"result":1}` + "\n"},
	} {
		if r := e.casPost(tc.path, tok, fx.shard.Marshal(tc.footer)); r.StatusCode != 200 || string(r.body) != tc.want {
			t.Fatalf("shard POST %s (footer %v): %d %q, want %q", tc.path, tc.footer, r.StatusCode, r.body, tc.want)
		}
	}
	oid := sha256hex(data)
	if r := e.commitLines(aliceTok, "alice/m", "main", "", header("xet file", ""), lfsLine("w.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	st := e.s.Stats()
	if st.Xet.XorbsStored != 1 || st.Xet.ShardsStored != 3 || st.Requests[OpBasicPut]+st.Requests[OpPartPut] != 0 || st.Xet.BytesReceived == 0 {
		t.Fatalf("stats %+v", st.Xet)
	}

	// /resolve/: a plain client is redirected (with the Xet headers), a Xet-aware one gets the file info.
	r := e.do("GET", "/alice/m/resolve/main/w.bin", "", nil)
	fh := fx.shard.Files[0].Hash.String()
	if r.StatusCode != http.StatusFound || r.Header.Get("X-Xet-Hash") != fh || !strings.Contains(r.Header.Get("Link"), `rel="xet-auth"`) {
		t.Fatalf("resolve: %d %v", r.StatusCode, r.Header)
	}
	r = e.do("GET", "/alice/m/resolve/main/w.bin", "", nil, "Accept", XetFileInfoType+", */*")
	if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), XetFileInfoType) || r.Header.Get("X-Linked-Size") != fmt.Sprint(len(data)) {
		t.Fatalf("resolve (xet): %d %v %s", r.StatusCode, r.Header, r.body)
	}
	// The plain redirect serves the bytes the shard registered.
	r = e.do("GET", "/alice/m/resolve/main/w.bin", "", nil)
	if got := e.do("GET", r.Header.Get("Location"), "", nil); !bytes.Equal(got.body, data) {
		t.Fatalf("LFS download of the Xet file differs")
	}

	read := e.xetToken("", "alice/m", "read").AccessToken
	for _, tc := range []struct {
		name, rng string
		lo, hi    int // expected bytes [lo, hi)
	}{
		{"whole", "", 0, len(data)},
		{"middle", "bytes=100000-400000", 100000, 400001},
		{"tail", fmt.Sprintf("bytes=%d-", len(data)-10), len(data) - 10, len(data)},
		{"first byte", "bytes=0-0", 0, 1},
	} {
		for _, ver := range []string{"v1", "v2"} {
			t.Run(tc.name+"/"+ver, func(t *testing.T) {
				hdr := []string{}
				if tc.rng != "" {
					hdr = []string{"Range", tc.rng}
				}
				r := e.do("GET", e.s.CASURL()+"/"+ver+"/reconstructions/"+fh, read, nil, hdr...)
				if r.StatusCode != 200 {
					t.Fatalf("%d %s", r.StatusCode, r.body)
				}
				got := e.reassemble(t, ver, r.body)
				if !bytes.Equal(got[:min(len(got), tc.hi-tc.lo)], data[tc.lo:tc.hi]) || len(got) < tc.hi-tc.lo {
					t.Fatalf("reassembled %d bytes do not match data[%d:%d]", len(got), tc.lo, tc.hi)
				}
			})
		}
	}
	if r := e.do("GET", e.s.CASURL()+"/v1/reconstructions/"+fh, read, nil, "Range", "bytes=99999999-"); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: %d", r.StatusCode)
	}
	// Another repository's token does not see the file.
	e.createRepo(bobTok, "", "other", false)
	if r := e.do("GET", e.s.CASURL()+"/v1/reconstructions/"+fh, e.xetToken(bobTok, "bob/other", "read").AccessToken, nil); r.StatusCode != 404 {
		t.Fatalf("reconstruction with another repo's token: %d", r.StatusCode)
	}

	// Global dedup: the first chunk is known; the answer is a shard with HMAC'd chunk hashes.
	r = e.do("GET", e.s.CASURL()+"/v1/chunks/default/"+fx.refs[0].Hash.String(), tok, nil)
	if r.StatusCode != 200 {
		t.Fatalf("chunk query: %d %s", r.StatusCode, r.body)
	}
	sh, err := xet.ParseShard(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if sh.HMACKey.IsZero() || len(sh.CAS) != 1 || sh.CAS[0].Xorb != fx.xorb.Hash() || sh.CAS[0].Chunks[0].Hash != xet.HMAC(sh.HMACKey, fx.refs[0].Hash) {
		t.Fatalf("dedup shard %+v", sh)
	}
}

// reassemble fetches a reconstruction's ranges and concatenates the terms (after offset_into_first_range).
func (e *env) reassemble(t *testing.T, ver string, body []byte) []byte {
	t.Helper()
	var rec struct {
		Offset int `json:"offset_into_first_range"`
		Terms  []struct {
			Hash  string
			Range struct{ Start, End int }
		}
		FetchInfo map[string][]struct {
			Range    struct{ Start, End int }
			URL      string
			URLRange struct{ Start, End int } `json:"url_range"`
		} `json:"fetch_info"`
		Xorbs map[string][]struct {
			URL    string
			Ranges []struct {
				Chunks struct{ Start, End int }
				Bytes  struct{ Start, End int }
			}
		}
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, term := range rec.Terms {
		var u string
		var cs, bs, be int
		if ver == "v1" {
			for _, f := range rec.FetchInfo[term.Hash] {
				if f.Range.Start <= term.Range.Start && f.Range.End >= term.Range.End {
					u, cs, bs, be = f.URL, f.Range.Start, f.URLRange.Start, f.URLRange.End
				}
			}
		} else {
			for _, x := range rec.Xorbs[term.Hash] {
				for _, rg := range x.Ranges {
					if rg.Chunks.Start <= term.Range.Start && rg.Chunks.End >= term.Range.End {
						u, cs, bs, be = x.URL, rg.Chunks.Start, rg.Bytes.Start, rg.Bytes.End
					}
				}
			}
		}
		if u == "" {
			t.Fatalf("no fetch info for term %+v", term)
		}
		r := e.do("GET", u, "", nil, "Range", fmt.Sprintf("bytes=%d-%d", bs, be))
		if r.StatusCode != http.StatusPartialContent {
			t.Fatalf("xorb range: %d %s", r.StatusCode, r.body)
		}
		chunks, err := xet.DecodeChunks(r.body)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chunks[term.Range.Start-cs : term.Range.End-cs] {
			out = append(out, c.Data...)
		}
	}
	return out[rec.Offset:]
}

func TestXetUploadRefused(t *testing.T) {
	e := newEnv(t, xetOptions())
	e.createRepo(aliceTok, "", "m", false)
	tok := e.xetToken(aliceTok, "alice/m", "write").AccessToken
	fx := newXetFixture(t, randomBytes(3, 200<<10))
	other := newXetFixture(t, randomBytes(4, 50<<10))
	xh := fx.xorb.Hash().String()
	serialized := fx.xorb.Serialize()
	cases := []struct {
		name   string
		path   string
		body   func() []byte
		reason string
	}{
		{"xorb under another hash", "/v1/xorbs/default/" + other.xorb.Hash().String(), func() []byte { return serialized }, "xorb-hash-mismatch"},
		{"truncated xorb", "/v1/xorbs/default/" + xh, func() []byte { return serialized[:len(serialized)-3] }, "malformed-xorb"},
		{"garbage xorb", "/v1/xorbs/default/" + xh, func() []byte { return []byte("not a xorb at all") }, "malformed-xorb"},
		{"bad hash in path", "/v1/xorbs/default/xyz", func() []byte { return serialized }, "bad-hash"},
		{"shard before its xorb", "/v1/shards", func() []byte { return other.shard.Marshal(false) }, "missing-xorb"},
		{"garbage shard", "/v1/shards", func() []byte { return []byte("HFRepoMetaData but not really") }, "malformed-shard"},
		{"wrong verification", "/v1/shards", func() []byte {
			s := *fx.shard
			s.Files = []xet.FileInfo{fx.shard.Files[0]}
			s.Files[0].Terms = append([]xet.Term(nil), s.Files[0].Terms...)
			s.Files[0].Terms[0].Verification[0] ^= 1
			return s.Marshal(false)
		}, "bad-file-info"},
		{"wrong file hash", "/v1/shards", func() []byte {
			s := *fx.shard
			s.Files = []xet.FileInfo{fx.shard.Files[0]}
			s.Files[0].Hash[3] ^= 1
			return s.Marshal(false)
		}, "bad-file-info"},
		{"wrong sha256", "/v1/shards", func() []byte {
			s := *fx.shard
			s.Files = []xet.FileInfo{fx.shard.Files[0]}
			s.Files[0].SHA256[0] ^= 1
			return s.Marshal(false)
		}, "sha256-mismatch"},
		{"no verification", "/v1/shards", func() []byte {
			s := *fx.shard
			s.Files = []xet.FileInfo{fx.shard.Files[0]}
			s.Files[0].HasVerification = false
			return s.Marshal(false)
		}, "missing-verification"},
		{"no sha256", "/v1/shards", func() []byte {
			s := *fx.shard
			s.Files = []xet.FileInfo{fx.shard.Files[0]}
			s.Files[0].HasSHA256 = false
			return s.Marshal(false)
		}, "missing-sha256"},
	}
	stored := false
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.path, "/v1/shards") && !stored {
				if r := e.casPost("/v1/xorbs/default/"+xh, tok, serialized); r.StatusCode != 200 {
					t.Fatalf("xorb: %d %s", r.StatusCode, r.body)
				}
				stored = true
			}
			before := e.s.Stats().Xet.Rejected[tc.reason]
			r := e.casPost(tc.path, tok, tc.body())
			if r.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.StatusCode, r.body)
			}
			if e.s.Stats().Xet.Rejected[tc.reason] != before+1 {
				t.Fatalf("not counted as %s: %+v (%s)", tc.reason, e.s.Stats().Xet.Rejected, r.body)
			}
		})
	}
	if _, ok := e.s.HasObject(sha256hex(fx.data)); ok {
		t.Fatal("a refused shard stored an LFS object")
	}
}

func TestXetDedupAndPersistence(t *testing.T) {
	dir := t.TempDir()
	opts := xetOptions()
	opts.DataDir = dir
	s1, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s1, hc: noRedirectClient()}
	e.createRepo(aliceTok, "", "m", false)
	ctx := context.Background()
	base := randomBytes(9, 1<<20)
	tok := e.xetToken(aliceTok, "alice/m", "write").AccessToken
	if _, _, err := XetUpload(ctx, nil, s1.CASURL(), tok, base); err != nil {
		t.Fatal(err)
	}
	s1.Close()

	// After a restart on the same data the CAS knows the chunks: a second file sharing most of them
	// deduplicates against them (through a dedup query) and only its new chunks are sent.
	e = newEnv(t, opts)
	tok = e.xetToken(aliceTok, "alice/m", "write").AccessToken
	r := e.do("GET", e.s.CASURL()+"/v1/chunks/default/"+xet.Chunks(base)[0].Hash.String(), tok, nil)
	if r.StatusCode != 200 {
		t.Fatalf("dedup query after restart: %d %s", r.StatusCode, r.body)
	}
	second := append(append([]byte(nil), base[:700<<10]...), randomBytes(10, 200<<10)...)
	oldFx := newXetFixture(t, base)
	newFx := newXetFixture(t, second)
	_ = oldFx
	// Build the second file's shard by hand: its unchanged prefix refers to the stored xorb.
	refs := newFx.refs
	oldRefs := oldFx.refs
	common := 0
	for common < len(refs) && common < len(oldRefs) && refs[common] == oldRefs[common] {
		common++
	}
	if common == 0 {
		t.Fatal("no common chunks")
	}
	tail := xet.NewXorbBuilder()
	off := 0
	for i, c := range refs {
		if i >= common {
			if _, err := tail.AddChunk(second[off : off+int(c.Len)]); err != nil {
				t.Fatal(err)
			}
		}
		off += int(c.Len)
	}
	vh := func(rs []xet.ChunkRef) (xet.Hash, uint32) {
		hs := make([]xet.Hash, len(rs))
		var n uint32
		for i, r := range rs {
			hs[i], n = r.Hash, n+r.Len
		}
		return xet.VerificationHash(hs), n
	}
	v1, n1 := vh(refs[:common])
	v2, n2 := vh(refs[common:])
	sh := &xet.Shard{CAS: []xet.CASInfo{tail.CASInfo()}, Files: []xet.FileInfo{{
		Hash: xet.FileHash(refs), SHA256: shaField(sha256.Sum256(second)), HasSHA256: true, HasVerification: true,
		Terms: []xet.Term{
			{Xorb: oldFx.xorb.Hash(), Bytes: n1, ChunkStart: 0, ChunkEnd: uint32(common), Verification: v1},
			{Xorb: tail.Hash(), Bytes: n2, ChunkStart: 0, ChunkEnd: uint32(len(refs) - common), Verification: v2},
		}}}}
	if r := e.casPost("/v1/xorbs/default/"+tail.Hash().String(), tok, tail.Serialize()); r.StatusCode != 200 {
		t.Fatalf("tail xorb: %d %s", r.StatusCode, r.body)
	}
	if r := e.casPost("/v1/shards", tok, sh.Marshal(false)); r.StatusCode != 200 {
		t.Fatalf("shard: %d %s", r.StatusCode, r.body)
	}
	st := e.s.Stats().Xet
	if st.ChunksDeduplicated != int64(common) || st.BytesDeduplicated != int64(n1) || st.XorbsStored != 1 {
		t.Fatalf("dedup stats %+v, want %d chunks / %d bytes deduplicated", st, common, n1)
	}
	if _, ok := e.s.HasObject(sha256hex(second)); !ok {
		t.Fatal("the second file is not an LFS object")
	}
}

func TestXetFaults(t *testing.T) {
	f, err := ParseFaults("xet-5xx=0.5,xorb-reset=0.25,seed=3")
	if err != nil || f.XetError != 0.5 || f.XorbReset != 0.25 || f.String() != "xet-5xx=0.5,xorb-reset=0.25,seed=3" {
		t.Fatalf("ParseFaults: %+v %v", f, err)
	}
	fx := newXetFixture(t, randomBytes(31, 100<<10))
	xpath := "/v1/xorbs/default/" + fx.xorb.Hash().String()
	cases := []struct {
		name  string
		rule  *FaultRule
		prob  Faults
		path  string
		want  int // 0: connection cut
		fault string
	}{
		{name: "rule 503 on a xorb", rule: &FaultRule{Op: OpXorbPut, Kind: FaultStatus, Status: 503}, path: xpath, want: 503, fault: "rule:xet_xorb:status"},
		{name: "rule reset on a xorb", rule: &FaultRule{Op: OpXorbPut, Kind: FaultReset, AfterBytes: 1000}, path: xpath, want: 0, fault: "rule:xet_xorb:reset"},
		{name: "rule 500 on a shard", rule: &FaultRule{Op: OpShardPut, Kind: FaultStatus}, path: "/v1/shards", want: 500, fault: "rule:xet_shard:status"},
		{name: "xet-5xx", prob: Faults{XetError: 1}, path: xpath, fault: "xet-5xx"},
		{name: "xorb-reset", prob: Faults{XorbReset: 1}, path: xpath, want: 0, fault: "xorb-reset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, xetOptions())
			e.createRepo(aliceTok, "", "m", false)
			tok := e.xetToken(aliceTok, "alice/m", "write").AccessToken
			if tc.rule != nil {
				e.s.InjectFault(*tc.rule)
			}
			e.s.SetFaults(tc.prob)
			body := fx.xorb.Serialize()
			if tc.path == "/v1/shards" {
				body = fx.shard.Marshal(false)
			}
			req, _ := http.NewRequest("POST", e.s.CASURL()+tc.path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := e.hc.Do(req)
			switch {
			case tc.want == 0 && tc.fault != "xet-5xx":
				if err == nil {
					res.Body.Close()
					t.Fatalf("status %d, want a cut connection", res.StatusCode)
				}
			case err != nil:
				t.Fatal(err)
			default:
				res.Body.Close()
				if tc.want != 0 && res.StatusCode != tc.want || res.StatusCode < 500 {
					t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
				}
			}
			if e.s.Stats().Faults[tc.fault] != 1 {
				t.Fatalf("faults %v, want %s counted", e.s.Stats().Faults, tc.fault)
			}
			if e.s.xet.xorb(fx.xorb.Hash()) != nil {
				t.Fatal("a faulted upload stored the xorb")
			}
		})
	}
}
