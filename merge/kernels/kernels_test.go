package kernels

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

func TestAvailable(t *testing.T) {
	av := Available()
	if len(av) == 0 || av[len(av)-1] != Generic() {
		t.Fatalf("Available() must end with generic, got %d implementations", len(av))
	}
	seen := map[string]bool{}
	for _, im := range av {
		if im.Name == "" || seen[im.Name] {
			t.Errorf("bad or duplicate name %q", im.Name)
		}
		seen[im.Name] = true
		if im.Dequant4 == nil || im.Round == nil || im.AddLowRank == nil || im.Encode == nil || im.Decode == nil ||
			im.SumSquares == nil || im.AddSquares == nil || im.Scale == nil {
			t.Errorf("%s: nil kernel", im.Name)
		}
	}
}

func TestSelect(t *testing.T) {
	av := Available()
	names := map[string]bool{}
	for _, im := range av {
		names[im.Name] = true
	}
	tests := []struct {
		in      string
		want    string // "" = error
		wantErr bool
	}{
		{in: "", want: av[0].Name},
		{in: "auto", want: av[0].Name},
		{in: " Generic ", want: "generic"},
		{in: "sse9", wantErr: true},
		{in: "avx2", want: "avx2", wantErr: !names["avx2"]},
		{in: "AVX512", want: "avx512", wantErr: !names["avx512"]},
	}
	for _, tt := range tests {
		im, err := Select(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "not available") {
				t.Errorf("Select(%q) = %v, %v; want a 'not available' error", tt.in, im, err)
			}
			continue
		}
		if err != nil || im.Name != tt.want {
			t.Errorf("Select(%q) = %v, %v; want %s", tt.in, im, err, tt.want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvVar, "generic")
	im, err := FromEnv()
	if err != nil || im != Generic() {
		t.Fatalf("FromEnv with %s=generic = %v, %v", EnvVar, im, err)
	}
	t.Setenv(EnvVar, "")
	if im, err := FromEnv(); err != nil || im != Available()[0] {
		t.Fatalf("FromEnv with %s empty = %v, %v; want the best implementation", EnvVar, im, err)
	}
	t.Setenv(EnvVar, "quantum")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvVar) {
		t.Fatalf("FromEnv with %s=quantum: error %v, want one naming %s", EnvVar, err, EnvVar)
	}
}

// TestNoAllocations: the kernels run in the merge's inner loop and must not allocate.
func TestNoAllocations(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	const rows, cols, r, n = 8, 300, 70, 8 * 300
	dst, coef, m := nonZero(rng, n), nonZero(rng, rows*r), nonZero(rng, r*cols)
	packed := make([]byte, n/2)
	scales := nonZero(rng, (n+63)/64)
	out := make([]byte, 4*n)
	acc := make([]float64, n)
	for _, im := range Available() {
		kernels := map[string]func(){
			"Dequant4":   func() { im.Dequant4(dst, packed, 0, &nf4, scales, 64) },
			"Round":      func() { im.Round(tensor.BF16, dst) },
			"AddLowRank": func() { im.AddLowRank(dst, coef, m, rows, cols, r) },
			"Encode":     func() { im.Encode(tensor.F16, dst, out) },
			"Decode":     func() { im.Decode(tensor.F16, out, dst) },
			"SumSquares": func() { im.SumSquares(dst) },
			"AddSquares": func() { im.AddSquares(acc, dst) },
			"Scale":      func() { im.Scale(dst[:len(coef)], coef) },
		}
		for name, f := range kernels {
			if a := testing.AllocsPerRun(10, f); a != 0 {
				t.Errorf("%s %s: %v allocations per call", im.Name, name, a)
			}
		}
	}
}
