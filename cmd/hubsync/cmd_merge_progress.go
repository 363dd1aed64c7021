package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// mergeProgress shows a merge's progress: a bar on a terminal (tensors done, bytes written, rate, ETA), else a
// structured log line at most once per interval, with units in the field names or values.
type mergeProgress struct {
	mu       sync.Mutex
	log      zerolog.Logger
	every    time.Duration
	now      func() time.Time
	start    time.Time
	last     time.Time
	bars     *mpb.Progress
	bar      *mpb.Bar
	done     int64
	total    int64
	tensors  atomic.Int64 // read by the bar's decorator without p.mu (SetCurrent runs under p.mu)
	ntensors atomic.Int64
}

// newMergeProgress draws a bar when bars is true, stderr is a terminal and bars are enabled, else logs every
// interval.
func newMergeProgress(g *globalOptions, every time.Duration, bars bool) *mergeProgress {
	p := &mergeProgress{log: g.log, every: every, now: time.Now}
	p.start, p.last = p.now(), p.now()
	if bars && !g.quiet && progressBarsEnabled(g.stderr) {
		p.bars = mpb.New(mpb.WithOutput(g.stderr), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	}
	return p
}

// tensorsDone records the output tensors written (merge.Options.TensorProgress).
func (p *mergeProgress) tensorsDone(done, total int) {
	p.tensors.Store(int64(done))
	p.ntensors.Store(int64(total))
	if done == total {
		// The last line of a service's log says the merge is complete, tensors included.
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.bars == nil && p.total > 0 {
			p.last = p.now()
			p.logLine(p.last)
		}
	}
}

// bytesDone records the output bytes written (merge.Options.Progress).
func (p *mergeProgress) bytesDone(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if total <= 0 {
		return
	}
	if p.bars != nil {
		if p.bar == nil {
			p.bar = p.bars.AddBar(total,
				mpb.PrependDecorators(decor.Name("merging   "), decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d/%d tensors", p.tensors.Load(), p.ntensors.Load())
				}, decor.WC{W: 20, C: decor.DindentRight})),
				mpb.AppendDecorators(decor.Counters(decor.SizeB1000(0), "% .1f / % .1f"), decor.Name("  "),
					decor.AverageSpeed(decor.SizeB1000(0), "% .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)))
		}
		p.bar.SetCurrent(done)
		return
	}
	if now := p.now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.logLine(now)
	}
}

// logLine writes one "merge progress" line (p.mu held).
func (p *mergeProgress) logLine(now time.Time) {
	elapsed := now.Sub(p.start)
	e := p.log.Info().Int64("bytes_done", p.done).Int64("bytes_total", p.total).
		Str("written", mergeHumanSize(p.done)+" / "+mergeHumanSize(p.total)).
		Str("percent", fmt.Sprintf("%.1f", 100*float64(p.done)/float64(p.total))).
		Str("elapsed", elapsed.Round(time.Second).String())
	if n := p.ntensors.Load(); n > 0 {
		e = e.Int64("tensors_done", p.tensors.Load()).Int64("tensors_total", n)
	}
	if s := elapsed.Seconds(); s > 0 && p.done > 0 {
		rate := float64(p.done) / s
		e = e.Str("rate", mergeHumanSize(int64(rate))+"/s")
		if left := p.total - p.done; left > 0 {
			e = e.Str("eta", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String())
		}
	}
	e.Msg("merge progress")
}

// close finishes the bar (idempotent).
func (p *mergeProgress) close() {
	p.mu.Lock()
	bars, bar := p.bars, p.bar
	p.bars = nil
	p.mu.Unlock()
	if bars == nil {
		return
	}
	if bar != nil && !bar.Completed() {
		bar.Abort(false)
	}
	bars.Wait()
}
