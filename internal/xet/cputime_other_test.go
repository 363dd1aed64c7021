//go:build !linux

package xet

import "time"

// threadCPU is not measured outside Linux; benchmarks then report wall-clock MB/s only.
func threadCPU() time.Duration { return 0 }
