package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hubsync/hubsync/internal/termsafe"
)

// Sentinel errors. Every error the client returns for an HTTP failure is an *HTTPError (or wraps one), and
// errors.Is maps its status (and X-Error-Code) onto these.
var (
	// ErrNotFound: 404 (repo, revision or entry; HTTPError.Code tells which).
	ErrNotFound = errors.New("not found")
	// ErrRepoNotFound: 404 with X-Error-Code RepoNotFound. It also matches ErrNotFound.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrRevisionNotFound: 404 with X-Error-Code RevisionNotFound. It also matches ErrNotFound.
	ErrRevisionNotFound = errors.New("revision not found")
	// ErrEntryNotFound: 404 with X-Error-Code EntryNotFound. It also matches ErrNotFound.
	ErrEntryNotFound = errors.New("entry not found")
	// ErrUnauthorized: 401, the token is missing or invalid.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: 403, the token lacks the permission.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: 409, e.g. the repository, branch or tag already exists.
	ErrConflict = errors.New("conflict")
	// ErrPreconditionFailed: 412, the commit's parentCommit is not the branch head any more.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrRateLimited: 429. The error is a *RateLimitError carrying the advertised wait.
	ErrRateLimited = errors.New("rate limited")
	// ErrNotCached: ResolveCachedSnapshot found no snapshot for the repo and revision in the local cache.
	ErrNotCached = errors.New("not in the local cache")
)

// Error kinds: broader classes of an *HTTPError for callers that decide what to do about a failure (retry the
// job, wait for a user, give up) without reading status codes or URLs. Each is usable with errors.Is.
var (
	// ErrAuth: the Hub refused the token (401 or 403 from the Hub itself); a new token fixes it. A 403 from a
	// storage or CAS host (an expired signature) is ErrStorage, not ErrAuth.
	ErrAuth = errors.New("the Hub refused the token")
	// ErrServer: a 5xx answer (from the Hub or from storage) that outlived the client's retries.
	ErrServer = errors.New("server error")
	// ErrRejected: the Hub API refused the request itself as invalid (400, 405, 410, 413, 422); sending the same
	// request again cannot succeed.
	ErrRejected = errors.New("request rejected by the Hub")
	// ErrStorage: any error answer from a storage URL (presigned S3 URL, Xet CAS) rather than from the Hub API.
	ErrStorage = errors.New("storage error")
)

// Origin says which kind of server gave an HTTPError's answer.
type Origin int

// The origins. The zero value (OriginUnknown) is treated as the Hub.
const (
	OriginUnknown Origin = iota // not recorded (e.g. an HTTPError built by hand): treated as the Hub
	OriginHub                   // the endpoint itself (scheme, host and port of Options.Endpoint)
	OriginStorage               // another host: a presigned storage URL, a Xet CAS, a redirect target
)

// HTTPError is a non-2xx answer from the Hub or from a storage URL.
type HTTPError struct {
	Status    int    // HTTP status code
	Code      string // X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo, ...)
	Message   string // X-Error-Message, else the message found in the body
	RequestID string // X-Request-Id (else X-Amzn-Trace-Id / x-amz-cf-id echoed by the server, else ours)
	Method    string // request method
	URL       string // request URL without its query string (presigned queries are credentials)
	Origin    Origin // which server answered (set by the client; zero = unknown, treated as the Hub)
}

// Error formats the failure on one line; it never contains a token or a query string.
func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request id %s]", e.RequestID)
	}
	return b.String()
}

// Is maps the status code (and X-Error-Code) onto the package's sentinel errors.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrRepoNotFound:
		return e.Status == http.StatusNotFound && e.Code == "RepoNotFound"
	case ErrRevisionNotFound:
		return e.Status == http.StatusNotFound && e.Code == "RevisionNotFound"
	case ErrEntryNotFound:
		return e.Status == http.StatusNotFound && e.Code == "EntryNotFound"
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrPreconditionFailed:
		return e.Status == http.StatusPreconditionFailed
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrAuth:
		return e.Origin != OriginStorage && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
	case ErrServer:
		return e.Status >= 500 && e.Status <= 599
	case ErrRejected:
		if e.Origin == OriginStorage {
			return false
		}
		switch e.Status {
		case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusGone, http.StatusRequestEntityTooLarge,
			http.StatusUnprocessableEntity:
			return true
		}
	case ErrStorage:
		return e.Origin == OriginStorage
	}
	return false
}

// RateLimitError is returned when the Hub kept answering 429 (or asked for a longer wait than the retry policy
// allows). RetryAfter is the wait the server advertised (Retry-After or RateLimit "t=").
type RateLimitError struct {
	RetryAfter time.Duration
	Err        *HTTPError
}

// Error describes the rate limit.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s: %v", e.RetryAfter, e.Err)
}

// Unwrap returns the underlying *HTTPError.
func (e *RateLimitError) Unwrap() error { return e.Err }

// Is reports ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// NotCachedError is returned by ResolveCachedSnapshot when the local cache has no snapshot for the repo and
// revision. It matches ErrNotCached.
type NotCachedError struct {
	Repo, Revision string
	Path           string // the path that was looked for
}

// Error names the repo, revision and the path that is missing.
func (e *NotCachedError) Error() string {
	return fmt.Sprintf("%s@%s is not in the local cache (%s missing)", e.Repo, e.Revision, e.Path)
}

// Is reports ErrNotCached.
func (e *NotCachedError) Is(target error) bool { return target == ErrNotCached }

// redactURL drops the query string, the fragment and any user info of u (presigned queries are credentials).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i]
		}
		return raw
	}
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	u.User = nil
	return u.String()
}

// newHTTPError builds an *HTTPError from a response; body is the (possibly truncated) response body.
func newHTTPError(method, rawURL string, status int, h http.Header, body []byte, ourRequestID string) *HTTPError {
	// Everything taken from the answer is server text: control characters are escaped (termsafe) so that an
	// error message printed or logged can never carry escape sequences to a terminal.
	e := &HTTPError{
		Status: status,
		Code:   termsafe.String(bound(h.Get("X-Error-Code"))),
		Method: method,
		URL:    termsafe.String(redactURL(rawURL)),
	}
	if e.Code == "" {
		e.Code = storageErrorCode(body)
	}
	e.RequestID = termsafe.String(bound(firstNonEmpty(h.Get("X-Request-Id"), h.Get("X-Amzn-Trace-Id"), h.Get("X-Amz-Cf-Id"), ourRequestID)))
	msg := h.Get("X-Error-Message")
	if bodyMsg := errorMessageFromBody(body, h.Get("Content-Type")); bodyMsg != "" && bodyMsg != msg {
		if msg == "" {
			msg = bodyMsg
		} else {
			msg = msg + ": " + bodyMsg
		}
	}
	e.Message = termsafe.String(msg)
	return e
}

// storageErrorCode returns the <Code> of an S3-style XML error body ("RequestTimeout", "AccessDenied",
// "NoSuchUpload"), or "" when the body is not one.
func storageErrorCode(body []byte) string {
	s := string(body)
	if !strings.Contains(s, "<Error") {
		return ""
	}
	_, rest, ok := strings.Cut(s, "<Code>")
	if !ok {
		return ""
	}
	code, _, ok := strings.Cut(rest, "</Code>")
	code = strings.TrimSpace(code)
	if !ok || !plainCode(code) {
		return ""
	}
	return code
}

// plainCode reports whether s is a short alphanumeric error code, safe to print as it is.
func plainCode(s string) bool {
	return s != "" && len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// transientStorageError reports a storage answer that is a transient failure although its status is not
// retryable in general: S3's "400 RequestTimeout" (the socket was idle too long; the request is to be resent).
func transientStorageError(e *HTTPError) bool {
	return e.Status == http.StatusBadRequest && e.Code == "RequestTimeout"
}

// maxErrorMessage bounds the part of an error body copied into an error message.
const maxErrorMessage = 512

// errorMessageFromBody extracts the human message from the Hub's error body variants:
// {"error":"m"}, {"error":["m1","m2"]}, {"errors":[{"message":"m"}]}, {"message":"m"},
// {"error":"code","error_description":"d"}; other non-HTML text is returned raw (trimmed, bounded).
func errorMessageFromBody(body []byte, contentType string) string {
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return ""
	}
	var v struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
		Errors           []struct {
			Message string `json:"message"`
		} `json:"errors"`
		Message string `json:"message"`
	}
	if strings.HasPrefix(trimmed, "{") && json.Unmarshal([]byte(trimmed), &v) == nil {
		var parts []string
		if len(v.Error) > 0 {
			var s string
			var list []string
			switch {
			case json.Unmarshal(v.Error, &s) == nil:
				if s != "" {
					parts = append(parts, s)
				}
			case json.Unmarshal(v.Error, &list) == nil:
				for _, m := range list {
					if m != "" {
						parts = append(parts, m)
					}
				}
			}
		}
		if v.ErrorDescription != "" {
			parts = append(parts, v.ErrorDescription)
		}
		for _, e := range v.Errors {
			if e.Message != "" {
				parts = append(parts, e.Message)
			}
		}
		if len(parts) == 0 && v.Message != "" {
			parts = append(parts, v.Message)
		}
		return bound(strings.Join(parts, "; "))
	}
	if strings.Contains(strings.ToLower(contentType), "html") || strings.HasPrefix(strings.ToLower(trimmed), "<!doctype") ||
		strings.HasPrefix(strings.ToLower(trimmed), "<html") {
		return ""
	}
	return bound(trimmed)
}

func bound(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxErrorMessage {
		return s[:maxErrorMessage] + "…"
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
