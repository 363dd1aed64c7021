package llamacpp

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// allTypes are the GGUF output types hubsync writes.
var allTypes = []gguf.FileType{gguf.FileF32, gguf.FileF16, gguf.FileBF16, gguf.FileQ8_0, gguf.FileQ4_0,
	gguf.FileQ4_KM, gguf.FileQ5_KM, gguf.FileQ6_K}

// exportGGUF writes hubsync's GGUF of type ft of the model directory dir to out, through the Go API that
// `hubsync export gguf --model DIR` uses.
func exportGGUF(dir string, ft gguf.FileType, out string) error {
	src, err := gguf.OpenDir(dir)
	if err != nil {
		return err
	}
	defer src.Close()
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	f, err := gguf.Plan(src, gguf.Options{Type: ft, Config: cfg, TokenizerDir: dir, Name: "hubsync-test"})
	if err != nil {
		return err
	}
	return gguf.WriteFile(context.Background(), out, f)
}

// genModel generates spec into dir/name.
func genModel(t *testing.T, dir, name string, spec testmodel.BaseSpec) string {
	t.Helper()
	md := filepath.Join(dir, name)
	if _, err := testmodel.GenerateBase(context.Background(), md, spec); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return md
}

// logitStats compares logits with the reference: the largest absolute difference, and the largest absolute
// reference logit (the scale).
func logitStats(got []float64, ref []float64) (maxDiff, scale float64) {
	for i, r := range ref {
		maxDiff = math.Max(maxDiff, math.Abs(got[i]-r))
		scale = math.Max(scale, math.Abs(r))
	}
	return maxDiff, scale
}

// klDivergence is KL(softmax(p) ‖ softmax(q)) in nats.
func klDivergence(p, q []float64) float64 {
	lse := func(x []float64) float64 {
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, v)
		}
		var s float64
		for _, v := range x {
			s += math.Exp(v - m)
		}
		return m + math.Log(s)
	}
	lp, lq := lse(p), lse(q)
	var kl float64
	for i := range p {
		kl += math.Exp(p[i]-lp) * ((p[i] - lp) - (q[i] - lq))
	}
	return kl
}

// top2 returns the index of the largest value and its margin over the second largest.
func top2(x []float64) (best int, margin float64) {
	second := math.Inf(-1)
	for i, v := range x {
		switch {
		case v > x[best] || i == 0:
			if i != 0 {
				second = x[best]
			}
			best = i
		case v > second:
			second = v
		}
	}
	return best, x[best] - second
}

// errorStd is the standard deviation over the vocabulary of got − ref.
func errorStd(got, ref []float64) float64 {
	var sum, sq float64
	for i := range ref {
		d := got[i] - ref[i]
		sum += d
		sq += d * d
	}
	n := float64(len(ref))
	return math.Sqrt(math.Max(sq/n-(sum/n)*(sum/n), 0))
}
