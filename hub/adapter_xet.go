package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/hubsync/hubsync/internal/xet"
)

// xetAdapter is the "xet" transfer: the object is chunked (content-defined), chunks the session, the shard cache
// or the CAS's global dedup index already know are referenced, the others are packed into xorbs and POSTed to
// the CAS, and one shard describing the file is POSTed last. Only the CAS token goes to the CAS.
type xetAdapter struct{ c *Client }

func (xetAdapter) name() string { return TransferXet }

// Xet upload limits.
const (
	// xetDedupQueryEvery is the least file bytes between two global dedup queries (the reference clients' 4 MB).
	xetDedupQueryEvery = 4 << 20
	// xetXorbsInFlight bounds the xorbs (≤ 64 MiB each) being compressed and sent at once per file.
	xetXorbsInFlight = 2
	// xetMaxTokenRefreshes bounds how often one request gets a fresh CAS token after a 401.
	xetMaxTokenRefreshes = 2
	// xetCacheMaxShards bounds how many cached shards a session loads (newest first); older ones are removed.
	xetCacheMaxShards = 256
)

// chunkLoc is where a known chunk lives: chunk idx of xorb.
type chunkLoc struct {
	xorb *xorbRef
	idx  uint32
}

// xorbRef is a xorb a file reconstruction refers to; hash is set once the xorb is complete. cached marks a xorb
// known only from the on-disk shard cache, which the CAS may no longer hold.
type xorbRef struct {
	hash   xet.Hash
	cached bool
}

// xetStats counts what a session's Xet uploads did (for logs and the dedup figures).
type xetStats struct {
	FileBytes    atomic.Int64 // bytes of the files chunked
	DedupedBytes atomic.Int64 // of those, bytes found already stored (session, cache or CAS)
	XorbBytes    atomic.Int64 // serialized xorb bytes POSTed
	ShardBytes   atomic.Int64 // shard bytes POSTed
	XorbsSkipped atomic.Int64 // xorbs not sent again because the journal says the CAS acknowledged them
	Queries      atomic.Int64 // global dedup queries
}

// xetSession is the state Xet uploads of one queue share: CAS tokens per refresh URL, the chunks of xorbs the
// CAS acknowledged (and of the shard cache), and the indexes the global dedup answers gave.
type xetSession struct {
	c        *Client
	cacheDir string // "" = no shard cache

	mu     sync.Mutex
	tokens map[string]*xetTokens
	known  map[xet.Hash]chunkLoc              // chunk hash → acknowledged location
	hmaced map[xet.Hash]map[xet.Hash]chunkLoc // HMAC key → HMAC'd chunk hash → location
	loaded sync.Once
	stats  xetStats
}

func newXetSession(c *Client) *xetSession {
	return &xetSession{c: c, cacheDir: c.xetCacheDir, tokens: map[string]*xetTokens{}, known: map[xet.Hash]chunkLoc{},
		hmaced: map[xet.Hash]map[xet.Hash]chunkLoc{}}
}

// tokensFor returns the token source of a batch action (shared by the objects of one repo and revision).
func (s *xetSession) tokensFor(repo, revision string, p *uploadPlan) *xetTokens {
	href := p.href
	if href == "" {
		href = s.c.xetWriteTokenURL(repo, revision)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[href]; ok {
		return t
	}
	t := s.c.newXetTokens(href, p.header)
	s.tokens[href] = t
	return t
}

// lookup finds a stored location of chunk h.
func (s *xetSession) lookup(h xet.Hash) (chunkLoc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.known[h]; ok {
		return l, true
	}
	for key, m := range s.hmaced {
		if l, ok := m[xet.HMAC(key, h)]; ok {
			return l, true
		}
	}
	return chunkLoc{}, false
}

// learn records the chunks of CAS-info entries as stored (a shard the CAS accepted, a cached or a dedup shard).
func (s *xetSession) learn(key xet.Hash, cas []xet.CASInfo) { s.learnFrom(key, cas, false) }

// learnFrom is learn; cached says the entries come from the shard cache.
func (s *xetSession) learnFrom(key xet.Hash, cas []xet.CASInfo, cached bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.known
	if !key.IsZero() {
		if s.hmaced[key] == nil {
			s.hmaced[key] = map[xet.Hash]chunkLoc{}
		}
		m = s.hmaced[key]
	}
	for _, ci := range cas {
		x := &xorbRef{hash: ci.Xorb, cached: cached}
		for i, ch := range ci.Chunks {
			if _, ok := m[ch.Hash]; !ok {
				m[ch.Hash] = chunkLoc{xorb: x, idx: uint32(i)}
			}
		}
	}
}

// shardCacheDir is where this CAS's shards are cached.
func (s *xetSession) shardCacheDir(casURL string) string {
	if s.cacheDir == "" {
		return ""
	}
	h := sha256.Sum256([]byte(casURL))
	return filepath.Join(s.cacheDir, "hubsync-shard-cache", hex.EncodeToString(h[:8]))
}

// loadCache learns the cached shards of the CAS (once per session; a damaged file is skipped).
func (s *xetSession) loadCache(casURL string) {
	s.loaded.Do(func() {
		dir := s.shardCacheDir(casURL)
		if dir == "" {
			return
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		type f struct {
			name string
			mod  int64
		}
		var fs []f
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".shard") || !e.Type().IsRegular() {
				continue
			}
			if info, err := e.Info(); err == nil {
				fs = append(fs, f{e.Name(), info.ModTime().UnixNano()})
			}
		}
		sort.Slice(fs, func(i, j int) bool { return fs[i].mod > fs[j].mod })
		for i, e := range fs {
			if i >= xetCacheMaxShards {
				_ = os.Remove(filepath.Join(dir, e.name)) // the cache keeps the newest shards only
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.name))
			if err != nil {
				continue
			}
			sh, err := xet.ParseShard(b)
			if err != nil {
				s.c.log.Debug().Str("file", e.name).Err(err).Msg("skipping a damaged cached Xet shard")
				continue
			}
			s.learnFrom(xet.Hash{}, sh.CAS, true)
		}
	})
}

// dropCache forgets the chunks learned from the shard cache and deletes the cache of this CAS: the CAS refused
// a shard that referred to them (it no longer holds those xorbs, e.g. a devhub restarted without its data).
func (s *xetSession) dropCache(casURL string) {
	s.mu.Lock()
	for h, l := range s.known {
		if l.xorb.cached {
			delete(s.known, h)
		}
	}
	s.mu.Unlock()
	if dir := s.shardCacheDir(casURL); dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			s.c.log.Debug().Err(err).Msg("Xet shard cache")
		}
	}
}

// storeShard writes an accepted shard to the cache (best effort: a failure costs only dedup next time).
func (s *xetSession) storeShard(casURL string, sh *xet.Shard, body []byte) {
	dir := s.shardCacheDir(casURL)
	if dir == "" || len(sh.CAS) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.c.log.Debug().Err(err).Msg("Xet shard cache")
		return
	}
	name := sh.CAS[0].Xorb.String() + ".shard"
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(body)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), filepath.Join(dir, name)) != nil {
		_ = os.Remove(tmp.Name())
	}
}

// casCall sends one CAS request with the CAS token (never the Hub token), getting a fresh token when the CAS
// answers 401.
func (c *Client) casCall(ctx context.Context, tokens *xetTokens, cl func(casURL string) call) (*reply, error) {
	for refresh := 0; ; refresh++ {
		tok, err := tokens.get(ctx)
		if err != nil {
			return nil, err
		}
		k := cl(tok.casURL)
		k.auth = false
		k.bearer = func() (string, error) { return tok.token, nil }
		r, err := c.send(ctx, k)
		if err != nil && errors.Is(err, ErrUnauthorized) && refresh < xetMaxTokenRefreshes {
			c.log.Info().Err(err).Msg("the Xet CAS refused its token; getting a fresh one")
			tokens.invalidate(tok.token)
			continue
		}
		return r, err
	}
}

// pendingXorb collects the raw chunks of a xorb being filled.
type pendingXorb struct {
	ref  *xorbRef
	refs []xet.ChunkRef
	data []byte // the chunks' bytes, concatenated
}

// xorbOverheadPerChunk bounds what a chunk adds to a serialized xorb beyond its stored bytes (8-byte header and
// footer entries), and xorbOverheadFixed the footer's fixed part, so that raw chunks that fit are sure to fit
// once compressed (a chunk is stored raw when compression does not make it smaller).
const (
	xorbOverheadPerChunk = 8 + 48
	xorbOverheadFixed    = 4 << 10
)

// fits reports whether a chunk of n bytes still fits into the xorb under limit serialized bytes.
func (p *pendingXorb) fits(n, limit int) bool {
	if len(p.refs) == 0 {
		return true
	}
	if len(p.refs)+1 > xet.MaxXorbChunks {
		return false
	}
	return len(p.data)+n+(len(p.refs)+1)*xorbOverheadPerChunk+xorbOverheadFixed <= limit
}

// send chunks the object, uploads the xorbs holding its new chunks (skipping those the journal says the CAS
// acknowledged), then its shard.
func (a xetAdapter) send(ctx context.Context, t *objectTransfer) error {
	usedCache, err := a.sendOnce(ctx, t)
	var he *HTTPError
	if err != nil && usedCache && errors.As(err, &he) && he.Status == http.StatusBadRequest && ctx.Err() == nil {
		// The CAS refused the shard, which referred to xorbs known only from the shard cache: the cache is
		// stale for this CAS. Forget it and send the file once more, deduplicating against what the CAS holds.
		tok, terr := t.xet.tokensFor(t.repo, t.revision, t.plan).get(ctx)
		if terr != nil {
			return err
		}
		a.c.log.Warn().Str("file", t.f.path).Err(err).Msg("the Xet CAS refused a shard built from the shard cache; dropping the cache and sending the file again")
		t.xet.dropCache(tok.casURL)
		t.budgets = &partBudgets{m: map[int]*attemptBudget{}}
		t.prog.add(-t.prog.done.Load())
		_, err = a.sendOnce(ctx, t)
	}
	return err
}

// sendOnce uploads the file through Xet; usedCache reports whether its shard referred to chunks known only from
// the shard cache.
func (a xetAdapter) sendOnce(ctx context.Context, t *objectTransfer) (usedCache bool, err error) {
	c, f, s := a.c, t.f, t.xet
	tokens := s.tokensFor(t.repo, t.revision, t.plan)
	tok, err := tokens.get(ctx)
	if err != nil {
		return usedCache, err
	}
	s.loadCache(tok.casURL)
	oj := t.journal.xet()
	acked, err := oj.startXet(ctx, t)
	if err != nil {
		return usedCache, err
	}

	src, err := openSource(f)
	if err != nil {
		return usedCache, err
	}
	defer src.Close()
	r, stop := src.reader(ctx, f.size)
	defer stop()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(xetXorbsInFlight)
	var (
		mu       sync.Mutex
		casInfos []xet.CASInfo // index n-1: the CAS info of xorb n
		nXorb    int
	)
	own := map[xet.Hash]chunkLoc{} // chunks of this file's own xorbs (pending or sent)
	type placed struct {
		ref xet.ChunkRef
		loc chunkLoc
	}
	var placements []placed // every chunk of the file, in order
	cur := &pendingXorb{ref: &xorbRef{}}
	sum := sha256.New()
	var sinceQuery int64 = xetDedupQueryEvery // the first chunk is always eligible
	var deduped int64                         // bytes of the file found already stored
	var sentBytes atomic.Int64                // xorb bytes sent for the file
	var done int64

	// flush closes the current xorb: its hash is known at once (from the chunk hashes); compression and the
	// POST run in the errgroup, while chunking goes on.
	flush := func() error {
		if len(cur.refs) == 0 {
			return nil
		}
		x := cur
		cur = &pendingXorb{ref: &xorbRef{}}
		x.ref.hash = xet.XorbHash(x.refs)
		nXorb++
		n := nXorb
		mu.Lock()
		casInfos = append(casInfos, xet.CASInfo{})
		mu.Unlock()
		skip := acked[x.ref.hash.String()]
		g.Go(func() error {
			b := xet.NewXorbBuilder()
			off := 0
			for _, ref := range x.refs {
				if _, err := b.AddHashedChunk(ref, x.data[off:off+int(ref.Len)]); err != nil {
					return fmt.Errorf("packing xorb %d: %w", n, err)
				}
				off += int(ref.Len)
			}
			ci := b.CASInfo()
			mu.Lock()
			casInfos[n-1] = ci
			mu.Unlock()
			if skip {
				s.stats.XorbsSkipped.Add(1)
				return nil
			}
			body := b.Serialize()
			if err := c.putXorb(gctx, tokens, x.ref.hash, body, t.budgets.get(n)); err != nil {
				return err
			}
			s.stats.XorbBytes.Add(int64(len(body)))
			sentBytes.Add(int64(len(body)))
			return oj.part(ctx, n, x.ref.hash.String())
		})
		return nil
	}
	first := true
	err = xet.Split(gctx, io.TeeReader(r, sum), func(chunk []byte, ref xet.ChunkRef) error {
		sinceQuery += int64(ref.Len)
		l, ok := own[ref.Hash]
		if !ok {
			l, ok = s.lookup(ref.Hash)
		}
		if !ok && (first || xet.GlobalDedupEligible(ref.Hash)) && sinceQuery >= xetDedupQueryEvery {
			sinceQuery = 0
			if err := c.queryDedup(gctx, s, tokens, ref.Hash); err != nil {
				return err
			}
			l, ok = s.lookup(ref.Hash)
		}
		first = false
		if ok {
			s.stats.DedupedBytes.Add(int64(ref.Len))
			deduped += int64(ref.Len)
		} else {
			if !cur.fits(len(chunk), c.xetXorbLimit) {
				if err := flush(); err != nil {
					return err
				}
			}
			l = chunkLoc{xorb: cur.ref, idx: uint32(len(cur.refs))}
			cur.refs = append(cur.refs, ref)
			cur.data = append(cur.data, chunk...)
			own[ref.Hash] = l
		}
		placements = append(placements, placed{ref, l})
		done += int64(ref.Len)
		t.prog.add(int64(ref.Len))
		return nil
	})
	if err == nil {
		err = flush()
	}
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return usedCache, err
	}
	s.stats.FileBytes.Add(done)
	if done != f.size {
		return usedCache, fmt.Errorf("%s: read %d bytes, expected %d", f.name(), done, f.size)
	}
	var digest [32]byte
	sum.Sum(digest[:0])
	if hex.EncodeToString(digest[:]) != f.sha256 {
		return usedCache, fmt.Errorf("%s: %w (sha256 %x, hashed as %s)", f.name(), ErrContentChanged, digest, f.sha256)
	}

	cps := make([]xet.ChunkPlacement, len(placements))
	for i, p := range placements {
		cps[i] = xet.ChunkPlacement{Ref: p.ref, Xorb: p.loc.xorb.hash, Index: p.loc.idx}
		usedCache = usedCache || p.loc.xorb.cached
	}
	fi := xet.BuildFileInfo(cps, xetSHA256Field(digest))
	sh := &xet.Shard{Files: []xet.FileInfo{fi}, CAS: casInfos}
	body := sh.Marshal(false)
	if err := c.putShard(ctx, tokens, body, t.budgets.get(0)); err != nil {
		return usedCache, err
	}
	s.stats.ShardBytes.Add(int64(len(body)))
	s.learn(xet.Hash{}, casInfos)
	s.storeShard(tok.casURL, sh, body)
	c.log.Info().Str("file", f.path).Int64("size", f.size).Int64("deduplicated", deduped).
		Int64("sent", sentBytes.Load()+int64(len(body))).Int("xorbs", len(casInfos)).Int("terms", len(fi.Terms)).
		Msg("uploaded through Xet")
	return usedCache, oj.drop(ctx)
}

// putXorb POSTs one serialized xorb.
func (c *Client) putXorb(ctx context.Context, tokens *xetTokens, h xet.Hash, body []byte, budget *attemptBudget) error {
	_, err := c.casCall(ctx, tokens, func(cas string) call {
		return call{method: "POST", url: cas + "/v1/xorbs/default/" + h.String(), body: jsonBody(body), budget: budget,
			headers: map[string]string{"Content-Type": "application/octet-stream"}}
	})
	if err != nil {
		return fmt.Errorf("uploading xorb %s: %w", h, err)
	}
	return nil
}

// putShard POSTs the file's shard (after every xorb it introduces is stored).
func (c *Client) putShard(ctx context.Context, tokens *xetTokens, body []byte, budget *attemptBudget) error {
	r, err := c.casCall(ctx, tokens, func(cas string) call {
		return call{method: "POST", url: cas + "/v1/shards", body: jsonBody(body), budget: budget,
			headers: map[string]string{"Content-Type": "application/octet-stream"}}
	})
	if err != nil {
		return fmt.Errorf("uploading the Xet shard: %w", err)
	}
	var a struct {
		Result *int `json:"result"`
	}
	if err := json.Unmarshal(r.body, &a); err != nil || a.Result == nil {
		return fmt.Errorf("uploading the Xet shard: unexpected answer %q", truncate(string(r.body), 80))
	}
	return nil
}

// queryDedup asks the CAS's global dedup index about chunk h and learns the answer's (HMAC'd) chunks.
func (c *Client) queryDedup(ctx context.Context, s *xetSession, tokens *xetTokens, h xet.Hash) error {
	s.stats.Queries.Add(1)
	r, err := c.casCall(ctx, tokens, func(cas string) call {
		return call{method: "GET", url: cas + "/v1/chunks/default/" + h.String(), ok: []int{404}}
	})
	if err != nil {
		return fmt.Errorf("Xet global dedup query: %w", err)
	}
	if r.status == 404 {
		return nil
	}
	sh, err := xet.ParseShard(r.body)
	if err != nil {
		// A bad answer only costs dedup.
		c.log.Debug().Err(err).Msg("ignoring an unreadable Xet dedup answer")
		return nil
	}
	s.learn(sh.HMACKey, sh.CAS)
	return nil
}

// reader returns the object's n bytes as one stream (a ContentFunc feeds a pipe from a goroutine); stop ends it
// and waits for the producer.
func (s *source) reader(ctx context.Context, n int64) (io.Reader, func()) {
	if s.fh != nil {
		return io.NewSectionReader(s.fh, 0, n), func() {}
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(s.f.Content(ctx, 0, n, pw)) // nil closes with EOF
	}()
	return pr, func() { pr.CloseWithError(errAttemptOver); <-done }
}

// xetSHA256Field is a sha256 digest as a shard's metadata extension carries it: the official clients write it
// like every Xet hash, through the Xet hex form (each 8-byte group reversed); devhub reads it so too.
func xetSHA256Field(sum [32]byte) [32]byte {
	h, _ := xet.ParseHash(hex.EncodeToString(sum[:])) // 64 hex digits: cannot fail
	return h
}
