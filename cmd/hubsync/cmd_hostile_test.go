package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub"
)

// hostileProxy puts a server in front of s that rewrites the commit answer's URLs (commitUrl, pullRequestUrl)
// into strings full of terminal escape sequences.
func hostileProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodPost || !strings.Contains(r.Request.URL.Path, "/commit/") {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		r.Body.Close()
		evil := `\u001b[2J\u001b[H\rCommitted OK \u001b]0;pwned\u0007\u009b31m`
		b = bytes.Replace(b, []byte(`"commitUrl":"`), []byte(`"commitUrl":"`+evil), 1)
		b = bytes.Replace(b, []byte(`"pullRequestUrl":"`), []byte(`"pullRequestUrl":"`+evil), 1)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// assertNoControl fails when s holds a C0/C1 control character other than the newline ending a line.
func assertNoControl(t *testing.T, what, s string) {
	t.Helper()
	for _, r := range s {
		if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Errorf("%s holds control character %U: %q", what, r, s)
			return
		}
	}
}

// TestPushEscapesServerURLs: a hostile endpoint's commit and PR URLs reach stdout and the log escaped, and
// --create-pr prints the PR URL on stdout (issue 14 item 8, issue 7 §3).
func TestPushEscapesServerURLs(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	endpoint := hostileProxy(t, s.URL())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--endpoint", endpoint, "--token", hubcliToken, "--log-format", "console"}
	code, out, errb := hubcliRun(t, append(base, "push", dir, "--repo", "w/evil")...)
	if code != 0 {
		t.Fatalf("push exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	assertNoControl(t, "stdout", out)
	assertNoControl(t, "stderr", errb)
	if !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, "/w/evil/commit/") {
		t.Errorf("stdout %q", out)
	}

	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":2}`), 0o644)
	code, out, errb = hubcliRun(t, append(base, "push", dir, "--repo", "w/evil", "--create-pr")...)
	if code != 0 {
		t.Fatalf("push --create-pr exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	assertNoControl(t, "stdout", out)
	assertNoControl(t, "stderr", errb)
	if !strings.Contains(out, "/w/evil/discussions/") {
		t.Errorf("push --create-pr stdout %q, want the PR URL", out)
	}
}

// TestColorAndProgressSwitches: NO_COLOR and HF_HUB_DISABLE_PROGRESS_BARS (huggingface_hub's boolean values)
// turn colour and bars off. (Console logs off a terminal carry no colour: TestPushEscapesServerURLs.)
func TestColorAndProgressSwitches(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "true": true, "YES": true, "on": true, "no": false} {
		if got := hub.Getenv(func(string) string { return v }).Bool("X"); got != want {
			t.Errorf("Bool(%q) = %v", v, got)
		}
	}
	t.Setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
	if progressBarsEnabled(os.Stderr) {
		t.Error("progress bars enabled with HF_HUB_DISABLE_PROGRESS_BARS=1")
	}
	t.Setenv("NO_COLOR", "1")
	if colorEnabled(os.Stderr) {
		t.Error("colour enabled with NO_COLOR=1")
	}
}

// TestHostileErrorMessage: a server error message full of escape sequences reaches stderr escaped.
func TestHostileErrorMessage(t *testing.T) {
	hubcliIsolate(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "nope\x1b[2J\x1b[H\rLogged in as admin\x1b]0;x\x07\u009b1m")
	}))
	defer srv.Close()
	code, out, errb := hubcliRun(t, "--endpoint", srv.URL, "--token", "hf_x", "whoami")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	assertNoControl(t, "stdout", out)
	assertNoControl(t, "stderr", errb)
	if !strings.Contains(errb, `nope\x1b[2J`) {
		t.Errorf("stderr %q", errb)
	}
}
