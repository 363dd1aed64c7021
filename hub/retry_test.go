package hub

import (
	"net/http"
	"testing"
	"time"
)

func TestServerWait(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		h      http.Header
		want   time.Duration
		ok     bool
	}{
		{"seconds", 503, http.Header{"Retry-After": {"12"}}, 12 * time.Second, true},
		{"zero", 503, http.Header{"Retry-After": {"0"}}, 0, true},
		{"http date", 503, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second, true},
		{"date in the past", 503, http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
		{"garbage", 503, http.Header{"Retry-After": {"soon"}}, 0, false},
		{"ratelimit r=0", 429, http.Header{"Ratelimit": {`"api";r=0;t=55`}}, 55 * time.Second, true},
		{"ratelimit r>0", 429, http.Header{"Ratelimit": {`"api";r=3;t=55`}}, 0, false},
		{"ratelimit on 503 ignored", 503, http.Header{"Ratelimit": {`"api";r=0;t=55`}}, 0, false},
		{"ratelimit spaces", 429, http.Header{"Ratelimit": {`"resolvers"; r=0; t=7`}}, 7 * time.Second, true},
		{"nothing", 429, http.Header{}, 0, false},
	}
	for _, tc := range tests {
		got, ok := serverWait(tc.status, tc.h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: serverWait = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	p := RetryPolicy{BaseDelay: time.Second, MaxDelay: 8 * time.Second}.withDefaults()
	for n := 1; n <= 10; n++ {
		ceil := min(time.Second<<(n-1), 8*time.Second)
		var maxSeen time.Duration
		for range 2000 {
			d := p.backoff(n)
			if d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v outside [0, %v]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range.
		if maxSeen < ceil/2 {
			t.Errorf("backoff(%d): max of 2000 draws %v, want near %v", n, maxSeen, ceil)
		}
	}
}

func TestRetryableStatus(t *testing.T) {
	for status, want := range map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
		400: false, 401: false, 403: false, 404: false, 409: false, 412: false, 501: false} {
		if retryableStatus(status) != want {
			t.Errorf("retryableStatus(%d) != %v", status, want)
		}
	}
}

// FuzzServerWait: any Retry-After / RateLimit header gives a non-negative wait, only when one was announced.
func FuzzServerWait(f *testing.F) {
	f.Add("12", `"api";r=0;t=5`, 429)
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT", "", 503)
	f.Add("", `"api";r=0;t=99999999999999999999`, 429)
	f.Add("-5", `r=0;t=-1`, 429)
	f.Fuzz(func(t *testing.T, retryAfter, rateLimit string, status int) {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		if rateLimit != "" {
			h.Set("RateLimit", rateLimit)
		}
		d, ok := serverWait(status, h, time.Unix(1700000000, 0))
		if d < 0 {
			t.Fatalf("negative wait %v", d)
		}
		if !ok && d != 0 {
			t.Fatalf("wait %v without an announcement", d)
		}
	})
}
