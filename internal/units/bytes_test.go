package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // -1: error expected
	}{
		{"5GB", 5_000_000_000},
		{"5 GB", 5_000_000_000},
		{"  5GB\n", 5_000_000_000},
		{"5gb", 5_000_000_000},
		{"5Gb", 5_000_000_000}, // huggingface_hub upper-cases the unit: no bits
		{"1.5GB", 1_500_000_000},
		{"500MB", 500_000_000},
		{"10KB", 10_000},
		{"1TB", 1_000_000_000_000},
		{"0.1KB", 100}, // int(0.1*1000) = int(100.00000000000001)
		{"1.0000000001KB", 1000},
		{".5GB", 500_000_000},
		{"5.GB", 5_000_000_000},
		{"2e3KB", 2_000_000},
		{"+5MB", 5_000_000},
		{"5GiB", 5 << 30},
		{"512MiB", 512 << 20},
		{"512 mib", 512 << 20},
		{"1.5KiB", 1536},
		{"1TiB", 1 << 40},
		{"10", 10},
		{"1048576", 1 << 20},
		{"", -1},
		{"GB", -1},
		{"5", 5},
		{"5B", 5},
		{"5 G", -1},
		{"five GB", -1},
		{"-5GB", -1},
		{"-5", -1},
		{"0", 0},
		{"0GB", 0},
		{"0.0000000001KB", 0},
		{"infGB", -1},
		{"nanGB", -1},
		{"1_000KB", -1},
		{"1e400GB", -1},
		{"99999999999TB", -1},
		{"99999999999999999999", -1},
		{"5GB5", -1},
		{"0x10MB", -1},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("ParseBytes(%q) error %q does not quote the input", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"5GB", "1.5 gb", "5GiB", "10", "-1KB", "1e3MB", "garbage", "", "9e18TB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseBytes(s)
		if err != nil {
			if v != 0 {
				t.Fatalf("ParseBytes(%q) = %d with error %v", s, v, err)
			}
			return
		}
		if v < 0 || v == math.MaxInt64 {
			t.Fatalf("ParseBytes(%q) = %d", s, v)
		}
		if d, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil && d != v {
			t.Fatalf("ParseBytes(%q) = %d, want the plain integer %d", s, v, d)
		}
	})
}
