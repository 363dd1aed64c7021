package main

import (
	"strings"
	"testing"
)

// TestBenchMergeDeviceFlag: bench merge takes --device and rejects a bad one before generating any model.
func TestBenchMergeDeviceFlag(t *testing.T) {
	code, _, stderr := hubcliRun(t, "bench", "merge", "--device", "tpu", "--dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "--device must be auto, cpu or cuda") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
