//go:build race

package ggml

// raceEnabled shrinks the tests' matrices under the race detector, which slows the quantizers ~20×; the
// quantizers share no memory between rows, so the race run needs coverage, not volume.
const raceEnabled = true
