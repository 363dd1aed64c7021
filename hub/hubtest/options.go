package hubtest

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/internal/units"
)

// Defaults applied by NewServer to zero-valued Options fields.
const (
	// DefaultMultipartThreshold is the object size from which the batch endpoint hands out a multipart
	// transfer. The real Hub's threshold is not documented; 8 MiB makes a dev server exercise multipart
	// with modest files (a repo may override it with "lfsmultipartthresh" at creation).
	DefaultMultipartThreshold int64 = 8 << 20
	// DefaultMinPartSize is S3's minimum size of every part but the last.
	DefaultMinPartSize int64 = 5 << 20
	// DefaultURLTTL is how long signed storage and completion URLs stay valid.
	DefaultURLTTL = time.Hour
	// DefaultPageSize is the number of entries per tree or commit listing page.
	DefaultPageSize = 50
	// DefaultRateLimitQuota is the number of requests per token and bucket in each 5-minute window.
	DefaultRateLimitQuota = 100_000
	// MaxParts is S3's limit on the number of parts of one multipart upload.
	MaxParts = 10_000
	// MaxPreuploadFiles is the number of paths one preupload call may carry.
	MaxPreuploadFiles = 256
	// MaxPathsInfo is the number of paths one paths-info call may carry.
	MaxPathsInfo = 1000
	// MaxBatchObjects is the number of objects one LFS batch call may carry.
	MaxBatchObjects = 1000
	// MaxRegularFileSize is the largest file a commit may carry inline (regular, non-LFS).
	MaxRegularFileSize = 10 << 20
	// RateLimitWindow is the fixed window of the rate limiter, as on the Hub.
	RateLimitWindow = 5 * time.Minute
)

// Options configure a Server. The zero value is usable: a temporary data directory, no tokens (every request
// is an anonymous read), the defaults above.
type Options struct {
	// DataDir holds repositories, LFS objects and in-flight uploads; they survive a restart.
	// Empty means a temporary directory that Close removes.
	DataDir string
	// Tokens are the accepted tokens. None means every request is an anonymous read.
	Tokens []Token
	// MultipartThreshold: objects of at least this size get the multipart transfer (default 8 MiB).
	MultipartThreshold int64
	// ChunkSize is the multipart part size; the server uses max(ChunkSize, ceil(size/10000)).
	// Default: MinPartSize.
	ChunkSize int64
	// MinPartSize is the minimum size of every part but the last, checked at completion (default 5 MiB).
	MinPartSize int64
	// URLTTL is the validity of signed storage and completion URLs (default 1h).
	URLTTL time.Duration
	// PageSize is the tree and commit listing page size (default 50).
	PageSize int
	// RateLimitQuota is the number of requests per token (or anonymous client) and bucket ("api",
	// "resolvers") in each 5-minute window; beyond it the server answers 429 (default 100000).
	RateLimitQuota int
	// VerifyAction adds a git-lfs "verify" action to upload answers.
	VerifyAction bool
	// StorageAddr is the storage listener's address (default 127.0.0.1:0). Fix it to keep signed
	// URLs valid across a restart on the same DataDir.
	StorageAddr string
	// Xet serves the Xet protocol: CAS token routes, batch answers with transfer "xet" when the client
	// offers it, and a CAS on its own listener (CASAddr). Files uploaded through Xet become LFS objects.
	Xet bool
	// CASAddr is the Xet CAS listener's address (default 127.0.0.1:0); used only with Xet.
	CASAddr string
	// XetTokenTTL is the validity of CAS tokens (default DefaultXetTokenTTL).
	XetTokenTTL time.Duration
	// Faults are probabilistic faults; see also Server.InjectFault.
	Faults Faults
	// Logger receives one debug line per request; the zero value logs nothing.
	Logger zerolog.Logger
	// Now is the clock used for URL expiry, dates and rate-limit windows (default time.Now).
	Now func() time.Time
}

// Token is an accepted access token. Its Name is the user the token belongs to (the namespace it owns).
type Token struct {
	Name  string
	Value string
	Write bool
	// Orgs are further namespaces the user belongs to; "*" means every namespace.
	Orgs []string
}

// String describes the token without its secret value.
func (t Token) String() string {
	role := "read"
	if t.Write {
		role = "write"
	}
	return fmt.Sprintf("%s (%s)", t.Name, role)
}

// ParseTokenFlag parses "NAME=TOKEN[:write][:orgs=A+B]" (orgs separated by "+", "*" = every namespace).
func ParseTokenFlag(s string) (Token, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Token{}, errors.New("token flag: want NAME=TOKEN[:write][:orgs=A+B]")
	}
	if !validNamespace(name) {
		return Token{}, fmt.Errorf("token flag: invalid user name %q", name)
	}
	parts := strings.Split(rest, ":")
	t := Token{Name: name, Value: parts[0]}
	if t.Value == "" {
		return Token{}, fmt.Errorf("token flag for %s: empty token", name)
	}
	for _, c := range t.Value {
		if c <= ' ' || c > '~' {
			return Token{}, fmt.Errorf("token flag for %s: token must be printable ASCII without spaces", name)
		}
	}
	for _, opt := range parts[1:] {
		switch {
		case opt == "write":
			t.Write = true
		case opt == "read":
			t.Write = false
		case strings.HasPrefix(opt, "orgs="):
			for _, o := range strings.Split(strings.TrimPrefix(opt, "orgs="), "+") {
				if o != "*" && !validNamespace(o) {
					return Token{}, fmt.Errorf("token flag for %s: invalid org %q", name, o)
				}
				t.Orgs = append(t.Orgs, o)
			}
		default:
			return Token{}, fmt.Errorf("token flag for %s: unknown option %q (want write, read or orgs=A+B)", name, opt)
		}
	}
	return t, nil
}

// ParseByteSize parses a size such as "8MiB", "5MB", "1.5GiB" or "1024" (bytes), as every hubsync flag does
// (units.ParseBytes).
func ParseByteSize(s string) (int64, error) { return units.ParseBytes(s) }

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.MinPartSize <= 0 {
		o.MinPartSize = DefaultMinPartSize
	}
	if o.MultipartThreshold <= 0 {
		o.MultipartThreshold = DefaultMultipartThreshold
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = o.MinPartSize
	}
	if o.URLTTL <= 0 {
		o.URLTTL = DefaultURLTTL
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.RateLimitQuota <= 0 {
		o.RateLimitQuota = DefaultRateLimitQuota
	}
	if o.StorageAddr == "" {
		o.StorageAddr = "127.0.0.1:0"
	}
	if o.CASAddr == "" {
		o.CASAddr = "127.0.0.1:0"
	}
	if o.XetTokenTTL <= 0 {
		o.XetTokenTTL = DefaultXetTokenTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
