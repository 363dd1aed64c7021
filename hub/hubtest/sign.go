package hubtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signed URLs: storage URLs and the multipart completion URL carry their own authorization, an HMAC-SHA256
// over the method, the path and every other query parameter, including an expiry time (unix seconds) and an
// issue stamp ("iat", strictly increasing) that lets a test expire every URL issued so far.

var (
	errURLExpired = errors.New("Request has expired")
	errURLBadSig  = errors.New("The request signature we calculated does not match the signature you provided")
)

type signer struct {
	key []byte
	now func() time.Time

	mu            sync.Mutex
	lastIssued    int64
	revokedBefore int64
}

// params names the expiry and signature query parameters of one kind of URL.
type params struct{ exp, sig string }

var (
	storageParams  = params{exp: "X-Expires", sig: "X-Signature"}
	completeParams = params{exp: "expiration", sig: "signature"}
)

// sign adds an expiry, an issue stamp and the signature to q.
func (sg *signer) sign(method, path string, q url.Values, p params, ttl time.Duration) time.Time {
	now := sg.now()
	exp := now.Add(ttl).Truncate(time.Second)
	if exp.Before(now.Add(ttl)) {
		exp = exp.Add(time.Second)
	}
	sg.mu.Lock()
	iat := max(now.UnixNano(), sg.lastIssued+1)
	sg.lastIssued = iat
	sg.mu.Unlock()
	q.Set(p.exp, strconv.FormatInt(exp.Unix(), 10))
	q.Set("iat", strconv.FormatInt(iat, 10))
	q.Set(p.sig, sg.mac(method, path, q, p))
	return exp
}

// check verifies the signature and the expiry.
func (sg *signer) check(method, path string, q url.Values, p params) error {
	got := q.Get(p.sig)
	if got == "" || !hmac.Equal([]byte(got), []byte(sg.mac(method, path, q, p))) {
		return errURLBadSig
	}
	exp, err1 := strconv.ParseInt(q.Get(p.exp), 10, 64)
	iat, err2 := strconv.ParseInt(q.Get("iat"), 10, 64)
	if err1 != nil || err2 != nil {
		return errURLBadSig
	}
	sg.mu.Lock()
	revoked := iat < sg.revokedBefore
	sg.mu.Unlock()
	if revoked || !sg.now().Before(time.Unix(exp, 0)) {
		return errURLExpired
	}
	return nil
}

// revokeAll expires every URL issued so far.
func (sg *signer) revokeAll() {
	sg.mu.Lock()
	sg.revokedBefore = sg.lastIssued + 1
	sg.mu.Unlock()
}

func (sg *signer) mac(method, path string, q url.Values, p params) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != p.sig {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(method + "\n" + path + "\n")
	for _, k := range keys {
		for _, v := range q[k] {
			b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v) + "\n")
		}
	}
	m := hmac.New(sha256.New, sg.key)
	m.Write([]byte(b.String()))
	return hex.EncodeToString(m.Sum(nil))
}
