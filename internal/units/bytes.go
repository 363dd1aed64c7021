// Package units parses the byte sizes hubsync's flags and configuration take ("5GB", "512MiB", "1048576").
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are huggingface_hub's parse_size_to_int units (decimal) and hubsync's binary extension.
var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1}, // after the others, which end in B too
}

// ParseBytes parses a byte size such as a max shard size. It accepts what huggingface_hub's parse_size_to_int accepts: surrounding
// spaces, a number (integer or decimal, e.g. "1.5"), optional spaces, and a case-insensitive decimal unit TB, GB,
// MB or KB (10^12, 10^9, 10^6, 10^3); the result is int(value × unit), truncated as Python does.
//
// hubsync extensions: a plain integer is a byte count ("1048576"), "B" is a unit of one byte ("100B"), and binary
// units TiB, GiB, MiB, KiB (2^40, 2^30, 2^20, 2^10, case-insensitive) are accepted, where huggingface_hub would
// reject "5GiB". Zero is a size (callers that need a positive one say so); negative, non-finite and out-of-range
// sizes are errors.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("invalid size %q: empty", s)
	}
	if isDigits(t) {
		v, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return v, nil
	}
	up := strings.ToUpper(t)
	for _, u := range sizeUnits {
		if !strings.HasSuffix(up, u.suffix) {
			continue
		}
		num := strings.TrimSpace(t[:len(t)-len(u.suffix)])
		if !isDecimal(num) {
			return 0, fmt.Errorf("invalid size %q: %q is not a number", s, num)
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q: %w", s, err)
		}
		x := math.Trunc(v * u.mult)
		if x >= math.MaxInt64 {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		if x < 0 {
			return 0, fmt.Errorf("invalid size %q: negative", s)
		}
		return int64(x), nil
	}
	return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number with a unit KB, MB, GB, TB (decimal) or KiB, MiB, GiB, TiB (binary), e.g. \"5GB\"", s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDecimal accepts [+-]digits[.digits] or [+-].digits, with an optional e/E exponent: the finite numbers
// Python's float() parses, without underscores, "inf" and "nan" (which would not make a size).
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}
