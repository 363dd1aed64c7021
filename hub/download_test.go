package hub

import (
	"fmt"
	"testing"
)

func TestContentRangeStart(t *testing.T) {
	tests := map[string]int64{"bytes 100-199/200": 100, "bytes 0-0/1": 0, " bytes 5-9/*": 5}
	for in, want := range tests {
		if got, ok := contentRangeStart(in); !ok || got != want {
			t.Errorf("contentRangeStart(%q) = %d, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "bytes */200", "items 1-2/3", "bytes -5-9/10", "bytes x-1/2"} {
		if _, ok := contentRangeStart(bad); ok {
			t.Errorf("contentRangeStart(%q) accepted", bad)
		}
	}
}

// FuzzContentRangeStart: an accepted start is non-negative and is the number the header starts with.
func FuzzContentRangeStart(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Add("bytes */1")
	f.Fuzz(func(t *testing.T, v string) {
		n, ok := contentRangeStart(v)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("negative start %d from %q", n, v)
		}
		var m int64
		if _, err := fmt.Sscanf(v, " bytes %d-", &m); err == nil && m != n {
			t.Fatalf("start %d, header says %d (%q)", n, m, v)
		}
	})
}
