//go:build race

package e2e

// raceEnabled: the tests run with -race, so the hubsync binary is built with -race too.
const raceEnabled = true
