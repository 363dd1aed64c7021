package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestErrorMessageFromBody(t *testing.T) {
	tests := []struct {
		body, ctype, want string
	}{
		{`{"error":"Repository not found"}`, "application/json", "Repository not found"},
		{`{"error":["m1","m2"]}`, "application/json", "m1; m2"},
		{`{"errors":[{"message":"a"},{"message":"b"}]}`, "application/json", "a; b"},
		{`{"message":"plain"}`, "application/json", "plain"},
		{`{"error":"invalid_grant","error_description":"expired"}`, "application/json", "invalid_grant; expired"},
		{`{"error":"x","message":"ignored when error is set"}`, "", "x"},
		{"just text\n  over lines", "text/plain", "just text over lines"},
		{"<html><body>503</body></html>", "text/html", ""},
		{"<!DOCTYPE html><p>x", "", ""},
		{"", "", ""},
		{`{"other":1}`, "application/json", ""},
		{strings.Repeat("x", 2000), "text/plain", strings.Repeat("x", maxErrorMessage) + "…"},
	}
	for _, tc := range tests {
		if got := errorMessageFromBody([]byte(tc.body), tc.ctype); got != tc.want {
			t.Errorf("errorMessageFromBody(%.40q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestHTTPErrorIs(t *testing.T) {
	tests := []struct {
		status int
		code   string
		is     []error
		isNot  []error
	}{
		{404, "RepoNotFound", []error{ErrNotFound, ErrRepoNotFound}, []error{ErrRevisionNotFound, ErrEntryNotFound, ErrConflict}},
		{404, "RevisionNotFound", []error{ErrNotFound, ErrRevisionNotFound}, []error{ErrRepoNotFound}},
		{404, "EntryNotFound", []error{ErrNotFound, ErrEntryNotFound}, []error{ErrRepoNotFound}},
		{404, "", []error{ErrNotFound}, []error{ErrRepoNotFound}},
		{401, "", []error{ErrUnauthorized}, []error{ErrForbidden, ErrNotFound}},
		{403, "", []error{ErrForbidden}, []error{ErrUnauthorized}},
		{409, "", []error{ErrConflict}, []error{ErrNotFound}},
		{412, "", []error{ErrPreconditionFailed}, []error{ErrConflict}},
		{429, "", []error{ErrRateLimited}, []error{ErrConflict}},
		{500, "", nil, []error{ErrNotFound, ErrConflict, ErrRateLimited}},
	}
	for _, tc := range tests {
		h := http.Header{}
		if tc.code != "" {
			h.Set("X-Error-Code", tc.code)
		}
		var err error = newHTTPError("GET", "https://h/x?sig=s", tc.status, h, nil, "")
		err = fmt.Errorf("wrapped: %w", err)
		for _, target := range tc.is {
			if !errors.Is(err, target) {
				t.Errorf("%d %s: errors.Is(%v) = false", tc.status, tc.code, target)
			}
		}
		for _, target := range tc.isNot {
			if errors.Is(err, target) {
				t.Errorf("%d %s: errors.Is(%v) = true", tc.status, tc.code, target)
			}
		}
	}
}

func TestHTTPErrorFields(t *testing.T) {
	h := http.Header{}
	h.Set("X-Error-Code", "RepoNotFound")
	h.Set("X-Error-Message", "Repository not found")
	h.Set("X-Request-Id", "Root=1-abc")
	e := newHTTPError("POST", "https://user:pw@hub.example/api/models/a/b/preupload/main?token=hf_x#frag", 404, h,
		[]byte(`{"error":"Repository not found"}`), "ours")
	if e.URL != "https://hub.example/api/models/a/b/preupload/main" {
		t.Errorf("URL = %q", e.URL)
	}
	if e.Message != "Repository not found" || e.RequestID != "Root=1-abc" || e.Code != "RepoNotFound" {
		t.Errorf("fields = %+v", e)
	}
	msg := e.Error()
	for _, bad := range []string{"hf_x", "pw", "frag"} {
		if strings.Contains(msg, bad) {
			t.Errorf("Error() %q contains %q", msg, bad)
		}
	}
	for _, want := range []string{"POST", "404", "RepoNotFound", "Root=1-abc"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() %q lacks %q", msg, want)
		}
	}
	// Without a server id, our own request id is reported.
	if e := newHTTPError("GET", "https://h/", 500, http.Header{}, nil, "ours"); e.RequestID != "ours" {
		t.Errorf("RequestID = %q, want ours", e.RequestID)
	}
	rl := &RateLimitError{RetryAfter: time.Minute, Err: e}
	if !errors.Is(rl, ErrRateLimited) || !strings.Contains(rl.Error(), "1m0s") {
		t.Errorf("RateLimitError = %v", rl)
	}
	nc := &NotCachedError{Repo: "a/b", Revision: "main", Path: "/x"}
	if !errors.Is(fmt.Errorf("w: %w", nc), ErrNotCached) {
		t.Error("NotCachedError does not match ErrNotCached")
	}
}

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"https://s3.example/bucket/key?X-Amz-Signature=abc&X-Amz-Credential=x": "https://s3.example/bucket/key",
		"https://u:p@h/x#f": "https://h/x",
		"https://h/x":       "https://h/x",
		"::bad url?q=1":     "::bad url",
	}
	for in, want := range tests {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzErrorMessageFromBody: any body gives a bounded, single-line message and never panics.
func FuzzErrorMessageFromBody(f *testing.F) {
	f.Add([]byte(`{"error":"x"}`), "application/json")
	f.Add([]byte(`{"error":["a","b"],"errors":[{"message":"c"}]}`), "")
	f.Add([]byte("<html>oops</html>"), "text/html")
	f.Add([]byte("plain\ntext"), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		msg := errorMessageFromBody(body, ctype)
		if len(msg) > maxErrorMessage+len("…") {
			t.Fatalf("message of %d bytes", len(msg))
		}
		if strings.ContainsAny(msg, "\n\r\t") {
			t.Fatalf("message %q spans lines", msg)
		}
	})
}

// TestHTTPErrorEscapesServerText: a hostile server's escape sequences (clear screen, carriage return over a fake
// success line, OSC title, C1 CSI) in the error headers or body never reach Error() raw (issue 14 item 8).
func TestHTTPErrorEscapesServerText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Go's client refuses C0 controls in headers; C1 controls (UTF-8 encoded) pass.
		w.Header().Set("X-Error-Code", "Evil\u009b31m")
		w.Header().Set("X-Request-Id", "id\u009d0;pwned")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"denied\u001b[2J\u001b[H\rCommitted! https://fake\u009b1m"}`))
	}))
	defer srv.Close()
	c, err := New(Options{Endpoint: srv.URL, Token: "hf_x"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WhoAmI(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, r := range msg {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Fatalf("error keeps control character %U: %q", r, msg)
		}
	}
	if !strings.Contains(msg, `denied\x1b[2J\x1b[H Committed!`) || !strings.Contains(msg, `Evil\u009b31m`) {
		t.Errorf("error = %q", msg)
	}
}
