package merge

import (
	"fmt"
	"path/filepath"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/export/gguf"
)

// ggufSource is a Producer as a gguf.Source: the merged model's tensors, produced tile by tile (no merged
// safetensors written).
type ggufSource struct {
	*Producer
	tensors []gguf.Tensor
}

// Tensors implements gguf.Source.
func (s *ggufSource) Tensors() []gguf.Tensor { return s.tensors }

// GGUFSource returns the merged model as a gguf.Source: Tensors from Plan.Tensors, ReadTensor from the same
// deterministic tile stream as ProduceRange. A merge into a bitsandbytes 4-bit output is refused (GGUF is
// made from the 16/32-bit merge).
func (pr *Producer) GGUFSource() (gguf.Source, error) {
	if pr.p.opts.Quant != nil {
		return nil, fmt.Errorf("merge: a GGUF file is made from the 16/32-bit merge, not from a %s 4-bit output", pr.p.opts.Quant.Type)
	}
	ts := pr.p.Tensors()
	out := make([]gguf.Tensor, len(ts))
	for i, t := range ts {
		out[i] = gguf.Tensor{Name: t.Name, DType: t.DType, Shape: append([]int64(nil), t.Shape...)}
	}
	return &ggufSource{Producer: pr, tensors: out}, nil
}

// GGUFOptions are the gguf.Options of the merged model for file type typ: the merged config.json
// (export.MergedConfig, as the merged directory gets it) and the tokenizer directory (the checkpoint's, else the
// base's, as export.TokenizerFiles picks it). A model without tokenizer files gets TokenizerDir "" (gguf.Plan
// refuses it, naming the problem).
func (pr *Producer) GGUFOptions(typ gguf.FileType) (gguf.Options, error) {
	p := pr.p
	cfg, err := export.MergedConfig(p.base.config, p.modelDType, p.vocabSize, p.untie)
	if err != nil {
		return gguf.Options{}, &InputError{File: filepath.Join(p.base.dir, configFile), Msg: "cannot rewrite", Err: err}
	}
	dir, _ := export.TokenizerFiles(p.ad.dir, p.base.dir)
	return gguf.Options{Type: typ, Config: cfg, TokenizerDir: dir, Threads: p.opts.Threads}, nil
}

// SetCardGGUF lists the GGUF files published with the merged model on its model card (a GGUF section and the
// gguf tag). Call it before the card is written (Execute, WriteSmallFiles).
func (p *Plan) SetCardGGUF(files []export.GGUFFile) {
	p.cardGGUF = append([]export.GGUFFile(nil), files...)
}

// CardInfo is the model card information of the merge (as Execute writes it on the card), for a GGUF-only card.
func (p *Plan) CardInfo() (export.CardInfo, error) {
	sp, err := p.planShards()
	if err != nil {
		return export.CardInfo{}, err
	}
	return p.cardInfo(sp), nil
}
