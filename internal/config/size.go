package config

import (
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/hubsync/hubsync/internal/units"
)

// ByteSize is a size in bytes, written like transformers' max_shard_size: "5GB" (decimal units KB, MB, GB, TB,
// case-insensitive), "2GiB" (binary units KiB, MiB, GiB, TiB), or a plain byte count.
type ByteSize int64

// ParseByteSize parses a size as every hubsync flag does (units.ParseBytes: "5GB", "1.5GB", "2GiB", "1048576").
func ParseByteSize(s string) (ByteSize, error) {
	n, err := units.ParseBytes(s)
	return ByteSize(n), err
}

// String formats the size exactly, in the largest unit that divides it: "5GB", "2GiB", "1234".
func (b ByteSize) String() string {
	n := int64(b)
	if n > 0 {
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"TB", 1e12}, {"TiB", 1 << 40}, {"GB", 1e9}, {"GiB", 1 << 30}, {"MB", 1e6}, {"MiB", 1 << 20}, {"kB", 1e3}, {"KiB", 1 << 10}} {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// UnmarshalYAML accepts a size string or a plain integer.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a size must be a scalar like 5GB", n.Line)}}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*b = v
	return nil
}

// MarshalYAML writes the size as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }
