package hub

import (
	"context"
	"time"

	"github.com/hubsync/hubsync/internal/timing"
)

// TestFastRetries returns a retry policy for tests: the default attempt count, with every wait (backoff and
// server-advertised Retry-After alike) shrunk a thousandfold, so a Retry-After of 2 s waits 2 ms. Pass it as
// Options.Retry. Wrap its Sleep to record the waits the client asked for.
func TestFastRetries() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:   6,
		BaseDelay:     time.Second,
		MaxDelay:      16 * time.Second,
		MaxRetryAfter: 5 * time.Minute,
		Sleep: func(ctx context.Context, d time.Duration) error {
			return timing.Sleep(ctx, d/1000)
		},
	}
}
