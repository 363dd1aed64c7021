package merge

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// QuantOutput asks for a merged bitsandbytes 4-bit output (model-formats.md §3): every quantizable weight is
// re-quantized from the 16-bit merge with bitsandbytes' blockwise quantizer and stored with the keys transformers'
// save_pretrained writes for a bnb-4bit model; every other tensor keeps the 16-bit merge's dtype.
type QuantOutput struct {
	// Type is "nf4" or "fp4".
	Type string
	// Blocksize is the 4-bit block size, a power of two in 32..4096 (0: 64, bitsandbytes' default).
	Blocksize int
	// DoubleQuant quantizes the absmax statistics (bnb_4bit_use_double_quant).
	DoubleQuant bool
	// Storage is bnb_4bit_quant_storage: U8 (default, Invalid) or BF16.
	Storage tensor.DType
	// SkipModules is llm_int8_skip_modules: modules kept in the compute dtype. nil means transformers' default,
	// the output embedding lm_head.
	SkipModules []string
}

// defaultSkipModules is what transformers' get_keys_to_not_convert returns for a causal LM: its output
// embedding.
var defaultSkipModules = []string{"lm_head"}

func (q *QuantOutput) normalize() error {
	if q.Type != "nf4" && q.Type != "fp4" {
		return fmt.Errorf("merge: 4-bit type %q is not nf4 or fp4", q.Type)
	}
	if q.Blocksize == 0 {
		q.Blocksize = 64
	}
	if q.Blocksize < 32 || q.Blocksize > 4096 || q.Blocksize&(q.Blocksize-1) != 0 {
		return fmt.Errorf("merge: 4-bit blocksize %d is not a power of two between 32 and 4096", q.Blocksize)
	}
	if q.Storage == tensor.Invalid {
		q.Storage = tensor.U8
	}
	if q.Storage != tensor.U8 && q.Storage != tensor.BF16 {
		return fmt.Errorf("merge: 4-bit quant storage %s is not uint8 or bfloat16", q.Storage)
	}
	return nil
}

func (q *QuantOutput) skipList() []string {
	if q.SkipModules == nil {
		return defaultSkipModules
	}
	return q.SkipModules
}

// quantizable reports whether an output tensor is a Linear weight transformers would quantize: a 2-D float
// "<module>.weight" that is not an embedding and whose module is not skipped. A skip entry matches a module equal
// to it or any module inside it, or a module whose dotted name contains it as whole components
// (llm_int8_skip_modules semantics).
func (q *QuantOutput) quantizable(t *outTensor) bool {
	if len(t.Shape) != 2 || !isFloat(t.DType) || !strings.HasSuffix(t.Name, ".weight") {
		return false
	}
	module := strings.TrimSuffix(t.Name, ".weight")
	last := module[strings.LastIndexByte(module, '.')+1:]
	if strings.Contains(last, "embed") || last == "wte" || last == "wpe" {
		return false
	}
	for _, s := range q.skipList() {
		if s != "" && strings.Contains("."+module+".", "."+s+".") {
			return false
		}
	}
	return mustNumel(t.Shape) > 0
}

// packedBytes is the byte size of P.weight for n elements in a storage dtype: bitsandbytes allocates
// (n+1) // (2·itemsize) elements.
func packedBytes(storage tensor.DType, n int64) int64 {
	is := int64(storage.Size())
	return (n + 1) / (2 * is) * is
}

// quantTensor is one quantized weight: its small components (kept in memory) and its measured error.
type quantTensor struct {
	t      *outTensor
	state  []byte
	absmax []byte // F32 absmax, or U8 codes under double quant
	nested []float32
	sumSq  float64
	maxErr float64
	// scales gives the block scales the dequantizer uses (absmax, or its double-quantized value).
	scales func() []float32
}

// QuantResult reports a 4-bit output's error against the 16-bit merge.
type QuantResult struct {
	Report  export.QuantReport
	Tensors []export.TensorError
}

// checkQuant validates Options.Quant at planning time.
func (p *Plan) checkQuant() error {
	if p.opts.Quant == nil {
		return nil
	}
	q := new(QuantOutput)
	*q = *p.opts.Quant
	q.SkipModules = append([]string(nil), q.SkipModules...)
	if p.opts.Quant.SkipModules == nil {
		q.SkipModules = nil
	}
	p.opts.Quant = q
	if err := q.normalize(); err != nil {
		return err
	}
	found := false
	for _, t := range p.tensors {
		if !q.quantizable(t) {
			continue
		}
		found = true
		if n := mustNumel(t.Shape); packedBytes(q.Storage, n) != (n+1)/2 {
			return &InputError{File: p.base.dir, Tensor: t.Name, Msg: fmt.Sprintf("%d elements do not fill whole %s quant storage items (bitsandbytes would truncate the packed codes); use uint8 storage", n, q.Storage.TorchName())}
		}
	}
	if found {
		return nil
	}
	return &InputError{File: p.base.dir, Msg: fmt.Sprintf("--dtype %s: the base has no quantizable weights (2-D Linear weights outside %v)", q.Type, q.skipList())}
}

// quantChunk is the number of elements one quantizer goroutine takes at once (a multiple of every block size).
const quantChunk = 1 << 18

// readChunks calls fn with the float32 values of ti from the 16-bit merge, chunk by chunk: up to workers chunks
// are read at once (a span) and fn runs on them concurrently (each call gets its own chunk and index); after, when
// not nil, runs once each span is done. Chunk boundaries depend only on the tensor, so results gathered by chunk
// index do not depend on workers.
func readChunks(ctx context.Context, f *safetensors.File, ti safetensors.TensorInfo, workers int,
	fn func(idx int, off int64, x []float32) error, after func(spanOff, spanLen int64) error) error {
	n := ti.NumElements()
	es := int64(ti.DType.Size())
	workers = max(1, workers)
	span := int64(workers) * quantChunk
	raw := make([]byte, min(n, span)*es)
	x := make([]float32, min(n, span))
	for off := int64(0); off < n; off += span {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(span, n-off)
		if err := f.ReadTensorAt(ti, raw[:c*es], off*es); err != nil {
			return err
		}
		if err := tensor.DecodeFloats(ti.DType, raw[:c*es], x[:c]); err != nil {
			return err
		}
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := 0; int64(w)*quantChunk < c; w++ {
			lo, hi := int64(w)*quantChunk, min(int64(w+1)*quantChunk, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = fn(int((off+lo)/quantChunk), off+lo, x[lo:hi])
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		if after != nil {
			if err := after(off, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// measure computes what a quantized weight stores besides its codes: the block absmax (or its double
// quantization) and the quant-state blob. The codes, and their error, come when the writer asks for the weight.
func (p *Plan) measure(ctx context.Context, f *safetensors.File, ti safetensors.TensorInfo, t *outTensor) (*quantTensor, error) {
	q := p.opts.Quant
	n := ti.NumElements()
	bs := int64(q.Blocksize)
	workers := p.opts.Threads
	absmax := make([]float32, ceilDiv(n, bs))
	if err := readChunks(ctx, f, ti, workers, func(_ int, off int64, x []float32) error {
		for b := int64(0); b*bs < int64(len(x)); b++ {
			var m float32
			for _, v := range x[b*bs : min((b+1)*bs, int64(len(x)))] {
				if a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31)); a > m {
					m = a // testmodel's rule: a NaN never becomes the absmax
				}
			}
			absmax[off/bs+b] = m
		}
		return nil
	}, nil); err != nil {
		return nil, err
	}
	st := testmodel.QuantState{QuantType: q.Type, Blocksize: q.Blocksize, DType: ti.DType, Shape: t.Shape}
	qn := &quantTensor{t: t}
	if q.DoubleQuant {
		nq := testmodel.DoubleQuantize(absmax)
		st.Nested, st.NestedBlocksize, st.NestedDType, st.NestedOffset = true, 256, "float32", nq.Offset
		qn.absmax, qn.nested = nq.Codes, nq.Absmax
	} else {
		qn.absmax = make([]byte, 4*len(absmax))
		if _, err := tensor.EncodeFloats(tensor.F32, absmax, qn.absmax); err != nil {
			return nil, err
		}
	}
	qn.state = st.Encode()
	qn.scales = func() []float32 {
		if q.DoubleQuant {
			return testmodel.NestedQuant{Codes: qn.absmax, Absmax: qn.nested, Offset: st.NestedOffset}.Scales()
		}
		out := make([]float32, len(qn.absmax)/4)
		_ = tensor.DecodeFloats(tensor.F32, qn.absmax, out) // encoded above: always valid
		return out
	}
	return qn, nil
}

// quantizedOutput rewrites the 16-bit merge in dir16 into out as a bitsandbytes 4-bit checkpoint.
type quantizedOutput struct {
	p      *Plan
	files  map[string]*safetensors.File
	infos  map[string]safetensors.TensorInfo
	fileOf map[string]string
	quant  map[string]*quantTensor // by weight name
	parts  map[string]string       // output name → quantized weight name
}

func (p *Plan) openMerged(dir string, files []export.FileDigest) (*quantizedOutput, error) {
	o := &quantizedOutput{p: p, files: map[string]*safetensors.File{}, infos: map[string]safetensors.TensorInfo{},
		fileOf: map[string]string{}, quant: map[string]*quantTensor{}, parts: map[string]string{}}
	for _, fd := range files {
		if !strings.HasSuffix(fd.Path, ".safetensors") {
			continue
		}
		f, err := safetensors.Open(filepath.Join(dir, fd.Path))
		if err != nil {
			o.close()
			return nil, fmt.Errorf("merge: read back the 16-bit merge: %w", err)
		}
		o.files[fd.Path] = f
		for _, ti := range f.Header.Tensors {
			o.infos[ti.Name] = ti
			o.fileOf[ti.Name] = fd.Path
		}
	}
	return o, nil
}

func (o *quantizedOutput) close() {
	for _, f := range o.files {
		f.Close()
	}
}

// plan measures every quantizable weight and lists the output tensors.
func (o *quantizedOutput) plan(ctx context.Context) ([]export.TensorSpec, *QuantResult, error) {
	p, q := o.p, o.p.opts.Quant
	var specs []export.TensorSpec
	res := &QuantResult{Report: export.QuantReport{Blocksize: q.Blocksize, Config: export.QuantConfig{
		QuantType: q.Type, DoubleQuant: q.DoubleQuant, ComputeDType: p.modelDType, Storage: q.Storage,
		SkipModules: q.SkipModules}}}
	for _, t := range p.tensors {
		ti, ok := o.infos[t.Name]
		if !ok {
			return nil, nil, fmt.Errorf("merge: the 16-bit merge lacks tensor %s", t.Name)
		}
		if !q.quantizable(t) {
			specs = append(specs, export.TensorSpec{Name: t.Name, DType: ti.DType, Shape: ti.Shape})
			res.Report.Kept++
			continue
		}
		qt, err := p.measure(ctx, o.files[o.fileOf[t.Name]], ti, t)
		if err != nil {
			return nil, nil, fmt.Errorf("merge: quantize %s: %w", t.Name, err)
		}
		o.quant[t.Name] = qt
		n := ti.NumElements()
		w := t.Name
		add := func(name string, dt tensor.DType, shape ...int64) {
			specs = append(specs, export.TensorSpec{Name: name, DType: dt, Shape: shape})
			o.parts[name] = w
		}
		add(w, q.Storage, packedBytes(q.Storage, n)/int64(q.Storage.Size()), 1)
		if q.DoubleQuant {
			add(w+suffixAbsmax, tensor.U8, int64(len(qt.absmax)))
		} else {
			add(w+suffixAbsmax, tensor.F32, int64(len(qt.absmax)/4))
		}
		add(w+suffixQuantMap, tensor.F32, 16)
		if q.DoubleQuant {
			add(w+suffixNestedAbsmax, tensor.F32, int64(len(qt.nested)))
			add(w+suffixNestedQuantMp, tensor.F32, 256)
		}
		add(w+quantStatePrefix+q.Type, tensor.U8, int64(len(qt.state)))
		res.Report.Quantized++
	}
	return specs, res, nil
}

// finish adds the errors the writer measured to res, in state-dict order, and logs them.
func (o *quantizedOutput) finish(res *QuantResult) {
	var sumSq float64
	var count int64
	for _, t := range o.p.tensors {
		qt := o.quant[t.Name]
		if qt == nil {
			continue
		}
		n := mustNumel(t.Shape)
		te := export.TensorError{Name: t.Name, RMSE: math.Sqrt(qt.sumSq / float64(n)), Max: qt.maxErr}
		res.Tensors = append(res.Tensors, te)
		sumSq += qt.sumSq
		count += n
		res.Report.Max = max(res.Report.Max, qt.maxErr)
		if te.RMSE > res.Report.Worst.RMSE || res.Report.Worst.Name == "" {
			res.Report.Worst = te
		}
		o.p.log.Info().Str("tensor", te.Name).Float64("rmse", te.RMSE).Float64("max_abs_error", te.Max).Msg("4-bit quantization error")
	}
	if count > 0 {
		res.Report.RMSE = math.Sqrt(sumSq / float64(count))
	}
}

// fill writes one output tensor.
func (o *quantizedOutput) fill(ctx context.Context, ti safetensors.TensorInfo, w io.Writer) error {
	q := o.p.opts.Quant
	wname, isPart := o.parts[ti.Name]
	if !isPart {
		src, ok := o.infos[ti.Name]
		if !ok {
			return fmt.Errorf("merge: no tensor %s in the 16-bit merge", ti.Name)
		}
		_, err := io.Copy(w, o.files[o.fileOf[ti.Name]].Section(src))
		return err
	}
	qt := o.quant[wname]
	var data []byte
	switch strings.TrimPrefix(ti.Name, wname) {
	case "":
		src := o.infos[wname]
		n := src.NumElements()
		workers := max(1, o.p.opts.Threads)
		buf := make([]byte, min(n, int64(workers)*quantChunk)/2+1)
		var written int64
		scales := qt.scales()
		cb := testmodel.Codebook(testmodel.Quant(q.Type))
		bs := int64(q.Blocksize)
		nChunks := int(ceilDiv(n, quantChunk))
		sums, maxes := make([]float64, nChunks), make([]float64, nChunks)
		if err := readChunks(ctx, o.files[o.fileOf[wname]], src, workers, func(idx int, off int64, x []float32) error {
			packed, _ := testmodel.Quantize4Bit(testmodel.Quant(q.Type), q.Blocksize, x)
			rel := off % (int64(workers) * quantChunk)
			copy(buf[rel/2:], packed)
			// The error of the dequantized value (fl32(code·scale) rounded to the weight's dtype, as bitsandbytes
			// returns it) against the 16-bit merge.
			var sum, mx float64
			for b := int64(0); b*bs < int64(len(x)); b++ {
				s := scales[off/bs+b]
				for k := b * bs; k < min((b+1)*bs, int64(len(x))); k++ {
					c := packed[k/2]
					if k%2 == 0 {
						c >>= 4
					}
					d := math.Abs(float64(tensor.RoundTo(src.DType, float32(cb[c&0x0F]*s))) - float64(x[k]))
					if d != d {
						d = math.Inf(1)
					}
					sum += d * d
					mx = max(mx, d)
				}
			}
			sums[idx], maxes[idx] = sum, mx
			return nil
		}, func(_, spanLen int64) error {
			k := min((spanLen+1)/2, ti.Size()-written)
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			written += k
			return nil
		}); err != nil {
			return err
		}
		if written != ti.Size() {
			return fmt.Errorf("merge: 4-bit %s: wrote %d of %d bytes", wname, written, ti.Size())
		}
		for i := range sums { // in chunk order: the sum does not depend on the worker count
			qt.sumSq += sums[i]
			qt.maxErr = max(qt.maxErr, maxes[i])
		}
		return nil
	case suffixAbsmax:
		data = qt.absmax
	case suffixQuantMap:
		cb := testmodel.Codebook(testmodel.Quant(q.Type))
		data = f32Raw(cb[:])
	case suffixNestedAbsmax:
		data = f32Raw(qt.nested)
	case suffixNestedQuantMp:
		dm := testmodel.DynamicMap()
		data = f32Raw(dm[:])
	default:
		data = qt.state
	}
	_, err := w.Write(data)
	return err
}

func f32Raw(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// executeQuant runs the 16-bit merge into a temporary directory beside Options.Out, then rewrites it as the
// 4-bit output, streaming tensor by tensor, and removes the 16-bit copy.
func (p *Plan) executeQuant(ctx context.Context) (*Result, error) {
	final := p.opts.Out
	abs, err := filepath.Abs(final)
	if err != nil {
		return nil, fmt.Errorf("merge: output %s: %w", final, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(abs), ".hubsync-16bit-")
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	defer os.RemoveAll(tmp)
	p.opts.Out = filepath.Join(tmp, "merged")
	res16, err := p.execute16(ctx)
	p.opts.Out = final
	if err != nil {
		return nil, err
	}
	qo, err := p.openMerged(res16.Dir, res16.Files)
	if err != nil {
		return nil, err
	}
	defer qo.close()
	specs, qres, err := qo.plan(ctx)
	if err != nil {
		return nil, err
	}
	sp, err := export.PlanShards(specs, p.opts.MaxShardSize)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if !p.opts.SkipDiskCheck {
		if err := checkDiskSpace(final, sp.FileSize()+1<<20); err != nil {
			return nil, err
		}
	}
	dir, files, err := export.WriteModel(ctx, final, sp, qo.fill, func() (export.ModelFiles, error) {
		qo.finish(qres)
		cfg, err := os.ReadFile(filepath.Join(res16.Dir, configFile))
		if err != nil {
			return export.ModelFiles{}, err
		}
		if cfg, err = export.SetQuantizationConfig(cfg, qres.Report.Config); err != nil {
			return export.ModelFiles{}, err
		}
		var aux []export.AuxFile
		for _, a := range p.auxFiles() {
			aux = append(aux, export.AuxFile{Name: a.Name, Src: filepath.Join(res16.Dir, a.Name)})
		}
		ci := p.cardInfo(sp)
		ci.Quant = &qres.Report
		return export.ModelFiles{Config: cfg, Aux: aux, Card: export.ModelCard(ci)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	res := *res16
	res.Dir, res.Files, res.Tensors, res.Bytes, res.Shards = dir, files, len(specs), sp.TotalSize, len(sp.Shards)
	res.Quant = qres
	p.log.Info().Str("out", dir).Str("quant_type", p.opts.Quant.Type).Float64("rmse", qres.Report.RMSE).
		Float64("max_abs_error", qres.Report.Max).Int("quantized", qres.Report.Quantized).Msg("merged 4-bit")
	return &res, nil
}

// ParseQuantType returns "nf4" or "fp4" when s names a bitsandbytes 4-bit output dtype (case-insensitive), else "".
func ParseQuantType(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "nf4":
		return "nf4"
	case "fp4":
		return "fp4"
	}
	return ""
}
