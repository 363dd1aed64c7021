//go:build cuda

package cuda

import (
	"strings"
	"testing"
)

// TestProviderWithoutDevice: on a machine without a usable device the provider is unavailable and says why.
// (CI and the development machines have no GPU; with a device the reason names the missing launch path.)
func TestProviderWithoutDevice(t *testing.T) {
	p := Provider()
	if p.Available() {
		t.Fatal("Available() = true, but no kernel launch path is built")
	}
	why := p.Unavailable()
	pr := probe()
	switch {
	case pr.Err != nil && why != pr.Err.Error():
		t.Fatalf("reason %q, probe says %q", why, pr.Err)
	case pr.Err == nil && !strings.Contains(why, "no kernel launch path"):
		t.Fatalf("device %q: reason %q", pr.Device, why)
	}
	if _, err := p.New(nil); err == nil || !strings.Contains(err.Error(), why) {
		t.Fatalf("New: %v, want the reason %q", err, why)
	}
	t.Logf("cuda: %s", why)
}
