package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

var testOID = strings.Repeat("ab", 32)

func TestPlanParts(t *testing.T) {
	tests := []struct {
		size, chunk int64
		want        []Part
	}{
		{0, 5, []Part{}},
		{1, 5, []Part{{1, 0, 1}}},
		{5, 5, []Part{{1, 0, 5}}},
		{6, 5, []Part{{1, 0, 5}, {2, 5, 1}}},
		{10, 5, []Part{{1, 0, 5}, {2, 5, 5}}},
		{11, 5, []Part{{1, 0, 5}, {2, 5, 5}, {3, 10, 1}}},
	}
	for _, tc := range tests {
		got, err := PlanParts(tc.size, tc.chunk)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("PlanParts(%d, %d) = %v, want %v", tc.size, tc.chunk, got, tc.want)
		}
		var sum int64
		for _, p := range got {
			sum += p.Size
		}
		if sum != tc.size {
			t.Errorf("PlanParts(%d, %d): parts sum to %d", tc.size, tc.chunk, sum)
		}
	}
	if _, err := PlanParts(10, 0); err == nil {
		t.Error("chunk 0 accepted")
	}
	if _, err := PlanParts(-1, 5); err == nil {
		t.Error("negative size accepted")
	}
}

func multipartObject(size, chunk int64, keys ...string) string {
	h := map[string]string{"chunk_size": fmt.Sprint(chunk)}
	for _, k := range keys {
		h[k] = "https://s3.example/part/" + k + "?X-Expires=1893456000&X-Signature=s"
	}
	b, _ := json.Marshal(map[string]any{"objects": []any{map[string]any{
		"oid": testOID, "size": size,
		"actions": map[string]any{"upload": map[string]any{
			"href": "https://hub.example/api/complete_multipart?uploadId=u&expiration=1893452400&signature=x", "header": h}},
	}}})
	return string(b)
}

func TestPlanForMultipart(t *testing.T) {
	now := time.Unix(1800000000, 0)
	tests := []struct {
		name    string
		body    string
		wantErr string
		parts   int
	}{
		{"zero padded keys", multipartObject(12, 5, "00001", "00002", "00003"), "", 3},
		{"plain keys, numeric order", multipartObject(12, 5, "3", "1", "2"), "", 3},
		{"too few parts", multipartObject(12, 5, "1", "2"), "2 part URLs, want ceil(12/5) = 3", 0},
		{"too many parts", multipartObject(10, 5, "1", "2", "3"), "3 part URLs", 0},
		{"gap", multipartObject(12, 5, "1", "2", "4"), "not 1..3", 0},
		{"part zero", multipartObject(12, 5, "0", "1", "2"), "invalid part number", 0},
		{"duplicate number", multipartObject(12, 5, "1", "01", "2"), "listed twice", 0},
		{"bad chunk", strings.Replace(multipartObject(12, 5, "1"), `"chunk_size":"5"`, `"chunk_size":"x"`, 1), "invalid chunk_size", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br, err := DecodeBatchResponse([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			p, err := planFor(&br.Objects[0], now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.kind != transferMultipart || len(p.partURLs) != tc.parts || p.chunkSize != 5 {
				t.Fatalf("plan = %+v", p)
			}
			for i, u := range p.partURLs {
				if !strings.Contains(u, "/part/") || !strings.HasSuffix(strings.Split(strings.Split(u, "/part/")[1], "?")[0], fmt.Sprint(i+1)) {
					t.Errorf("part %d URL %s", i+1, u)
				}
			}
			// The earliest of the completion's expiration and the parts' X-Expires.
			if !p.expiresAt.Equal(time.Unix(1893452400, 0)) {
				t.Errorf("expiresAt = %v", p.expiresAt)
			}
		})
	}
}

func TestPlanForBasicNoneAndErrors(t *testing.T) {
	now := time.Now()
	body := fmt.Sprintf(`{"transfer":"basic","objects":[
		{"oid":%q,"size":3,"actions":{"upload":{"href":"https://s3.example/put?X-Amz-Date=20260102T030405Z&X-Amz-Expires=900","header":{"Content-Type":"application/octet-stream"}},
		 "verify":{"href":"https://hub.example/verify","header":{"Authorization":"Basic xyz"}}}},
		{"oid":%q,"size":4},
		{"oid":%q,"size":5,"error":{"code":422,"message":"too big"}}]}`,
		testOID, strings.Repeat("cd", 32), strings.Repeat("ef", 32))
	br, err := DecodeBatchResponse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	p0, err := planFor(&br.Objects[0], now)
	if err != nil || p0.kind != transferBasic || p0.verify == nil || p0.header["Content-Type"] != "application/octet-stream" {
		t.Fatalf("basic: %+v %v", p0, err)
	}
	if want := time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC); !p0.expiresAt.Equal(want) {
		t.Errorf("basic expiry %v, want %v", p0.expiresAt, want)
	}
	p1, _ := planFor(&br.Objects[1], now)
	if p1.kind != transferNone {
		t.Errorf("no actions: kind %v", p1.kind)
	}
	p2, _ := planFor(&br.Objects[2], now)
	if p2.objectErr != "too big" || p2.objectErrCode != 422 {
		t.Errorf("error object: %+v", p2)
	}
}

func TestDecodeBatchResponseRejects(t *testing.T) {
	for _, body := range []string{
		`not json`,
		`{"objects":[{"oid":"short","size":1}]}`,
		`{"objects":[{"oid":"` + strings.Repeat("AB", 32) + `","size":1}]}`,
		`{"objects":[{"oid":"` + testOID + `","size":-1}]}`,
	} {
		if _, err := DecodeBatchResponse([]byte(body)); err == nil {
			t.Errorf("accepted %s", body)
		}
	}
	for _, href := range []string{"ftp://x/y", "/relative", "https://"} {
		body := fmt.Sprintf(`{"objects":[{"oid":%q,"size":1,"actions":{"upload":{"href":%q}}}]}`, testOID, href)
		br, err := DecodeBatchResponse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := planFor(&br.Objects[0], time.Now()); err == nil {
			t.Errorf("href %q accepted", href)
		}
	}
}

// FuzzDecodeBatchResponse: arbitrary answers never panic, and every accepted multipart plan is consistent.
func FuzzDecodeBatchResponse(f *testing.F) {
	f.Add([]byte(multipartObject(12, 5, "00001", "00002", "00003")))
	f.Add([]byte(multipartObject(12, 5, "1", "2")))
	f.Add([]byte(`{"transfer":"basic","objects":[{"oid":"` + testOID + `","size":3,"actions":{"upload":{"href":"https://s/p","expires_in":60,"expires_at":"2030-01-01T00:00:00Z"}}}]}`))
	f.Add([]byte(`{"objects":[{"oid":"` + testOID + `","size":3,"error":{"code":404,"message":"x"}}]}`))
	f.Add([]byte(`{"objects":[{"oid":"` + testOID + `","size":9223372036854775807,"actions":{"upload":{"href":"https://h/c","header":{"chunk_size":"1","1":"https://h/1"}}}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		br, err := DecodeBatchResponse(body)
		if err != nil {
			return
		}
		for i := range br.Objects {
			p, err := planFor(&br.Objects[i], time.Unix(1800000000, 0))
			if err != nil {
				continue
			}
			if p.kind == transferMultipart {
				if p.chunkSize <= 0 || int64(len(p.partURLs)) != partCount(p.size, p.chunkSize) {
					t.Fatalf("inconsistent plan: size %d chunk %d parts %d", p.size, p.chunkSize, len(p.partURLs))
				}
				for n, u := range p.partURLs {
					if u == "" {
						t.Fatalf("part %d has no URL", n+1)
					}
				}
			}
		}
	})
}

func TestURLExpiry(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := map[string]time.Time{
		"https://h/x?expiration=Wed%2C+24+Jul+2024+06%3A44%3A59+GMT&signature=s": time.Date(2024, 7, 24, 6, 44, 59, 0, time.UTC),
		"https://h/x?expiration=1700000600":                                      time.Unix(1700000600, 0),
		"https://h/x?X-Expires=1700000100&X-Signature=x":                         time.Unix(1700000100, 0),
		"https://h/x?X-Amz-Date=20231114T221320Z&X-Amz-Expires=60":               time.Date(2023, 11, 14, 22, 14, 20, 0, time.UTC),
		"https://h/x?Expires=1700000100&expires=1700000050":                      time.Unix(1700000050, 0),
		"https://h/x": {},
	}
	for u, want := range tests {
		if got := urlExpiry(u, now); !got.Equal(want) {
			t.Errorf("urlExpiry(%s) = %v, want %v", u, got, want)
		}
	}
}

// FuzzURLExpiry: any URL gives either no expiry or a concrete time, never a panic.
func FuzzURLExpiry(f *testing.F) {
	f.Add("https://h/x?expiration=Wed%2C+24+Jul+2024+06%3A44%3A59+GMT")
	f.Add("https://h/x?X-Amz-Date=20231114T221320Z&X-Amz-Expires=60")
	f.Add("https://h/x?X-Expires=99999999999999999999&expires=-1")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, u string) {
		_ = urlExpiry(u, time.Unix(1700000000, 0))
	})
}
