package hub

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// basicAdapter is the LFS "basic" transfer: the whole object in one PUT.
type basicAdapter struct{ c *Client }

func (basicAdapter) name() string { return TransferBasic }

// send streams the whole file in one PUT with its Content-Length, then runs the verify action.
func (a basicAdapter) send(ctx context.Context, t *objectTransfer) error {
	c, f, p := a.c, t.f, t.plan
	if err := checkNotExpired("upload", p.href, p.expiresAt); err != nil {
		return err
	}
	src, err := openSource(f)
	if err != nil {
		return err
	}
	defer src.Close()
	_, ac, err := c.putRange(ctx, src, 0, f.size, p.href, c.actionHeaders(p.header), t.budgets.get(0), t.prog)
	if err != nil {
		ac.rollback()
		if urlRefused(err) {
			return &rebatchError{err}
		}
		return err
	}
	if p.verify != nil {
		return c.verifyObject(ctx, p.verify, f.sha256, f.size)
	}
	return nil
}

// multipartAdapter is the Hub's LFS "multipart" transfer: presigned part URLs, then a completion call.
type multipartAdapter struct{ c *Client }

func (multipartAdapter) name() string { return TransferMultipart }

// send sends the parts not in t.etags (in parallel, each streamed from a section of the file with its own
// Content-Length and its own retries), journaling each ETag as soon as its part is stored, then completes the
// upload, runs the verify action and drops the journal record.
func (a multipartAdapter) send(ctx context.Context, t *objectTransfer) error {
	c, f, p, prog := a.c, t.f, t.plan, t.prog
	parts, err := PlanParts(f.size, p.chunkSize)
	if err != nil {
		return err
	}
	if len(parts) != len(p.partURLs) {
		return fmt.Errorf("%d part URLs for %d parts", len(p.partURLs), len(parts))
	}
	if err := t.journal.start(ctx, t); err != nil {
		return err
	}
	src, err := openSource(f)
	if err != nil {
		return err
	}
	defer src.Close()

	var mu sync.Mutex
	var todo []Part
	for _, part := range parts {
		if t.etags[part.N] != "" {
			prog.add(part.Size)
		} else {
			todo = append(todo, part)
		}
	}
	c.log.Debug().Str("file", f.path).Int("parts", len(parts)).Int("to_send", len(todo)).Int64("chunk_size", p.chunkSize).
		Msg("multipart upload")
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelParts)
	for _, part := range todo {
		g.Go(func() error {
			if err := checkNotExpired(fmt.Sprintf("part %d/%d", part.N, len(parts)), p.partURLs[part.N-1], p.expiresAt); err != nil {
				return err
			}
			r, ac, err := c.putRange(gctx, src, part.Offset, part.Size, p.partURLs[part.N-1], nil, t.budgets.get(part.N), prog)
			if err != nil {
				ac.rollback()
				err = fmt.Errorf("part %d/%d: %w", part.N, len(parts), err)
				if urlRefused(err) {
					return &rebatchError{err}
				}
				return err
			}
			etag := r.header.Get("ETag")
			if etag == "" {
				ac.rollback()
				return fmt.Errorf("part %d/%d: storage answered without an ETag", part.N, len(parts))
			}
			mu.Lock()
			t.etags[part.N] = etag
			mu.Unlock()
			return t.journal.part(ctx, part.N, etag)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := c.completeMultipart(ctx, p.href, f.sha256, t.etags, len(parts)); err != nil {
		return err
	}
	if p.verify != nil {
		if err := c.verifyObject(ctx, p.verify, f.sha256, f.size); err != nil {
			return err
		}
	}
	return t.journal.drop(ctx)
}
