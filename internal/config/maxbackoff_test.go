package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMaxBackoffKey: upload.max_backoff is loaded, defaults to 10m and is validated.
func TestMaxBackoffKey(t *testing.T) {
	if Default().Upload.MaxBackoff != 10*time.Minute {
		t.Errorf("default %s", Default().Upload.MaxBackoff)
	}
	for _, tc := range []struct {
		val string
		ok  bool
	}{{"30s", true}, {"2h", true}, {"500ms", false}, {"48h", false}} {
		p := filepath.Join(t.TempDir(), "c.yaml")
		yaml := "state_dir: " + t.TempDir() + "\nupload:\n  max_backoff: " + tc.val + "\nwatch:\n  - dir: " + t.TempDir() + "\n    repo: me/x\n"
		if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err == nil {
			err = c.Resolve(func(string) string { return "" })
		}
		if err == nil {
			err = c.Validate()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.val, err)
		}
		if err != nil && !strings.Contains(err.Error(), "max_backoff") {
			t.Errorf("%s: error does not name the key: %v", tc.val, err)
		}
	}
}
