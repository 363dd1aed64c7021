package merge

import (
	"errors"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/merge/kernels"
)

// TestSelectBackendReasons: an explicit --device names the provider's reason when it is unavailable, and auto
// falls back to the CPU with a note only when a provider was built in.
func TestSelectBackendReasons(t *testing.T) {
	down := BackendProvider{Name: DeviceCUDA, Available: func() bool { return false },
		Unavailable: func() string { return "no NVIDIA driver (libcuda.so.1 not found)" },
		New:         func(*kernels.Impl) (Backend, error) { return nil, errors.New("must not be called") }}
	bare := BackendProvider{Name: DeviceCUDA, Available: func() bool { return false },
		New: func(*kernels.Impl) (Backend, error) { return nil, errors.New("must not be called") }}
	up := BackendProvider{Name: DeviceCUDA, Available: func() bool { return true },
		New: func(k *kernels.Impl) (Backend, error) { return NewCPUBackend(k), nil }}
	tests := []struct {
		name      string
		device    string
		providers []BackendProvider
		wantErr   string // substring; "" for success
		wantNote  string // substring of autoFallback; "" for none
	}{
		{"cuda without tag", "cuda", nil, "built without CUDA", ""},
		{"cuda without driver", "cuda", []BackendProvider{down}, "--device cuda: no NVIDIA driver (libcuda.so.1 not found)", ""},
		{"cuda without reason", "cuda", []BackendProvider{bare}, "no cuda device found", ""},
		{"auto without tag", "auto", nil, "", ""},
		{"auto without driver", "auto", []BackendProvider{down}, "", "cuda unavailable (no NVIDIA driver (libcuda.so.1 not found)); merging on the CPU"},
		{"empty is auto", " ", []BackendProvider{bare}, "", "no cuda device found"},
		{"auto with device", "AUTO", []BackendProvider{up}, "", ""},
		{"cpu with driver down", "cpu", []BackendProvider{down}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := selectBackend(tc.device, tc.providers, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || b == nil {
				t.Fatalf("selectBackend: %v", err)
			}
			note := autoFallback(tc.device, tc.providers)
			if (tc.wantNote == "") != (note == "") || !strings.Contains(note, tc.wantNote) {
				t.Fatalf("autoFallback = %q, want %q", note, tc.wantNote)
			}
		})
	}
}
