package main

import (
	"context"
	"strings"
	"testing"
)

// TestBenchQuantizers: the quantizer part of bench gguf prints one MB/s line per type, and refuses an unknown
// type name.
func TestBenchQuantizers(t *testing.T) {
	g, out, _ := hubcliGlobals("", "")
	if err := benchQuantizers(context.Background(), g, []string{"q8_0", "Q4_K"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Q8_0", "Q4_K", "MB/s per core"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err := benchQuantizers(context.Background(), g, []string{"q3_k"}); err == nil || !strings.Contains(err.Error(), "q3_k") {
		t.Errorf("unknown type: err = %v", err)
	}
	if code, _, errb := hubcliRun(t, "bench", "gguf", "--shape", "70b"); code != 2 || !strings.Contains(errb, "--shape") {
		t.Errorf("bad shape: exit %d, %s", code, errb)
	}
}
