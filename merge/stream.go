package merge

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

// stream produces the output tensors' bytes tile by tile. A producer goroutine walks the tensors in the order the
// writer asks for them (shard by shard, in file order), cuts each into tiles and hands them to a pool of worker
// goroutines; the writer's fill callback takes the finished tiles in order. A fixed set of slots (buffers) bounds
// the tiles in flight, so memory does not depend on the model size: a slot is taken by the producer before a tile
// is dispatched and given back after the writer has copied the tile's bytes out.
//
// Tile boundaries depend only on the tensor shapes and the backend's TileElems, and every tile is computed
// independently (DoRA column sums are reduced in tile order), so the bytes are the same for any worker count.
type stream struct {
	p           *Plan
	ctx         context.Context
	cancel      context.CancelFunc
	backend     Backend
	tileElems   int
	slots       chan *slot
	work        chan *job
	ordered     chan *job
	wg          sync.WaitGroup
	byName      map[string]*outTensor
	total       int64
	done        int64
	tensorsDone int // output tensors fully written (opts.TensorProgress)
	// maxNormPending bounds the column-norm tiles the producer keeps in flight, so that output tiles always find
	// free slots.
	maxNormPending int
	// from is the byte offset in the first tensor of order where the consumer starts: tiles ending at or before
	// it are not computed (a ranged stream, see Producer.ProduceRange).
	from int64
	// norms, when set, keeps DoRA column factors across streams, so ranges of one tensor compute them once.
	norms *normCache
}

// normCache holds DoRA column factors by tensor name (safe for concurrent use).
type normCache struct {
	mu sync.Mutex
	m  map[string][]float32
}

func (c *normCache) get(name string) []float32 {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

func (c *normCache) put(name string, f []float32) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]float32{}
	}
	c.m[name] = f
}

// tileBufferBudget bounds the memory of the tile buffers in flight.
const tileBufferBudget = 256 << 20

// slot holds the buffers of one tile in flight; they grow to the largest tile they have carried.
type slot struct {
	in     []byte
	scaleB []byte
	scales []float32
	work   []float32
	out    []byte
	colSum []float64
}

func growBytes(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func growF32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// prepared holds what every tile of one tensor shares: the small LoRA factors and quantization constants.
type prepared struct {
	t            *outTensor
	coef, m      []float32
	r            int
	rowMag       []float32
	colMag       []float32
	colFactor    []float32
	nestedAbsmax []float32
	nestedMap    *[256]float32
	rowTiles     bool
}

// job is one tile (or a producer error to report in order).
type job struct {
	pr       *prepared
	start    int64 // first element (first byte for copies)
	count    int   // elements (bytes for copies)
	row0     int
	rows     int
	normPass bool
	slot     *slot
	out      []byte
	done     chan struct{}
	err      error
}

// newStream starts the workers and the producer for the tensors in writer order.
func newStream(ctx context.Context, p *Plan, order []*outTensor) *stream {
	return newStreamFrom(ctx, p, order, 0, max(1, p.opts.Threads), tileBufferBudget, nil)
}

// newStreamFrom starts a stream whose consumer begins at byte from of order[0], with at most nw workers and
// tile buffers bounded by budget bytes.
func newStreamFrom(ctx context.Context, p *Plan, order []*outTensor, from int64, nw, budget int, norms *normCache) *stream {
	ctx, cancel := context.WithCancel(ctx)
	tileElems := max(1, p.backend.TileElems())
	// Two tiles in flight per worker keep every worker busy while the writer drains finished tiles in order; the
	// slots' buffers (about 12 bytes per element: float32 work, input and output) are capped at the budget,
	// and with it the number of workers, so memory stays bounded on machines with very many cores.
	nslots := max(4, min(2*nw+2, budget/(12*tileElems)))
	nw = max(1, min(nw, nslots-2))
	s := &stream{
		p: p, ctx: ctx, cancel: cancel, backend: p.backend,
		tileElems:      tileElems,
		slots:          make(chan *slot, nslots),
		work:           make(chan *job, nslots),
		ordered:        make(chan *job, nslots+1),
		byName:         map[string]*outTensor{},
		maxNormPending: max(1, nslots/2),
		from:           from,
		norms:          norms,
	}
	for range nslots {
		s.slots <- &slot{}
	}
	for _, t := range order {
		s.byName[t.Name] = t
		s.total += t.Bytes
	}
	for range nw {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.produce(order)
	return s
}

// stop cancels whatever is still running and waits for every goroutine.
func (s *stream) stop() {
	s.cancel()
	// Drain the ordered queue so a producer blocked on it can exit.
	go func() {
		for range s.ordered {
		}
	}()
	s.wg.Wait()
}

func (s *stream) worker() {
	defer s.wg.Done()
	for j := range s.work {
		if err := s.ctx.Err(); err != nil {
			j.err = err
		} else {
			j.err = s.runTile(j)
		}
		close(j.done)
	}
}

// acquire takes a free slot, or reports cancellation.
func (s *stream) acquire() (*slot, bool) {
	select {
	case sl := <-s.slots:
		return sl, true
	case <-s.ctx.Done():
		return nil, false
	}
}

func (s *stream) release(sl *slot) { s.slots <- sl }

func (s *stream) produce(order []*outTensor) {
	defer s.wg.Done()
	defer close(s.work)
	defer close(s.ordered)
	for i, t := range order {
		pr, err := s.prepare(t)
		if err == nil && pr.colMag != nil {
			if f := s.norms.get(t.Name); f != nil {
				pr.colFactor = f
			} else if err = s.columnNorms(pr); err == nil {
				s.norms.put(t.Name, pr.colFactor)
			}
		}
		if err != nil {
			j := &job{pr: &prepared{t: t}, done: make(chan struct{}), err: err}
			close(j.done)
			select {
			case s.ordered <- j:
			case <-s.ctx.Done():
			}
			return
		}
		from := int64(0)
		if i == 0 {
			from = s.from
		}
		if !s.emitTiles(pr, false, from, func(j *job) bool {
			select {
			case s.ordered <- j:
			case <-s.ctx.Done():
				return false
			}
			select {
			case s.work <- j:
				return true
			case <-s.ctx.Done():
				return false
			}
		}) {
			return
		}
	}
}

// emitTiles cuts a tensor into tiles and passes each (with a slot) to send; it stops when send returns false or
// the stream is cancelled. Output tiles whose bytes end at or before byte from of the tensor are skipped.
func (s *stream) emitTiles(pr *prepared, normPass bool, from int64, send func(*job) bool) bool {
	t := pr.t
	es := int64(t.DType.Size())
	if t.Kind == KindCopy {
		chunk := int64(s.tileElems) * 4
		for off := int64(0); off < t.Bytes; off += chunk {
			if off+chunk <= from {
				continue
			}
			sl, ok := s.acquire()
			if !ok {
				return false
			}
			j := &job{pr: pr, start: off, count: int(min(chunk, t.Bytes-off)), slot: sl, done: make(chan struct{})}
			if !send(j) {
				return false
			}
		}
		return true
	}
	n := mustNumel(t.Shape)
	if pr.rowTiles {
		rowsPer := max(1, int64(s.tileElems)/t.cols)
		for r0 := int64(0); r0 < t.rows; r0 += rowsPer {
			rows := min(rowsPer, t.rows-r0)
			if !normPass && (r0+rows)*t.cols*es <= from {
				continue
			}
			sl, ok := s.acquire()
			if !ok {
				return false
			}
			j := &job{pr: pr, start: r0 * t.cols, count: int(rows * t.cols), row0: int(r0), rows: int(rows),
				normPass: normPass, slot: sl, done: make(chan struct{})}
			if !send(j) {
				return false
			}
		}
		return true
	}
	chunk := int64(s.tileElems)
	for off := int64(0); off < n; off += chunk {
		if !normPass && min(off+chunk, n)*es <= from {
			continue
		}
		sl, ok := s.acquire()
		if !ok {
			return false
		}
		j := &job{pr: pr, start: off, count: int(min(chunk, n-off)), slot: sl, done: make(chan struct{})}
		if !send(j) {
			return false
		}
	}
	return true
}

// prepare loads what the tiles of t share.
func (s *stream) prepare(t *outTensor) (*prepared, error) {
	pr := &prepared{t: t}
	if q := t.q; q != nil && q.state.Nested {
		var err error
		if pr.nestedAbsmax, err = readF32(q.nestedAbsmax); err != nil {
			return nil, err
		}
		nm, err := readF32(q.nestedMap)
		if err != nil {
			return nil, err
		}
		pr.nestedMap = (*[256]float32)(nm)
	}
	s32 := float32(t.scaling)
	switch {
	case t.lora != nil:
		m := t.lora
		A, err := readAdapterFloats(*m.a)
		if err != nil {
			return nil, err
		}
		B, err := readAdapterFloats(*m.b)
		if err != nil {
			return nil, err
		}
		r := t.rank
		pr.r = r
		pr.rowTiles = true
		if !t.transpo {
			// W[out, in] += s·B[out, r]·A[r, in]: coef = s·B, m = A.
			pr.coef = make([]float32, len(B))
			for i, v := range B {
				pr.coef[i] = s32 * v
			}
			pr.m = A
		} else {
			// W[rows, cols] += s·Aᵀ[rows, r]·Bᵀ[r, cols] (fan_in_fan_out: rows = in, cols = out; embedding:
			// rows = num_embeddings, cols = embedding_dim).
			rows, cols := int(t.rows), int(t.cols)
			pr.coef = make([]float32, rows*r)
			for k := 0; k < r; k++ {
				for i := 0; i < rows; i++ {
					pr.coef[i*r+k] = s32 * A[k*rows+i]
				}
			}
			pr.m = make([]float32, r*cols)
			for j := 0; j < cols; j++ {
				for k := 0; k < r; k++ {
					pr.m[k*cols+j] = B[j*r+k]
				}
			}
		}
		if m.magnitude != nil {
			mag, err := readAdapterFloats(*m.magnitude)
			if err != nil {
				return nil, err
			}
			if t.doraCols {
				pr.colMag = mag
			} else {
				pr.rowMag = mag
			}
		}
	case t.biasOf != nil:
		b, err := readAdapterFloats(*t.biasOf.loraBias)
		if err != nil {
			return nil, err
		}
		pr.r = 1
		pr.coef = []float32{s32}
		pr.m = b
		pr.rowTiles = true
	}
	return pr, nil
}

// columnNorms runs the first DoRA pass over t: V = W + ΔW tile by tile, reducing the column sums of squares in
// tile order, and sets the column factors magnitude[j] / ‖V[:, j]‖₂.
func (s *stream) columnNorms(pr *prepared) error {
	t := pr.t
	acc := make([]float64, t.cols)
	var pending []*job
	var firstErr error
	reduce := func(j *job) {
		select {
		case <-j.done:
		case <-s.ctx.Done():
			if firstErr == nil {
				firstErr = s.ctx.Err()
			}
			return
		}
		if j.err != nil && firstErr == nil {
			firstErr = j.err
		}
		if firstErr == nil {
			for k, v := range j.slot.colSum[:t.cols] {
				acc[k] += v
			}
		}
		s.release(j.slot)
	}
	ok := s.emitTiles(pr, true, 0, func(j *job) bool {
		for len(pending) >= s.maxNormPending {
			reduce(pending[0])
			pending = pending[1:]
		}
		select {
		case s.work <- j:
		case <-s.ctx.Done():
			s.release(j.slot)
			return false
		}
		pending = append(pending, j)
		return firstErr == nil
	})
	for _, j := range pending {
		reduce(j)
	}
	if firstErr != nil {
		return firstErr
	}
	if !ok {
		return s.ctx.Err()
	}
	pr.colFactor = make([]float32, t.cols)
	for j, v := range acc {
		norm := float32(math.Sqrt(v))
		pr.colFactor[j] = pr.colMag[j] / norm
	}
	return nil
}

// runTile reads a tile's inputs into its slot and computes it.
func (s *stream) runTile(j *job) error {
	pr, t, sl := j.pr, j.pr.t, j.slot
	if t.Kind == KindCopy {
		sl.out = growBytes(sl.out, j.count)
		if err := t.src.readAt(sl.out, j.start); err != nil {
			return err
		}
		j.out = sl.out
		return nil
	}
	tile := Tile{
		Tensor: t.Name, Start: j.start, Count: j.count,
		BaseRound: t.baseRound, OutDType: t.DType, NonFinite: -1,
	}
	if pr.rowTiles {
		tile.Row0, tile.Rows, tile.Cols = j.row0, j.rows, int(t.cols)
		if pr.r > 0 {
			tile.R = pr.r
			tile.Coef = pr.coef[j.row0*pr.r : (j.row0+j.rows)*pr.r]
			tile.M = pr.m
		}
		switch {
		case pr.rowMag != nil:
			tile.DoRA = DoRARows
			tile.RowMagnitude = pr.rowMag[j.row0 : j.row0+j.rows]
		case pr.colMag != nil && j.normPass:
			tile.DoRA = DoRAColumnNorms
			if cap(sl.colSum) < int(t.cols) {
				sl.colSum = make([]float64, t.cols)
			}
			sl.colSum = sl.colSum[:t.cols]
			clear(sl.colSum)
			tile.ColSumSq = sl.colSum
		case pr.colMag != nil:
			tile.DoRA = DoRAColumns
			tile.ColFactor = pr.colFactor
		}
	}
	if q := t.q; q != nil {
		if err := s.readPacked(j, q, pr, &tile); err != nil {
			return err
		}
	} else {
		es := t.srcD.Size()
		sl.in = growBytes(sl.in, j.count*es)
		if err := t.src.readAt(sl.in, j.start*int64(es)); err != nil {
			return err
		}
		tile.Source = TileSource{Kind: SourceFloat, DType: t.srcD, Raw: sl.in}
	}
	sl.work = growF32(sl.work, j.count)
	tile.Work = sl.work
	if !j.normPass {
		sl.out = growBytes(sl.out, j.count*t.DType.Size())
		tile.Out = sl.out
	}
	if err := s.backend.MergeTile(s.ctx, &tile); err != nil {
		return fmt.Errorf("tensor %s: %s backend: %w", t.Name, s.backend.Name(), err)
	}
	if tile.NonFinite >= 0 {
		if i := offendingValue(t, &tile); i >= 0 {
			return s.nonFiniteError(t, j.start+int64(i), tile.Work[i])
		}
	}
	j.out = tile.Out
	return nil
}

// readPacked reads a tile's packed codes and resolves its blocks' scales.
func (s *stream) readPacked(j *job, q *quantWeight, pr *prepared, tile *Tile) error {
	sl := j.slot
	st := q.state
	first, last := j.start, j.start+int64(j.count)-1
	b0, b1 := first/2, last/2
	sl.in = growBytes(sl.in, int(b1-b0+1))
	if err := q.weight.readAt(sl.in, b0); err != nil {
		return err
	}
	bs := int64(st.Blocksize)
	k0, k1 := first/bs, last/bs
	nb := int(k1 - k0 + 1)
	sl.scales = growF32(sl.scales, nb)
	if st.Nested {
		sl.scaleB = growBytes(sl.scaleB, nb)
		if err := q.absmax.readAt(sl.scaleB, k0); err != nil {
			return err
		}
		resolveScales(sl.scales, sl.scaleB, k0, pr.nestedMap, pr.nestedAbsmax, st.NestedBlocksize, st.NestedOffset)
	} else {
		sl.scaleB = growBytes(sl.scaleB, 4*nb)
		if err := q.absmax.readAt(sl.scaleB, 4*k0); err != nil {
			return err
		}
		s.p.kernel.Decode(tensor.F32, sl.scaleB, sl.scales)
	}
	tile.Source = TileSource{Kind: SourcePacked4, Packed: sl.in, Scales: sl.scales, Code: q.code, Blocksize: st.Blocksize}
	return nil
}

// offendingValue returns the tile index of the first output value that must not be written, or -1: any
// non-finite value of a merged tensor (PEFT refuses those too), and in other tensors a value that overflowed when
// rounded to the output dtype. A NaN or Inf that the base itself stores in a tensor the adapter does not touch is
// carried over unchanged, as a plain conversion would.
func offendingValue(t *outTensor, tile *Tile) int {
	if t.Kind == KindMerge {
		return tile.NonFinite
	}
	es := tile.OutDType.Size()
	var rounded [1]float32
	for i := tile.NonFinite; i < tile.Count; i++ {
		pre := tile.Work[i]
		if pre-pre != 0 {
			continue // not finite in the source
		}
		if err := tensor.DecodeFloats(tile.OutDType, tile.Out[i*es:(i+1)*es], rounded[:]); err != nil || rounded[0]-rounded[0] != 0 {
			return i
		}
	}
	return -1
}

// nonFiniteError explains a value that is not finite after rounding to the output dtype.
func (s *stream) nonFiniteError(t *outTensor, idx int64, pre float32) error {
	where := indexString(t.Shape, idx)
	file := s.p.base.dir
	if t.src.file != nil {
		file = t.src.path()
	} else if t.q != nil {
		file = t.q.weight.path()
	}
	what := "the merged value"
	if t.Kind != KindMerge {
		what = "the value"
	}
	if pre-pre == 0 { // finite before rounding: an overflow of the output dtype
		return badf(file, t.Name, "%s %g at %s overflows %s (output tensor %s); write bf16 or fp32 instead (--dtype)", what, pre, where, t.DType, t.Name)
	}
	return badf(file, t.Name, "%s at %s is %v (output tensor %s, adapter tensors %v)", what, where, pre, t.Name, t.AdapterTensors)
}

// nextTile waits for the stream's next finished tile, which must belong to tensor t. On an error the tile's
// slot is released.
func (s *stream) nextTile(ctx context.Context, t *outTensor) (*job, error) {
	var j *job
	var ok bool
	select {
	case j, ok = <-s.ordered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !ok {
		if err := s.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("the tile stream ended before tensor %s was complete", t.Name)
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if j.err != nil {
		if j.slot != nil {
			s.release(j.slot)
		}
		return nil, j.err
	}
	if j.pr.t != t {
		s.release(j.slot)
		return nil, fmt.Errorf("tensor %s was asked for, but the tile stream is at %s", t.Name, j.pr.t.Name)
	}
	return j, nil
}

// fill is the writer's callback: it copies the tiles of tensor ti, in order, to w.
func (s *stream) fill(ctx context.Context, ti safetensors.TensorInfo, w io.Writer) error {
	t := s.byName[ti.Name]
	if t == nil {
		return fmt.Errorf("merge: the writer asked for tensor %s, which the plan does not have", ti.Name)
	}
	remaining := ti.Size()
	for remaining > 0 {
		j, err := s.nextTile(ctx, t)
		if err != nil {
			return err
		}
		if int64(len(j.out)) > remaining {
			return fmt.Errorf("merge: tensor %s: tiles exceed its %d bytes", ti.Name, ti.Size())
		}
		if _, err := w.Write(j.out); err != nil {
			return err
		}
		remaining -= int64(len(j.out))
		s.done += int64(len(j.out))
		s.release(j.slot)
		if s.p.opts.Progress != nil {
			s.p.opts.Progress(s.done, s.total)
		}
	}
	s.tensorsDone++
	if s.p.opts.TensorProgress != nil {
		s.p.opts.TensorProgress(s.tensorsDone, len(s.byName))
	}
	return nil
}
