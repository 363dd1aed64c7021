//go:build amd64 && !noasm && gc

package kernels

import "testing"

// TestSelectByFeatures checks the feature gating on any CPU: a CPU without AVX-512 (or without AVX2) does not
// offer the implementations it cannot run, and selecting one by name fails.
func TestSelectByFeatures(t *testing.T) {
	tests := []struct {
		f       features
		want    []string
		refused []string
	}{
		{features{}, []string{"generic"}, []string{"avx2", "avx512"}},
		{features{avx2: true}, []string{"avx2", "generic"}, []string{"avx512"}},
		{features{avx2: true, avx512: true}, []string{"avx512", "avx2", "generic"}, nil},
	}
	for _, tt := range tests {
		avail := append(implsFor(tt.f), Generic())
		var got []string
		for _, im := range avail {
			got = append(got, im.Name)
		}
		if len(got) != len(tt.want) {
			t.Fatalf("features %+v: implementations %v, want %v", tt.f, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("features %+v: implementations %v, want %v", tt.f, got, tt.want)
			}
		}
		if best, err := selectFrom(avail, "auto"); err != nil || best.Name != tt.want[0] {
			t.Errorf("features %+v: auto = %v, %v; want %s", tt.f, best, err, tt.want[0])
		}
		for _, name := range tt.refused {
			if im, err := selectFrom(avail, name); err == nil {
				t.Errorf("features %+v: Select(%q) = %s, want an error", tt.f, name, im.Name)
			}
		}
	}
}

// TestHostFeatures: what the CPU reports is what Available offers.
func TestHostFeatures(t *testing.T) {
	f := hostFeatures()
	if f.avx512 && !f.avx2 {
		t.Fatal("avx512 without avx2")
	}
	t.Logf("host features: %+v; implementations: %d", f, len(Available()))
}
