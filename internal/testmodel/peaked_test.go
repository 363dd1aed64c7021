package testmodel

import (
	"context"
	"math"
	"path/filepath"
	"testing"
)

// TestPeakGivesAClearWinner checks that a tied, peaked GGUFSmall llama's float64 logits put the last token first
// by a wide margin on every sequence, while the unpeaked model's margin is small.
func TestPeakGivesAClearWinner(t *testing.T) {
	dir := t.TempDir()
	spec := GGUFSmall(ArchLlama)
	spec.Tied = true
	md := filepath.Join(dir, "m")
	if _, err := GenerateBase(context.Background(), md, spec); err != nil {
		t.Fatal(err)
	}
	seqs := [][]int{{1, 17, 300, 42, 999, 5, 77, 512, 3, 250, 128, 640}, {7}, {2, 900, 901, 902, 33}}
	margins := func() []float64 {
		var out []float64
		for _, s := range seqs {
			l, err := ForwardDir(md, s)
			if err != nil {
				t.Fatal(err)
			}
			best, second, scale := 0, math.Inf(-1), 0.0
			for i, v := range l {
				scale = math.Max(scale, math.Abs(v))
				if v > l[best] {
					best = i
				}
			}
			for i, v := range l {
				if i != best {
					second = math.Max(second, v)
				}
			}
			if best != s[len(s)-1] {
				out = append(out, -1)
				continue
			}
			out = append(out, (l[best]-second)/scale)
		}
		return out
	}
	before := margins()
	if err := Peak(md, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBaseInfo(md); err != nil {
		t.Fatalf("peaked base no longer loads: %v", err)
	}
	after := margins()
	for i, m := range after {
		if m < 0.5 {
			t.Errorf("sequence %d: peaked margin %.3g × max|logit| (want ≥ 0.5, last token first)", i, m)
		}
	}
	t.Logf("margin / max|logit| before %.3g, after Peak(4) %.3g", before, after)
}

// TestPeakRefusesBadShift checks the shift range.
func TestPeakRefusesBadShift(t *testing.T) {
	for _, s := range []int{0, -1, 21} {
		if err := Peak(t.TempDir(), s); err == nil {
			t.Errorf("shift %d accepted", s)
		}
	}
}
