package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --stall-timeout must be a positive duration: anything else is a usage error (exit 2) naming the flag.
func TestStallTimeoutFlagValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"zero", []string{"--stall-timeout", "0s", "whoami"}, 2},
		{"negative", []string{"--stall-timeout=-5s", "whoami"}, 2},
		{"not a duration", []string{"--stall-timeout", "soon", "whoami"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), "stall-timeout") {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
		})
	}
}
