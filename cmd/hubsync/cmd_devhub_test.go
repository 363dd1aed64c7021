package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// TestDevhubKeepsGeneratedToken: with --data the generated token survives a restart (kept in DIR, mode 0600);
// without it every start gets a new one; a damaged token file is an error naming it.
func TestDevhubKeepsGeneratedToken(t *testing.T) {
	t.Parallel()
	start := func(dir string) (string, error) {
		o := &devhubOptions{DataDir: dir, URLTTL: hubtest.DefaultURLTTL, PageSize: 10, RateLimit: 10,
			MultipartThreshold: "8MiB", MinPartSize: "5MiB"}
		opts, notes, err := o.options()
		if err != nil {
			return "", err
		}
		if len(opts.Tokens) != 1 || len(notes) != 1 || !strings.Contains(notes[0], opts.Tokens[0].Value) {
			t.Fatalf("tokens %v, notes %q", opts.Tokens, notes)
		}
		return opts.Tokens[0].Value, nil
	}
	data := filepath.Join(t.TempDir(), "data")
	first, err := start(data)
	if err != nil {
		t.Fatal(err)
	}
	second, err := start(data)
	if err != nil || second != first {
		t.Errorf("restart on the same --data: token %q (%v), want the first run's %q", second, err, first)
	}
	st, err := os.Stat(filepath.Join(data, devhubTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %03o, want 600", st.Mode().Perm())
	}
	a, _ := start("")
	b, _ := start("")
	if a == b || a == "" {
		t.Errorf("without --data two starts gave %q and %q, want two fresh tokens", a, b)
	}
	if err := os.WriteFile(filepath.Join(data, devhubTokenFile), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := start(data); err == nil || !strings.Contains(err.Error(), devhubTokenFile) {
		t.Errorf("damaged token file: %v, want an error naming it", err)
	}
}

// TestDevhubXetFlag: --xet turns the Xet CAS on; without it the server speaks LFS only.
func TestDevhubXetFlag(t *testing.T) {
	t.Parallel()
	for _, xet := range []bool{false, true} {
		o := &devhubOptions{URLTTL: hubtest.DefaultURLTTL, PageSize: 10, RateLimit: 10, MultipartThreshold: "8MiB",
			MinPartSize: "5MiB", Tokens: []string{"dev=hf_dev_xet_flag:write"}, Xet: xet}
		opts, _, err := o.options()
		if err != nil {
			t.Fatal(err)
		}
		if opts.Xet != xet {
			t.Fatalf("--xet=%v: Options.Xet %v", xet, opts.Xet)
		}
	}
	if f := newDevhubCommand(&globalOptions{}).Flags().Lookup("xet"); f == nil || f.DefValue != "false" {
		t.Fatalf("--xet flag: %+v", f)
	}
}
