package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/hub"
)

// TestProgressLabels: the phase and the file never run together ("downloadingREADME.md",
// "committingcommit"), and every label has the same width.
func TestProgressLabels(t *testing.T) {
	var width int
	for _, tc := range []struct {
		phase      hub.Phase
		file, want string
	}{
		{hub.PhaseDownloading, "README.md", "downloading README.md"},
		{hub.PhaseCommitting, "", "committing  (commit)"},
		{hub.PhaseUploading, "model.safetensors", "uploading   model.safetensors"},
		{hub.PhaseHashing, strings.Repeat("d/", 30) + "x.bin", "hashing     …"},
	} {
		got := progressLabel(tc.phase, tc.file)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("progressLabel(%s, %q) = %q, want prefix %q", tc.phase, tc.file, got, tc.want)
		}
		if n := len([]rune(got)); width == 0 {
			width = n
		} else if n != width {
			t.Errorf("label %q is %d wide, others %d", got, n, width)
		}
	}
}

// TestProgressLogLineUnits: off a terminal the periodic line carries the rate and ETA as strings with units.
func TestProgressLogLineUnits(t *testing.T) {
	var buf strings.Builder
	g, _, _ := hubcliGlobals("", "")
	g.log = zerolog.New(&buf)
	r := newProgressReporter(context.Background(), g, time.Hour)
	r.event(hub.ProgressEvent{Phase: hub.PhaseUploading, File: "a", Done: 5e6, Total: 20e6})
	r.logLine("progress")
	r.close()
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if rate, _ := m["upload_rate"].(string); !strings.HasSuffix(rate, "B/s") {
		t.Errorf("upload_rate %v in %s", m["upload_rate"], buf.String())
	}
	if _, ok := m["upload_eta"].(string); !ok || strings.Contains(buf.String(), "upload_mb_s") {
		t.Errorf("line %s", buf.String())
	}
}
