package hub

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Caps on what a server can make the client hold in memory or wait for.
const (
	// DefaultMaxResponseBytes caps a non-streamed API answer, counted after decompression.
	DefaultMaxResponseBytes int64 = 8 << 20
	// MaxListingPageBytes caps one page of a listing (tree, commits, refs) and the commit and preupload
	// answers, which legitimately grow with the repository.
	MaxListingPageBytes int64 = 64 << 20
	// DefaultMaxListEntries caps the entries of one listing, all pages together.
	DefaultMaxListEntries = 500_000
	// DefaultMaxListDuration caps the time one listing may take, all pages together.
	DefaultMaxListDuration = 10 * time.Minute
	// maxErrorBody caps how much of an error answer is read.
	maxErrorBody int64 = 64 << 10
)

// listLimits bound a pagination walk.
type listLimits struct {
	entries  int
	duration time.Duration
}

func defaultListLimits() listLimits {
	return listLimits{entries: DefaultMaxListEntries, duration: DefaultMaxListDuration}
}

// ResponseTooLargeError is a server answer (or a listing) that exceeded the client's cap.
type ResponseTooLargeError struct {
	Method, URL string // the endpoint, without its query
	What        string // "bytes" (decoded) or "entries"
	Limit       int64
}

// Error names the endpoint and the cap.
func (e *ResponseTooLargeError) Error() string {
	return fmt.Sprintf("%s %s: the answer exceeds the limit of %d %s", e.Method, e.URL, e.Limit, e.What)
}

// errListTooLong is the cause of a listing context that ran past its time limit.
var errListTooLong = errors.New("listing took too long")

// readAnswer reads a non-streamed answer, decompressing gzip the transport left compressed, and caps its
// decoded size: an answer over the cap is a *ResponseTooLargeError; an error answer is cut at maxErrorBody.
func (c *Client) readAnswer(cl call, target string, r *reply, body io.Reader) ([]byte, error) {
	rd := body
	if strings.EqualFold(strings.TrimSpace(r.header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(body)
		switch {
		case errors.Is(err, io.EOF):
			return nil, nil
		case err != nil:
			return nil, &networkError{fmt.Errorf("%s %s: reading the answer: %w", cl.method, redactURL(target), err)}
		}
		defer zr.Close()
		rd = zr
	}
	limit := cl.maxBody
	if limit <= 0 {
		limit = c.maxResponse
	}
	answer := r.status >= 200 && r.status < 300
	for _, s := range cl.ok {
		answer = answer || r.status == s
	}
	if !answer {
		limit = maxErrorBody
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, &networkError{fmt.Errorf("%s %s: reading the answer: %w", cl.method, redactURL(target), err)}
	}
	if int64(len(b)) > limit {
		if !answer {
			return b[:limit], nil
		}
		return nil, &ResponseTooLargeError{Method: cl.method, URL: redactURL(target), What: "bytes", Limit: limit}
	}
	return b, nil
}

// listContext bounds a listing in time; the returned error function turns the context's end into a clear error.
func (c *Client) listContext(ctx context.Context, u string) (context.Context, context.CancelFunc, func(error) error) {
	lctx, cancel := context.WithTimeoutCause(ctx, c.listLimits.duration, errListTooLong)
	explain := func(err error) error {
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(lctx), errListTooLong) {
			return fmt.Errorf("GET %s: the listing took longer than %s: %w", redactURL(u), c.listLimits.duration, errListTooLong)
		}
		return err
	}
	return lctx, cancel, explain
}
