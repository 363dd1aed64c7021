package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// XetMode says whether uploads use the Xet transfer (docs/transfer.md).
type XetMode string

// The Xet modes.
const (
	// XetOff never offers the xet transfer: uploads use LFS basic/multipart (the zero value).
	XetOff XetMode = ""
	// XetAuto offers xet; it is used when the Hub's batch answer chooses it, else LFS.
	XetAuto XetMode = "auto"
	// XetOn offers xet and fails an upload whose batch answer chooses anything else.
	XetOn XetMode = "on"
)

// ParseXetMode parses "auto", "on" or "off" (also "" = off, and the booleans true/false = on/off).
func ParseXetMode(s string) (XetMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		return XetAuto, nil
	case "on", "true", "1", "yes":
		return XetOn, nil
	case "off", "false", "0", "no", "":
		return XetOff, nil
	}
	return XetOff, fmt.Errorf("invalid xet mode %q: want auto, on or off", s)
}

// String returns "auto", "on" or "off".
func (m XetMode) String() string {
	if m == XetOff {
		return "off"
	}
	return string(m)
}

// XetModeFromEnv applies huggingface_hub's HF_HUB_DISABLE_XET: a true value turns Xet off whatever m says.
func XetModeFromEnv(getenv Getenv, m XetMode) XetMode {
	if getenv.Bool("HF_HUB_DISABLE_XET") {
		return XetOff
	}
	return m
}

// XetCacheDir returns $HF_XET_CACHE, else $HF_HOME/xet (huggingface_hub's Xet cache).
func XetCacheDir(getenv Getenv) string {
	if p := getenv.get("HF_XET_CACHE"); p != "" {
		return expandHome(getenv, p)
	}
	return filepath.Join(HFHome(getenv), "xet")
}

// ErrXetNotOffered: the upload required Xet (XetOn) and the Hub's batch answer chose another transfer.
var ErrXetNotOffered = errors.New("the Hub did not choose the xet transfer")

// casToken is a Xet CAS access token with its CAS and expiry.
type casToken struct {
	token  string
	casURL string // no trailing slash
	exp    time.Time
}

// casTokenExpiryMargin is how long before its expiry a CAS token is refreshed.
const casTokenExpiryMargin = 30 * time.Second

// xetTokens holds the CAS token of one repo and revision, refreshed through the batch answer's href (the
// xet-write-token route) before it expires. It is safe for concurrent use.
type xetTokens struct {
	c          *Client
	refreshURL string
	mu         sync.Mutex
	cur        casToken
}

// xetTokenAnswer is the JSON of GET /api/{type}s/{repo}/xet-write-token/{rev}.
type xetTokenAnswer struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CasURL      string `json:"casUrl"`
}

// xetWriteTokenURL is the Hub route of a model repo's CAS write token.
func (c *Client) xetWriteTokenURL(repo, revision string) string {
	return c.repoAPI(repo) + "/xet-write-token/" + url.PathEscape(revisionOrDefault(revision))
}

// newXetTokens starts from the X-Xet-* headers of a batch action (when complete), refreshing through
// refreshURL.
func (c *Client) newXetTokens(refreshURL string, header map[string]string) *xetTokens {
	x := &xetTokens{c: c, refreshURL: refreshURL}
	h := map[string]string{}
	for k, v := range header {
		h[strings.ToLower(k)] = v
	}
	tok, cas := h["x-xet-access-token"], strings.TrimRight(h["x-xet-cas-url"], "/")
	exp, err := strconv.ParseInt(strings.TrimSpace(h["x-xet-token-expiration"]), 10, 64)
	if tok != "" && !strings.ContainsAny(tok, "\r\n") && checkHTTPURL(cas) == nil && err == nil && exp > 0 {
		x.cur = casToken{token: tok, casURL: cas, exp: time.Unix(exp, 0)}
	}
	return x
}

// get returns a CAS token valid for at least casTokenExpiryMargin, refreshing it when needed.
func (x *xetTokens) get(ctx context.Context) (casToken, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cur.token != "" && time.Now().Add(casTokenExpiryMargin).Before(x.cur.exp) {
		return x.cur, nil
	}
	return x.refreshLocked(ctx)
}

// invalidate drops token tok (the CAS refused it) so that the next get refreshes.
func (x *xetTokens) invalidate(tok string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cur.token == tok {
		x.cur = casToken{}
	}
}

func (x *xetTokens) refreshLocked(ctx context.Context) (casToken, error) {
	if err := checkHTTPURL(x.refreshURL); err != nil {
		return casToken{}, fmt.Errorf("xet token refresh URL: %w", err)
	}
	r, err := x.c.send(ctx, call{method: "GET", url: x.refreshURL, auth: true})
	if err != nil {
		return casToken{}, fmt.Errorf("getting a Xet CAS token: %w", err)
	}
	tok, err := parseXetTokenAnswer(r.body)
	if err != nil {
		return casToken{}, err
	}
	x.cur = tok
	return x.cur, nil
}

// parseXetTokenAnswer decodes and checks a xet-write-token answer.
func parseXetTokenAnswer(body []byte) (casToken, error) {
	var a xetTokenAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return casToken{}, fmt.Errorf("decoding the Xet CAS token answer: %w", err)
	}
	cas := strings.TrimRight(a.CasURL, "/")
	if a.AccessToken == "" || a.Exp <= 0 {
		return casToken{}, errors.New("the Xet CAS token answer lacks accessToken or exp")
	}
	if strings.ContainsAny(a.AccessToken, "\r\n") {
		return casToken{}, errors.New("the Xet CAS token answer: accessToken holds a line break")
	}
	if err := checkHTTPURL(cas); err != nil {
		return casToken{}, fmt.Errorf("the Xet CAS token answer: casUrl: %w", err)
	}
	return casToken{token: a.AccessToken, casURL: cas, exp: time.Unix(a.Exp, 0)}, nil
}
