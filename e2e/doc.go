// Package e2e holds hubsync's end-to-end tests. They build the hubsync binary once and run it as a user would:
// `hubsync devhub` as the local Hub, `hubsync watch` against a simulated trainer's output directory (killed
// with SIGKILL at chosen points and restarted, stopped with SIGTERM, left idle), `hubsync status --json`,
// `hubsync push --merged` and `hubsync demo`; then they inspect what landed on the Hub with the hub client and
// compare it, by SHA-256, with a local merge of the same checkpoints.
//
// The package holds no code besides its tests. `go test ./e2e/` runs everything (a few minutes on two cores;
// -short skips it). Environment:
//
//	HUBSYNC_E2E_TRIALS  number of crash-and-resume trials (default 6: one per kill point)
//	HUBSYNC_E2E_SEED    seed of the trials' random kill delays (default 1)
//	HUBSYNC_E2E_BIN     use this hubsync binary instead of building one
package e2e
