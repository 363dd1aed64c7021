package config

import (
	"strings"
	"testing"
)

// TestUploadXet: upload.xet accepts auto, on and off (auto by default) and names the key otherwise.
func TestUploadXet(t *testing.T) {
	if got := Default().Upload.Xet; got != "auto" {
		t.Errorf("default upload.xet %q, want auto", got)
	}
	tests := []struct {
		v       string
		wantErr bool
	}{{"auto", false}, {"on", false}, {"off", false}, {"", false}, {"yes", true}, {"lfs", true}}
	for _, tc := range tests {
		c := Default()
		c.Upload.Xet = tc.v
		err := c.Validate()
		if got := err != nil && strings.Contains(err.Error(), "upload.xet"); got != tc.wantErr {
			t.Errorf("upload.xet %q: %v", tc.v, err)
		}
	}
}

// TestUploadXetYAML: "on" and "off" are read as words (not YAML 1.1 booleans).
func TestUploadXetYAML(t *testing.T) {
	for _, v := range []string{"auto", "on", "off"} {
		c, err := Parse([]byte("upload:\n  xet: " + v + "\n"))
		if err != nil || c.Upload.Xet != v {
			t.Errorf("xet: %s: %+v, %v", v, c, err)
		}
	}
	if _, err := Parse([]byte("upload:\n  xet: sometimes\n")); err == nil || !strings.Contains(err.Error(), "upload.xet") {
		t.Errorf("bad value: %v", err)
	}
}
