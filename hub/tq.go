package hub

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// The upload side is built like git-lfs's tq/: a transfer queue (transferQueue) owns batching, fresh batch
// answers, the retry budgets (one per object part, across every batch answer), progress and the journal;
// adapters (transferAdapter) only move bytes, and are registered by their LFS transfer name and chosen from the
// batch answer's "transfer" field and the object's actions. docs/transfer.md describes it.

// The transfer names of the LFS batch protocol.
const (
	TransferBasic     = "basic"
	TransferMultipart = "multipart"
	TransferXet       = "xet"
)

// transferAdapter moves one object's bytes the way its plan says.
type transferAdapter interface {
	// name is the adapter's transfer name ("basic", "multipart", "xet").
	name() string
	// send moves t's bytes. A *rebatchError asks the queue for a fresh batch answer for the object; any other
	// error ends the object's upload.
	send(ctx context.Context, t *objectTransfer) error
}

// objectTransfer is one object's upload as the queue hands it to an adapter.
type objectTransfer struct {
	repo     string
	revision string
	f        *preparedFile
	plan     *uploadPlan
	prog     *fileProgress
	budgets  *partBudgets   // one attempt budget per part (0: a single PUT), kept across batch answers
	etags    map[int]string // multipart: the parts already stored (from the journal or an earlier answer)
	journal  *objectJournal
	xet      *xetSession // the queue's Xet state (nil when the xet adapter is not registered)
}

// objectJournal is the queue's journal of one object's upload, handed to adapters that journal progress. It is
// a no-op without a Journal.
type objectJournal struct {
	j         Journal
	key       string
	journaled bool // the current plan's record is in the journal
}

// start records plan p (with the parts in etags) unless it is already journaled.
func (oj *objectJournal) start(ctx context.Context, t *objectTransfer) error {
	if oj.j == nil || oj.journaled {
		return nil
	}
	p := t.plan
	err := oj.j.Put(ctx, &UploadRecord{
		Key: oj.key, Repo: t.repo, OID: t.f.sha256, Size: t.f.size, CompletionURL: p.href, ChunkSize: p.chunkSize,
		PartURLs: p.partURLs, Verify: p.verify, ObtainedAt: time.Now().UTC(), ExpiresAt: p.expiresAt,
	})
	if err != nil {
		return err
	}
	for n, etag := range t.etags {
		if err := oj.j.PutPart(ctx, oj.key, n, etag); err != nil {
			return err
		}
	}
	oj.journaled = true
	return nil
}

// part durably records that part n is stored with etag. It runs even when the upload's context is cancelled:
// a stored part is recorded whatever its siblings did.
func (oj *objectJournal) part(ctx context.Context, n int, etag string) error {
	if oj.j == nil {
		return nil
	}
	return oj.j.PutPart(context.WithoutCancel(ctx), oj.key, n, etag)
}

// xet returns the journal of the object's Xet upload: its own record, whose "parts" are the acknowledged xorbs
// (sequence number → xorb hash), apart from the multipart record of the same object.
func (oj *objectJournal) xet() *objectJournal { return &objectJournal{j: oj.j, key: oj.key + " xet"} }

// startXet returns the xorbs a previous run journaled as acknowledged for this object, and records the upload.
func (oj *objectJournal) startXet(ctx context.Context, t *objectTransfer) (map[string]bool, error) {
	acked := map[string]bool{}
	if oj.j == nil {
		return acked, nil
	}
	rec, err := oj.j.Get(ctx, oj.key)
	if err != nil {
		return nil, err
	}
	if rec != nil && rec.OID == t.f.sha256 && rec.Size == t.f.size {
		for _, h := range rec.ETags {
			acked[h] = true
		}
		oj.journaled = true
		return acked, nil
	}
	err = oj.j.Put(ctx, &UploadRecord{Key: oj.key, Repo: t.repo, OID: t.f.sha256, Size: t.f.size,
		CompletionURL: TransferXet, ObtainedAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	oj.journaled = true
	return acked, nil
}

// drop forgets the object's record (the upload is done, or no longer resumable with what was recorded).
func (oj *objectJournal) drop(ctx context.Context) error {
	oj.journaled = false
	if oj.j == nil {
		return nil
	}
	return oj.j.Delete(ctx, oj.key)
}

// adapters returns the client's adapter registry, by transfer name.
func (c *Client) registerAdapters() map[string]transferAdapter {
	m := map[string]transferAdapter{}
	list := []transferAdapter{basicAdapter{c}, multipartAdapter{c}}
	if c.xetMode != XetOff {
		list = append(list, xetAdapter{c})
	}
	for _, a := range list {
		m[a.name()] = a
	}
	return m
}

// offeredTransfers is the "transfers" list of a batch request: what this client can do, in preference order
// as git-lfs lists them.
func (c *Client) offeredTransfers() []string {
	out := []string{TransferBasic, TransferMultipart}
	if _, ok := c.adapters[TransferXet]; ok {
		out = append(out, TransferXet)
	}
	return out
}

// adapterFor chooses the adapter that carries plan p.
func (c *Client) adapterFor(p *uploadPlan) (transferAdapter, error) {
	name := p.kind.String()
	a, ok := c.adapters[name]
	if !ok {
		return nil, fmt.Errorf("the Hub chose the %q transfer, which this client did not offer (offered %s)",
			name, strings.Join(c.offeredTransfers(), ", "))
	}
	return a, nil
}

// transferQueue uploads the LFS objects of one commit.
type transferQueue struct {
	c        *Client
	repo     string
	revision string
	createPR bool
	sink     *progressSink
	xet      *xetSession
}

func (c *Client) newTransferQueue(repo, revision string, createPR bool, sink *progressSink) *transferQueue {
	q := &transferQueue{c: c, repo: repo, revision: revision, createPR: createPR, sink: sink}
	if _, ok := c.adapters[TransferXet]; ok {
		q.xet = newXetSession(c)
	}
	return q
}

// uploadObjects sends the bytes of the LFS files the Hub does not have yet and returns how many objects it sent.
func (c *Client) uploadObjects(ctx context.Context, repo, revision string, createPR bool, files []*preparedFile, sink *progressSink) (int, error) {
	return c.newTransferQueue(repo, revision, createPR, sink).run(ctx, files)
}

// uploadOne sends one object's bytes following plan p (rec: the journal record p came from, if any), asking for a
// fresh batch answer when the URLs in hand turn out unusable.
func (c *Client) uploadOne(ctx context.Context, repo, revision string, createPR bool, f *preparedFile, p *uploadPlan,
	rec *UploadRecord, sink *progressSink) error {
	return c.newTransferQueue(repo, revision, createPR, sink).transfer(ctx, f, p, rec)
}

// run batches the objects of files (one upload per distinct object, largest first; journaled uploads resume
// with their recorded URLs), then transfers them in parallel.
func (q *transferQueue) run(ctx context.Context, files []*preparedFile) (int, error) {
	c := q.c
	// One upload per distinct object; all paths that share it are named in errors.
	byOID := map[string][]*preparedFile{}
	var order []string
	for _, f := range files {
		if _, ok := byOID[f.sha256]; !ok {
			order = append(order, f.sha256)
		}
		byOID[f.sha256] = append(byOID[f.sha256], f)
	}
	// Largest first: the long transfers start early.
	sort.SliceStable(order, func(i, j int) bool { return byOID[order[i]][0].size > byOID[order[j]][0].size })

	plans := map[string]*uploadPlan{}
	resumed := map[string]*UploadRecord{}
	var need []batchItem
	now := time.Now()
	for _, oid := range order {
		f := byOID[oid][0]
		if c.journal != nil {
			key := c.journalKey(q.repo, oid)
			rec, err := c.journal.Get(ctx, key)
			if err != nil {
				return 0, err
			}
			if rec.usable(oid, f.size, now) {
				resumed[oid] = rec
				plans[oid] = planFromRecord(rec)
				c.log.Info().Str("file", f.path).Int("parts_done", len(rec.ETags)).Int("parts", len(rec.PartURLs)).
					Msg("resuming a journaled multipart upload")
				continue
			}
			if rec != nil {
				c.log.Info().Str("file", f.path).Msg("journaled upload URLs expired or unusable; asking for new ones")
				if err := c.journal.Delete(ctx, key); err != nil {
					return 0, err
				}
			}
		}
		need = append(need, batchItem{OID: oid, Size: f.size})
	}
	for start := 0; start < len(need); start += maxBatchObjects {
		got, err := c.batchUpload(ctx, q.repo, q.revision, q.createPR, need[start:min(start+maxBatchObjects, len(need))])
		if err != nil {
			return 0, err
		}
		for oid, p := range got {
			plans[oid] = p
		}
	}
	var objErrs []string
	for _, oid := range order {
		if p := plans[oid]; p.objectErr != "" {
			objErrs = append(objErrs, fmt.Sprintf("%s (%s): %d %s", pathsOf(byOID[oid]), oid, p.objectErrCode, p.objectErr))
		}
	}
	if len(objErrs) > 0 {
		return 0, fmt.Errorf("the Hub refused to take %d file(s): %s", len(objErrs), strings.Join(objErrs, "; "))
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelFiles)
	var sent atomic.Int64
	for _, oid := range order {
		f, p, rec := byOID[oid][0], plans[oid], resumed[oid]
		if p.kind == transferNone {
			c.log.Debug().Str("file", f.path).Msg("the Hub already stores this object")
			continue
		}
		g.Go(func() error {
			if err := q.transfer(gctx, f, p, rec); err != nil {
				return fmt.Errorf("uploading %s (%s): %w", pathsOf(byOID[oid]), f.name(), err)
			}
			sent.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return int(sent.Load()), nil
}

// transfer moves one object with the adapter its plan names, asking for a fresh batch answer (at most
// maxRebatches times) when the adapter finds the answer in hand unusable.
func (q *transferQueue) transfer(ctx context.Context, f *preparedFile, p *uploadPlan, rec *UploadRecord) error {
	c := q.c
	t := &objectTransfer{
		repo: q.repo, revision: q.revision, f: f, plan: p, xet: q.xet,
		prog: q.sink.file(PhaseUploading, f.path, f.size),
		// One retry budget per part (and for a basic PUT) across every batch answer of this upload.
		budgets: &partBudgets{m: map[int]*attemptBudget{}},
		etags:   map[int]string{},
		journal: &objectJournal{j: c.journal, key: c.journalKey(q.repo, f.sha256)},
	}
	if rec != nil {
		t.etags = rec.ETags
		t.journal.journaled = true
	}
	fellBack := false
	for rebatch := 0; ; rebatch++ {
		if t.plan.kind == transferNone {
			return t.journal.drop(ctx)
		}
		a, err := c.adapterFor(t.plan)
		if err != nil {
			return err
		}
		err = a.send(ctx, t)
		if err == nil {
			return nil
		}
		if a.name() == TransferXet && c.xetMode == XetAuto && !fellBack && ctx.Err() == nil && !errors.Is(err, ErrContentChanged) {
			// --xet auto: Xet is an optimization; an object it could not send goes through LFS.
			fellBack = true
			c.log.Warn().Str("file", f.path).Err(err).Msg("the Xet upload failed; sending the file through LFS instead")
			plans, berr := c.batchUploadOffering(ctx, q.repo, q.revision, q.createPR, []batchItem{{OID: f.sha256, Size: f.size}},
				[]string{TransferBasic, TransferMultipart})
			if berr != nil {
				return fmt.Errorf("%w; then, through LFS: %w", err, berr)
			}
			t.plan = plans[f.sha256]
			if t.plan.objectErr != "" {
				return fmt.Errorf("the Hub refused the object: %d %s", t.plan.objectErrCode, t.plan.objectErr)
			}
			t.etags, t.journal.journaled = map[int]string{}, false
			t.budgets = &partBudgets{m: map[int]*attemptBudget{}}
			t.prog.add(-t.prog.done.Load())
			rebatch--
			continue
		}
		var rb *rebatchError
		if !errors.As(err, &rb) || rebatch >= maxRebatches || ctx.Err() != nil {
			return err
		}
		c.log.Info().Str("file", f.path).Str("transfer", a.name()).Err(err).Msg("upload URLs refused; asking the Hub for new ones")
		plans, berr := c.batchUpload(ctx, q.repo, q.revision, q.createPR, []batchItem{{OID: f.sha256, Size: f.size}})
		if berr != nil {
			return berr
		}
		old := t.plan
		t.plan = plans[f.sha256]
		if t.plan.objectErr != "" {
			return fmt.Errorf("the Hub refused the object: %d %s", t.plan.objectErrCode, t.plan.objectErr)
		}
		t.journal.journaled = false
		if t.plan.kind != transferMultipart {
			if err := t.journal.drop(ctx); err != nil {
				return err
			}
		}
		t.prog.add(-t.prog.done.Load())
		if sameUpload(old, t.plan) {
			// Fresh URLs for the same multipart upload: the parts already stored stay valid.
			c.log.Info().Str("file", f.path).Int("parts_kept", len(t.etags)).Msg("new URLs for the same upload; keeping the parts already stored")
			continue
		}
		t.etags = map[int]string{}
	}
}

func pathsOf(fs []*preparedFile) string {
	var ps []string
	for _, f := range fs {
		ps = append(ps, f.path)
	}
	return strings.Join(ps, ", ")
}
