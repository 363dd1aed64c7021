package hub

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/timing"
)

// RetryPolicy says how often and how long the client retries a failed request. The zero value means the
// defaults (DefaultRetryPolicy). It is the client's only retry layer: resty's own retry stays off.
type RetryPolicy struct {
	// MaxAttempts is the number of tries per request (first try included). Default 6.
	MaxAttempts int
	// BaseDelay is the first backoff step; each retry doubles it. Default 1 s.
	BaseDelay time.Duration
	// MaxDelay caps one backoff step. Default 16 s.
	MaxDelay time.Duration
	// MaxRetryAfter is the longest server-advertised wait (Retry-After, RateLimit t=) the client sits out;
	// a longer one fails at once with a *RateLimitError. Default 5 min.
	MaxRetryAfter time.Duration
	// Sleep waits d or until ctx ends. Nil: a timer. Tests replace it to record or shorten waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultRetryPolicy returns the policy used when Options.Retry is the zero value.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 6, BaseDelay: time.Second, MaxDelay: 16 * time.Second, MaxRetryAfter: 5 * time.Minute}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	if p.Sleep == nil {
		p.Sleep = timing.Sleep
	}
	return p
}

// backoff returns the wait before retry number n (1 = first retry): exponential with full jitter,
// uniform in [0, min(MaxDelay, BaseDelay·2^(n-1))].
func (p RetryPolicy) backoff(n int) time.Duration {
	ceil := p.BaseDelay
	for i := 1; i < n && ceil < p.MaxDelay; i++ {
		ceil *= 2
	}
	ceil = min(ceil, p.MaxDelay)
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// retryableStatus reports whether a status is worth retrying (the Hub's and S3's transient answers).
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// serverWait returns the wait the server asked for: Retry-After (seconds or HTTP date), else on a 429 the
// RateLimit header's t= when r=0 ("api";r=0;t=N). ok is false when the server did not say.
func serverWait(status int, h http.Header, now time.Time) (time.Duration, bool) {
	if ra := strings.TrimSpace(h.Get("Retry-After")); ra != "" {
		if secs, err := strconv.ParseInt(ra, 10, 64); err == nil && secs >= 0 {
			return seconds(secs), true
		}
		if t, err := http.ParseTime(ra); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if status == http.StatusTooManyRequests {
		if d, ok := parseRateLimit(h.Get("RateLimit")); ok {
			return d, true
		}
	}
	return 0, false
}

// parseRateLimit parses the IETF draft header the Hub sends, e.g. `"api";r=0;t=42`, and returns t seconds
// when the remaining count r is 0.
func parseRateLimit(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	remaining, reset := int64(-1), int64(-1)
	for _, item := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch strings.TrimSpace(k) {
		case "r":
			remaining = n
		case "t":
			reset = n
		}
	}
	if remaining == 0 && reset >= 0 {
		return seconds(reset), true
	}
	return 0, false
}

// maxAnnounced caps a server-announced duration (a huge value must not overflow time.Duration).
const maxAnnounced = 365 * 24 * time.Hour

// seconds converts n seconds to a Duration, clamped to [0, maxAnnounced].
func seconds(n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	if n > int64(maxAnnounced/time.Second) {
		return maxAnnounced
	}
	return time.Duration(n) * time.Second
}
