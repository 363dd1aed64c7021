//go:build cuda

package cuda

import (
	"strings"
	"testing"
)

// TestProviderWithoutDevice: on a machine without a CUDA device (CI) the provider is unavailable, says why, and
// New fails with that reason.
func TestProviderWithoutDevice(t *testing.T) {
	pr := probe()
	if pr.Err == nil {
		t.Skipf("a CUDA device answers (%s)", pr.Device)
	}
	p := Provider()
	if p.Available() {
		t.Fatal("Available() = true without a device")
	}
	why := p.Unavailable()
	if why != pr.Err.Error() {
		t.Fatalf("reason %q, probe says %q", why, pr.Err)
	}
	if _, err := p.New(nil); err == nil || !strings.Contains(err.Error(), why) {
		t.Fatalf("New: %v, want the reason %q", err, why)
	}
	t.Logf("cuda: %s", why)
}
