package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// devhubOptions are the flags of `hubsync devhub`.
type devhubOptions struct {
	Addr               string
	StorageAddr        string
	DataDir            string
	Tokens             []string
	Faults             string
	URLTTL             time.Duration
	MultipartThreshold string
	ChunkSize          string
	MinPartSize        string
	PageSize           int
	RateLimit          int
	VerifyAction       bool
	Xet                bool
}

func newDevhubCommand(g *globalOptions) *cobra.Command {
	o := &devhubOptions{}
	cmd := &cobra.Command{
		Use:   "devhub",
		Short: "Run a local Hugging Face Hub-compatible server (tests, CI, offline use)",
		Long: `devhub serves a local Hub-compatible API (repos, branches, tags, preupload, LFS batch, signed
storage URLs with multipart uploads, NDJSON commits, resolve downloads, tree/info/commits listings) with its
state on disk. Point a client at it with HF_ENDPOINT=<printed URL>.

Storage (presigned PUTs, multipart parts, LFS downloads) listens on a second address, like S3 beside
huggingface.co; a request that carries an Authorization header to a storage or completion URL is refused
with 400 and counted as a token leak in GET /_devhub/stats.

Tokens: --token NAME=TOKEN[:write][:orgs=A+B] (repeatable); NAME is the user the token belongs to and the
namespace it owns. Without --token, devhub generates a write token for user "dev" that may write to every
namespace and prints it ("devhub: token dev=..."); with --data it is kept in DIR/devhub-token (mode 0600) and
the same token is used after a restart. This is the one place hubsync prints a token:
it is the local server's own generated credential, valid only for this server, never a Hub token.

Faults (for testing clients): --faults "part-5xx=0.1,part-reset=0.05,put-5xx=0.05,rate-limit=0.05,
commit-lost=0.1,batch-error=0.02,complete-5xx=0.05,seed=1"; with --xet also xet-5xx (xorb and shard
uploads) and xorb-reset.

Xet (--xet): CAS tokens at /api/{type}s/{repo}/xet-{read,write}-token/{rev}, LFS batch answers with
transfer "xet" to clients that offer it, and a Xet CAS (xorbs, shards, chunk dedup queries,
reconstructions) on a third listener that accepts CAS tokens only (a Hub token there is refused and
counted as a leak). Files uploaded through Xet become ordinary LFS objects; /resolve/ adds X-Xet-Hash and
Link headers for them.

On start it prints, one per line:
  devhub: listening on <API URL>
  devhub: storage on <storage URL>
  devhub: xet cas on <CAS URL>     (with --xet)
  devhub: data in <dir>
and serves until interrupted (SIGINT/SIGTERM), then exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDevhub(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "127.0.0.1:8089", "API listen address")
	f.StringVar(&o.StorageAddr, "storage-addr", "127.0.0.1:0", "storage listen address (fix it to keep signed URLs valid across restarts)")
	f.StringVar(&o.DataDir, "data", "", "data directory; repos survive restarts (default: a temporary directory removed at exit)")
	f.StringArrayVar(&o.Tokens, "token", nil, "accepted token NAME=TOKEN[:write][:orgs=A+B] (repeatable; default: a generated write token for user dev)")
	f.StringVar(&o.Faults, "faults", "", "probabilistic faults, e.g. part-5xx=0.1,part-reset=0.05,rate-limit=0.05,commit-lost=0.1,seed=1")
	f.DurationVar(&o.URLTTL, "url-ttl", hubtest.DefaultURLTTL, "validity of signed storage and completion URLs")
	f.StringVar(&o.MultipartThreshold, "multipart-threshold", "8MiB", "objects of at least this size are uploaded in parts")
	f.StringVar(&o.ChunkSize, "chunk-size", "", "multipart part size (default: the minimum part size, raised to keep ≤ 10000 parts)")
	f.StringVar(&o.MinPartSize, "min-part-size", "5MiB", "minimum size of every part but the last (S3: 5MiB)")
	f.IntVar(&o.PageSize, "page-size", hubtest.DefaultPageSize, "entries per page of tree and commit listings")
	f.IntVar(&o.RateLimit, "rate-limit", hubtest.DefaultRateLimitQuota, "requests per token and bucket per 5-minute window")
	f.BoolVar(&o.VerifyAction, "verify-action", false, "add a git-lfs verify action to upload answers")
	f.BoolVar(&o.Xet, "xet", false, "serve Xet storage: CAS token routes, batch transfer \"xet\" and a CAS on its own listener")
	return cmd
}

// options turns the flags into server options.
func (o *devhubOptions) options() (hubtest.Options, []string, error) {
	opts := hubtest.Options{
		DataDir: o.DataDir, StorageAddr: o.StorageAddr, URLTTL: o.URLTTL, PageSize: o.PageSize,
		RateLimitQuota: o.RateLimit, VerifyAction: o.VerifyAction, Xet: o.Xet,
	}
	if o.URLTTL <= 0 {
		return opts, nil, usagef("--url-ttl must be positive")
	}
	if o.PageSize <= 0 || o.RateLimit <= 0 {
		return opts, nil, usagef("--page-size and --rate-limit must be positive")
	}
	sizes := []struct {
		flag, val string
		dst       *int64
	}{
		{"--multipart-threshold", o.MultipartThreshold, &opts.MultipartThreshold},
		{"--chunk-size", o.ChunkSize, &opts.ChunkSize},
		{"--min-part-size", o.MinPartSize, &opts.MinPartSize},
	}
	for _, s := range sizes {
		if s.val == "" {
			continue
		}
		n, err := hubtest.ParseByteSize(s.val)
		if err != nil {
			return opts, nil, usagef("%s: %v", s.flag, err)
		}
		if n <= 0 {
			return opts, nil, usagef("%s must be positive", s.flag)
		}
		*s.dst = n
	}
	faults, err := hubtest.ParseFaults(o.Faults)
	if err != nil {
		return opts, nil, usagef("--faults: %v", err)
	}
	opts.Faults = faults
	var notes []string
	for _, t := range o.Tokens {
		tok, err := hubtest.ParseTokenFlag(t)
		if err != nil {
			return opts, nil, usagef("--token: %v", err)
		}
		opts.Tokens = append(opts.Tokens, tok)
	}
	if len(opts.Tokens) == 0 {
		value, err := devhubToken(o.DataDir)
		if err != nil {
			return opts, nil, err
		}
		tok := hubtest.Token{Name: "dev", Value: value, Write: true, Orgs: []string{"*"}}
		opts.Tokens = append(opts.Tokens, tok)
		// The server's own throwaway credential, printed once on purpose (see the help text).
		notes = append(notes, fmt.Sprintf("devhub: token %s=%s", tok.Name, tok.Value))
	}
	return opts, notes, nil
}

// devhubTokenFile is the file in --data that keeps the generated token across restarts.
const devhubTokenFile = "devhub-token"

// devhubToken returns the generated token of user dev: a new random one, kept in dataDir/devhub-token (mode 0600)
// when there is a data directory, so a restart on the same --data accepts the clients configured before.
func devhubToken(dataDir string) (string, error) {
	var p string
	if dataDir != "" {
		p = filepath.Join(dataDir, devhubTokenFile)
		b, err := os.ReadFile(p)
		if err == nil {
			tok := strings.TrimSpace(string(b))
			if !devhubTokenPattern.MatchString(tok) {
				return "", fmt.Errorf("devhub: %s does not hold a devhub token (delete it to generate a new one)", p)
			}
			return tok, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("devhub: %w", err)
		}
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "hf_dev_" + hex.EncodeToString(b)
	if p == "" {
		return tok, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("devhub: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.WriteString(tok + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(p)
		return "", fmt.Errorf("devhub: keeping the generated token: %w", err)
	}
	return tok, nil
}

// devhubTokenPattern is the form of a generated token.
var devhubTokenPattern = regexp.MustCompile(`^hf_dev_[0-9a-f]{32}$`)

func runDevhub(cmd *cobra.Command, g *globalOptions, o *devhubOptions) error {
	opts, notes, err := o.options()
	if err != nil {
		return err
	}
	opts.Logger = g.log
	srv, err := hubtest.NewServer(opts)
	if err != nil {
		return fmt.Errorf("devhub: %w", err)
	}
	if err := srv.Start(o.Addr); err != nil {
		srv.Close()
		return fmt.Errorf("devhub: %w", err)
	}
	fmt.Fprintf(g.stdout, "devhub: listening on %s\n", srv.URL())
	fmt.Fprintf(g.stdout, "devhub: storage on %s\n", srv.StorageURL())
	if o.Xet {
		fmt.Fprintf(g.stdout, "devhub: xet cas on %s\n", srv.CASURL())
	}
	fmt.Fprintf(g.stdout, "devhub: data in %s\n", srv.DataDir())
	for _, n := range notes {
		fmt.Fprintln(g.stdout, n)
	}
	<-cmd.Context().Done()
	fmt.Fprintln(g.stdout, "devhub: shutting down")
	if err := srv.Close(); err != nil {
		return fmt.Errorf("devhub: %w", err)
	}
	return nil
}
