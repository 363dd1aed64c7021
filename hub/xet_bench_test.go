package hub

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// benchSegment is one tensor (or the header) of a generated merged checkpoint.
type benchSegment struct {
	name    string
	off, n  int64
	changed bool // its bytes differ between checkpoints (a LoRA target)
}

// benchCheckpoint lays out a bf16 merged model in hubsync's tensor order (embeddings, then per layer q, k, v, o,
// gate, up, down and the norms, then the final norm and lm_head) with the given LoRA targets changed.
func benchCheckpoint(layers, hidden, inter, kvDim, vocab int64, targets map[string]bool) ([]benchSegment, int64) {
	var segs []benchSegment
	var off int64
	add := func(name, kind string, n int64) {
		segs = append(segs, benchSegment{name: name, off: off, n: n, changed: targets[kind]})
		off += n
	}
	add("header", "header", 12<<10)
	add("model.embed_tokens.weight", "", vocab*hidden*2)
	for l := range layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"self_attn.q_proj.weight", "q_proj", hidden*hidden*2)
		add(p+"self_attn.k_proj.weight", "k_proj", kvDim*hidden*2)
		add(p+"self_attn.v_proj.weight", "v_proj", kvDim*hidden*2)
		add(p+"self_attn.o_proj.weight", "o_proj", hidden*hidden*2)
		add(p+"mlp.gate_proj.weight", "", inter*hidden*2)
		add(p+"mlp.up_proj.weight", "", inter*hidden*2)
		add(p+"mlp.down_proj.weight", "", hidden*inter*2)
		add(p+"input_layernorm.weight", "", hidden*2)
		add(p+"post_attention_layernorm.weight", "", hidden*2)
	}
	add("model.norm.weight", "", hidden*2)
	add("lm_head.weight", "", vocab*hidden*2)
	return segs, off
}

// benchContent produces checkpoint version v's bytes: each segment is pseudo-random from (segment, version if
// changed), in 64 KiB blocks so any range can be produced on its own.
func benchContent(segs []benchSegment, v uint64) ContentFunc {
	const block = 64 << 10
	return func(ctx context.Context, off, n int64, w io.Writer) error {
		buf := make([]byte, block)
		for i := 0; n > 0; {
			for i < len(segs) && segs[i].off+segs[i].n <= off {
				i++
			}
			s := segs[i]
			seed := uint64(i) + 1
			if s.changed || s.name == "header" {
				seed |= v << 40
			}
			rel := off - s.off
			b := rel / block
			r := rand.New(rand.NewPCG(seed, uint64(b)))
			for j := 0; j+8 <= block; j += 8 {
				binary.LittleEndian.PutUint64(buf[j:], r.Uint64())
			}
			from := rel - b*block
			m := min(block-from, s.n-rel, n)
			if _, err := w.Write(buf[from : from+m]); err != nil {
				return err
			}
			off += m
			n -= m
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestXetDedupFigure measures the bytes a second checkpoint sends through Xet (against the first one in the
// shard cache) on the TinyLlama-1.1B shape with q_proj,v_proj changed, against the LFS path (the whole file).
// It chunks and hashes 4.4 GB, so it runs only with HUBSYNC_XET_BENCH=1 (HUBSYNC_XET_BENCH=small: 4 layers).
func TestXetDedupFigure(t *testing.T) {
	mode := os.Getenv("HUBSYNC_XET_BENCH")
	if mode == "" {
		t.Skip("set HUBSYNC_XET_BENCH=1 (TinyLlama shape, 2.2 GB per checkpoint) or small")
	}
	layers := int64(22)
	if mode == "small" {
		layers = 4
	}
	segs, size := benchCheckpoint(layers, 2048, 5632, 256, 32000, map[string]bool{"q_proj": true, "v_proj": true})
	var changed int64
	for _, s := range segs {
		if s.changed {
			changed += s.n
		}
	}
	s := newFakeXet(t)
	s.light = true
	cache := t.TempDir()
	ctx := context.Background()
	var sent [2]int64
	for v := range 2 {
		content := benchContent(segs, uint64(v+1))
		h := sha256.New()
		if err := content(ctx, 0, size, h); err != nil {
			t.Fatal(err)
		}
		f := &preparedFile{UploadFile: UploadFile{LocalPath: fmt.Sprintf("checkpoint-%d", v+1), Content: content},
			path: "model.safetensors", sha256: hex.EncodeToString(h.Sum(nil)), size: size}
		c := newTestClient(t, s.hub.URL, s.hubToken, func(o *Options) { o.Xet = XetOn; o.XetCacheDir = cache })
		before := s.xorbBytes
		t0 := time.Now()
		plans, err := c.batchUpload(ctx, "o/r", "main", false, []batchItem{{OID: f.sha256, Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.uploadOne(ctx, "o/r", "main", false, f, plans[f.sha256], nil, newProgressSink(nil)); err != nil {
			t.Fatal(err)
		}
		sent[v] = s.xorbBytes - before + int64(len(s.shards[len(s.shards)-1]))
		t.Logf("checkpoint %d: %d bytes, Xet sent %d bytes (xorbs + shard) in %.1fs", v+1, size, sent[v], time.Since(t0).Seconds())
	}
	t.Logf("second checkpoint (%d layers, q_proj,v_proj changed: %d bytes = %.1f%%): Xet %d bytes (%.1f%% of the file, %.1f%% deduplicated); LFS %d bytes",
		layers, changed, 100*float64(changed)/float64(size), sent[1], 100*float64(sent[1])/float64(size),
		100-100*float64(sent[1])/float64(size), size)
	if sent[1] > changed+changed/5+(1<<20) {
		t.Errorf("the second checkpoint sent %d bytes for %d changed", sent[1], changed)
	}
}
