package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func mapEnv(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestFindTokenOrder(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	hfHome := filepath.Join(dir, "hfhome")
	os.MkdirAll(creds, 0o700)
	os.MkdirAll(hfHome, 0o700)
	os.WriteFile(filepath.Join(creds, "hf_token"), []byte("  hf_creds\n"), 0o600)
	os.WriteFile(filepath.Join(hfHome, "token"), []byte("hf_file\n"), 0o600)
	custom := filepath.Join(dir, "custom_token")
	os.WriteFile(custom, []byte("hf_custom"), 0o600)
	emptyCreds := filepath.Join(dir, "emptycreds")
	os.MkdirAll(emptyCreds, 0o700)
	os.WriteFile(filepath.Join(emptyCreds, "hf_token"), []byte(" \n"), 0o600)

	kr := &MemoryKeyring{}
	kr.Set(context.Background(), KeyringService, "hub.example:8080", "hf_keyring")

	all := map[string]string{
		"CREDENTIALS_DIRECTORY": creds, "HF_TOKEN": "hf_env", "HUGGING_FACE_HUB_TOKEN": "hf_legacy", "HF_HOME": hfHome,
	}
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range all {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		keyring  Keyring
		want     string
		source   TokenSource
	}{
		{"flag wins", " hf_flag ", all, kr, "hf_flag", TokenSourceFlag},
		{"credentials dir", "", all, kr, "hf_creds", TokenSourceCredentials},
		{"empty credential file is none", "", merge(all, map[string]string{"CREDENTIALS_DIRECTORY": emptyCreds}), kr, "hf_env", TokenSourceEnv},
		{"HF_TOKEN", "", without("CREDENTIALS_DIRECTORY"), kr, "hf_env", TokenSourceEnv},
		{"empty HF_TOKEN is none", "", merge(without("CREDENTIALS_DIRECTORY"), map[string]string{"HF_TOKEN": "  "}), kr, "hf_legacy", TokenSourceEnvLegacy},
		{"legacy env", "", without("CREDENTIALS_DIRECTORY", "HF_TOKEN"), kr, "hf_legacy", TokenSourceEnvLegacy},
		{"keyring", "", without("CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), kr, "hf_keyring", TokenSourceKeyring},
		{"keyring unavailable falls through", "", without("CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), &MemoryKeyring{Unavailable: true}, "hf_file", TokenSourceFile},
		{"token file", "", without("CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), nil, "hf_file", TokenSourceFile},
		{"HF_TOKEN_PATH", "", merge(without("CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), map[string]string{"HF_TOKEN_PATH": custom}), nil, "hf_custom", TokenSourceFile},
		{"nothing", "", map[string]string{"HOME": dir}, nil, "", TokenSourceNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := FindToken(context.Background(), TokenLookup{
				Explicit: tc.explicit, Getenv: mapEnv(tc.env), Keyring: tc.keyring, Endpoint: "http://hub.example:8080/",
			})
			if err != nil {
				t.Fatal(err)
			}
			if tok.Value != tc.want || tok.Source != tc.source {
				t.Errorf("got %q from %q, want %q from %q", tok.Value, tok.Source, tc.want, tc.source)
			}
			if tok.Found() && (strings.Contains(tok.String(), tok.Value) || strings.Contains(fmt.Sprintf("%v %+v %#v", tok, tok, tok), tok.Value)) {
				t.Errorf("formatting the token shows its value: %v", tok)
			}
			if b, _ := json.Marshal(tok); tok.Found() && strings.Contains(string(b), tok.Value) {
				t.Errorf("JSON shows the value: %s", b)
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestFindTokenUnreadableCredentialIsAnError(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: reading it fails.
	os.MkdirAll(filepath.Join(dir, "hf_token"), 0o700)
	_, err := FindToken(context.Background(), TokenLookup{Getenv: mapEnv(map[string]string{"CREDENTIALS_DIRECTORY": dir, "HF_TOKEN": "x"})})
	if err == nil || !strings.Contains(err.Error(), "hf_token") {
		t.Fatalf("err = %v, want an error naming the file", err)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		env                     map[string]string
		home, tokenPath, hubDir string
	}{
		{map[string]string{"HOME": "/h"}, "/h/.cache/huggingface", "/h/.cache/huggingface/token", "/h/.cache/huggingface/hub"},
		{map[string]string{"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x/huggingface", "/x/huggingface/token", "/x/huggingface/hub"},
		{map[string]string{"HOME": "/h", "HF_HOME": "~/hf"}, "/h/hf", "/h/hf/token", "/h/hf/hub"},
		{map[string]string{"HF_HOME": "/hf", "HF_TOKEN_PATH": "/t", "HF_HUB_CACHE": "/c"}, "/hf", "/t", "/c"},
		{map[string]string{"HF_HOME": "/hf", "HUGGINGFACE_HUB_CACHE": "/legacy"}, "/hf", "/hf/token", "/legacy"},
	}
	for _, tc := range tests {
		g := mapEnv(tc.env)
		if got := HFHome(g); got != tc.home {
			t.Errorf("HFHome(%v) = %q, want %q", tc.env, got, tc.home)
		}
		if got := TokenFilePath(g); got != tc.tokenPath {
			t.Errorf("TokenFilePath(%v) = %q, want %q", tc.env, got, tc.tokenPath)
		}
		if got := HubCacheDir(g); got != tc.hubDir {
			t.Errorf("HubCacheDir(%v) = %q, want %q", tc.env, got, tc.hubDir)
		}
	}
}

func TestKeyringUser(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "huggingface.co",
		"https://huggingface.co/": "huggingface.co",
		"http://127.0.0.1:8089":   "127.0.0.1:8089",
		"https://Hub.Example.COM": "hub.example.com",
	} {
		if got := KeyringUser(in); got != want {
			t.Errorf("KeyringUser(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteTokenFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "newdir", "hf")
	p := filepath.Join(dir, "token")
	if err := WriteTokenFile(p, " hf_abc \n"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %o, want 600", st.Mode().Perm())
	}
	dst, _ := os.Stat(dir)
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o, want 700", dst.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); string(b) != "hf_abc" {
		t.Errorf("content %q", b)
	}
	if err := WriteTokenFile(p, "  "); err == nil {
		t.Error("empty token written")
	}
	removed, err := RemoveTokenFile(p)
	if !removed || err != nil {
		t.Errorf("RemoveTokenFile = %v, %v", removed, err)
	}
	removed, err = RemoveTokenFile(p)
	if removed || err != nil {
		t.Errorf("second RemoveTokenFile = %v, %v", removed, err)
	}
}

func TestSystemKeyringFastSkipWithoutBus(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("no session-bus check on this OS")
	}
	k := SystemKeyring{Getenv: mapEnv(map[string]string{"XDG_RUNTIME_DIR": t.TempDir()})}
	start := time.Now()
	_, err := k.Get(context.Background(), KeyringService, "x")
	if !errors.Is(err, ErrKeyringUnavailable) {
		t.Fatalf("err = %v, want ErrKeyringUnavailable", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("skip took %v", d)
	}
	k = SystemKeyring{Getenv: mapEnv(map[string]string{"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"})}
	if _, err := k.Get(context.Background(), KeyringService, "x"); !errors.Is(err, ErrKeyringUnavailable) {
		t.Fatalf("err = %v, want ErrKeyringUnavailable", err)
	}
}

func TestMemoryKeyring(t *testing.T) {
	ctx := context.Background()
	k := &MemoryKeyring{}
	if _, err := k.Get(ctx, "s", "u"); !errors.Is(err, ErrKeyringNotFound) {
		t.Fatal(err)
	}
	k.Set(ctx, "s", "u", "v")
	if v, _ := k.Get(ctx, "s", "u"); v != "v" {
		t.Fatal(v)
	}
	if err := k.Delete(ctx, "s", "u"); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, "s", "u"); !errors.Is(err, ErrKeyringNotFound) {
		t.Fatal(err)
	}
}

// TestWriteTokenFileKeepsExistingDirMode: an existing directory (here a sticky, world-writable one like /tmp)
// keeps its mode; only missing directories are created 0700 (issue 14 item 7).
func TestWriteTokenFileKeepsExistingDirMode(t *testing.T) {
	for _, mode := range []os.FileMode{os.ModeSticky | 0o777, 0o755, 0o750} {
		dir := filepath.Join(t.TempDir(), "shared")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Stat(dir)
		if err := WriteTokenFile(filepath.Join(dir, "hf_token"), "hf_abc"); err != nil {
			t.Fatal(err)
		}
		after, _ := os.Stat(dir)
		if after.Mode() != before.Mode() {
			t.Errorf("existing dir mode changed from %v to %v", before.Mode(), after.Mode())
		}
		st, err := os.Stat(filepath.Join(dir, "hf_token"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("token file: %v %v", st, err)
		}
	}
}
