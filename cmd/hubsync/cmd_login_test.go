package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
)

// hubcliToken is the write token of user "w" on the CLI tests' Hub.
const hubcliToken = "hf_cli_test_secret"

func hubcliServer(t *testing.T) *hubtest.Server {
	t.Helper()
	return hubtest.NewTestServer(t, hubtest.Options{
		Tokens:             []hubtest.Token{{Name: "w", Value: hubcliToken, Write: true}},
		MinPartSize:        64 << 10,
		ChunkSize:          64 << 10,
		MultipartThreshold: 256 << 10,
	})
}

// hubcliGlobals returns global options wired to buffers.
func hubcliGlobals(endpoint, stdin string) (*globalOptions, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &globalOptions{Endpoint: endpoint, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, log: zerolog.Nop()}, &out, &errb
}

func hubcliEnv(m map[string]string) hub.Getenv { return func(k string) string { return m[k] } }

func TestLoginLogoutWhoami(t *testing.T) {
	s := hubcliServer(t)
	ctx := context.Background()
	home := t.TempDir()
	env := map[string]string{"HF_HOME": filepath.Join(home, "hf")}
	tokenFile := filepath.Join(home, "hf", "token")
	user := hub.KeyringUser(s.URL())

	t.Run("login stores in the keyring", func(t *testing.T) {
		kr := &hub.MemoryKeyring{}
		g, out, errb := hubcliGlobals(s.URL(), hubcliToken+"\n")
		if err := runLogin(ctx, g, &loginOptions{TokenStdin: true}, authEnv{getenv: hubcliEnv(env), keyring: kr}); err != nil {
			t.Fatal(err)
		}
		if v, _ := kr.Get(ctx, hub.KeyringService, user); v != hubcliToken {
			t.Errorf("keyring holds %q", v)
		}
		if !strings.Contains(out.String(), "as w") || strings.Contains(out.String()+errb.String(), hubcliToken) {
			t.Errorf("output %q / %q", out, errb)
		}
		if _, err := os.Stat(tokenFile); err == nil {
			t.Error("a token file was written although the keyring works")
		}
		// whoami finds it in the keyring and says so.
		g, out, _ = hubcliGlobals(s.URL(), "")
		if err := runWhoami(ctx, g, authEnv{getenv: hubcliEnv(env), keyring: kr}, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "user:     w") || !strings.Contains(out.String(), "source:   keyring (hubsync/"+user+")") ||
			!strings.Contains(out.String(), "role write") || strings.Contains(out.String(), hubcliToken) {
			t.Errorf("whoami output:\n%s", out)
		}
		// HF_TOKEN outranks the keyring.
		g, out, _ = hubcliGlobals(s.URL(), "")
		if err := runWhoami(ctx, g, authEnv{getenv: hubcliEnv(map[string]string{"HF_TOKEN": hubcliToken}), keyring: kr}, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "source:   HF_TOKEN") {
			t.Errorf("whoami output:\n%s", out)
		}
		// logout removes it.
		g, out, _ = hubcliGlobals(s.URL(), "")
		if err := runLogout(ctx, g, &logoutOptions{}, authEnv{getenv: hubcliEnv(env), keyring: kr}); err != nil {
			t.Fatal(err)
		}
		if _, err := kr.Get(ctx, hub.KeyringService, user); !errors.Is(err, hub.ErrKeyringNotFound) {
			t.Errorf("token still in the keyring: %v", err)
		}
		g, _, _ = hubcliGlobals(s.URL(), "")
		if err := runWhoami(ctx, g, authEnv{getenv: hubcliEnv(env), keyring: kr}, false); err == nil || !strings.Contains(err.Error(), "not logged in") {
			t.Errorf("whoami after logout: %v", err)
		}
	})

	t.Run("no keyring: refuse without --insecure-storage", func(t *testing.T) {
		g, _, _ := hubcliGlobals(s.URL(), hubcliToken)
		err := runLogin(ctx, g, &loginOptions{TokenStdin: true}, authEnv{getenv: hubcliEnv(env), keyring: &hub.MemoryKeyring{Unavailable: true}})
		if err == nil || !strings.Contains(err.Error(), "--insecure-storage") || strings.Contains(err.Error(), hubcliToken) {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(tokenFile); err == nil {
			t.Error("token file written without --insecure-storage")
		}
	})

	t.Run("no keyring: --insecure-storage writes a 0600 file", func(t *testing.T) {
		g, _, errb := hubcliGlobals(s.URL(), hubcliToken)
		kr := &hub.MemoryKeyring{Unavailable: true}
		if err := runLogin(ctx, g, &loginOptions{TokenStdin: true, InsecureStorage: true}, authEnv{getenv: hubcliEnv(env), keyring: kr}); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(tokenFile)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v %v", st, err)
		}
		if dst, _ := os.Stat(filepath.Dir(tokenFile)); dst.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %o", dst.Mode().Perm())
		}
		if !strings.Contains(errb.String(), "plain text") {
			t.Errorf("no warning: %q", errb)
		}
		// whoami reads it; logout without the flag keeps it and says where it is; with the flag deletes it.
		g, out, _ := hubcliGlobals(s.URL(), "")
		if err := runWhoami(ctx, g, authEnv{getenv: hubcliEnv(env), keyring: kr}, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "source:   token file ("+tokenFile+")") {
			t.Errorf("whoami:\n%s", out)
		}
		g, _, errb = hubcliGlobals(s.URL(), "")
		runLogout(ctx, g, &logoutOptions{}, authEnv{getenv: hubcliEnv(env), keyring: &hub.MemoryKeyring{}})
		if _, err := os.Stat(tokenFile); err != nil || !strings.Contains(errb.String(), tokenFile) {
			t.Errorf("logout without the flag: file %v, stderr %q", err, errb)
		}
		g, _, _ = hubcliGlobals(s.URL(), "")
		if err := runLogout(ctx, g, &logoutOptions{InsecureStorage: true}, authEnv{getenv: hubcliEnv(env), keyring: &hub.MemoryKeyring{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tokenFile); err == nil {
			t.Error("token file survived logout --insecure-storage")
		}
	})

	t.Run("bad tokens are not stored", func(t *testing.T) {
		for _, tok := range []string{"hf_wrong", "api_org_abc", ""} {
			kr := &hub.MemoryKeyring{}
			g, _, _ := hubcliGlobals(s.URL(), tok+"\n")
			err := runLogin(ctx, g, &loginOptions{TokenStdin: true}, authEnv{getenv: hubcliEnv(env), keyring: kr})
			if err == nil {
				t.Errorf("token %q accepted", tok)
			}
			if _, gerr := kr.Get(ctx, hub.KeyringService, user); gerr == nil {
				t.Errorf("token %q stored", tok)
			}
		}
	})

	t.Run("non-terminal stdin needs --token-stdin", func(t *testing.T) {
		g, _, _ := hubcliGlobals(s.URL(), hubcliToken)
		err := runLogin(ctx, g, &loginOptions{}, authEnv{getenv: hubcliEnv(env), keyring: &hub.MemoryKeyring{}})
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("err = %v, want a usage error", err)
		}
	})
}

// TestLoginNeverOverwritesSilently: a different token already stored (token file or keyring) is named by its
// whoami user and replaced only with --force; the same token again is fine (issue 7 §3).
func TestLoginNeverOverwritesSilently(t *testing.T) {
	s := hubtest.NewTestServer(t, hubtest.Options{Tokens: []hubtest.Token{
		{Name: "alice", Value: "hf_alice_secret", Write: true}, {Name: "bob", Value: "hf_bob_secret", Write: true}}})
	ctx := context.Background()
	env := map[string]string{"HF_HOME": filepath.Join(t.TempDir(), "hf")}
	tokenFile := filepath.Join(env["HF_HOME"], "token")
	for _, kr := range []*hub.MemoryKeyring{{Unavailable: true}, {}} {
		where := "keyring"
		if kr.Unavailable {
			where = "token file"
		}
		a := authEnv{getenv: hubcliEnv(env), keyring: kr}
		o := &loginOptions{TokenStdin: true, InsecureStorage: true}
		os.Remove(tokenFile)
		g, out, _ := hubcliGlobals(s.URL(), "hf_alice_secret\n")
		if err := runLogin(ctx, g, o, a); err != nil {
			t.Fatalf("%s: first login: %v", where, err)
		}
		if kr.Unavailable && !strings.Contains(out.String(), tokenFile) {
			t.Errorf("%s: login does not say where the token went: %q", where, out)
		}
		// The same token again is no overwrite.
		g, _, _ = hubcliGlobals(s.URL(), "hf_alice_secret\n")
		if err := runLogin(ctx, g, o, a); err != nil {
			t.Errorf("%s: same token again: %v", where, err)
		}
		g, out, errb := hubcliGlobals(s.URL(), "hf_bob_secret\n")
		err := runLogin(ctx, g, o, a)
		if err == nil || !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "--force") ||
			strings.Contains(err.Error()+out.String()+errb.String(), "hf_alice_secret") {
			t.Fatalf("%s: overwrite without --force: %v", where, err)
		}
		stored := func() string {
			if kr.Unavailable {
				b, _ := os.ReadFile(tokenFile)
				return string(b)
			}
			v, _ := kr.Get(ctx, hub.KeyringService, hub.KeyringUser(s.URL()))
			return v
		}
		if stored() != "hf_alice_secret" {
			t.Errorf("%s: the stored token changed without --force", where)
		}
		o.Force = true
		g, _, _ = hubcliGlobals(s.URL(), "hf_bob_secret\n")
		if err := runLogin(ctx, g, o, a); err != nil {
			t.Fatalf("%s: --force: %v", where, err)
		}
		if stored() != "hf_bob_secret" {
			t.Errorf("%s: --force did not replace the token", where)
		}
	}
}

// TestLogoutWithoutKeyring: without a usable keyring logout says one clear thing.
func TestLogoutWithoutKeyring(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{"HF_HOME": filepath.Join(t.TempDir(), "hf")}
	a := authEnv{getenv: hubcliEnv(env), keyring: &hub.MemoryKeyring{Unavailable: true}}
	g, out, errb := hubcliGlobals("https://hub.example", "")
	if err := runLogout(ctx, g, &logoutOptions{}, a); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String()+errb.String(), "\n"); lines != 1 || !strings.Contains(out.String(), "Not logged in") {
		t.Errorf("no token anywhere: stdout %q stderr %q", out, errb)
	}
	if err := hub.WriteTokenFile(filepath.Join(env["HF_HOME"], "token"), "hf_x"); err != nil {
		t.Fatal(err)
	}
	g, out, errb = hubcliGlobals("https://hub.example", "")
	err := runLogout(ctx, g, &logoutOptions{}, a)
	if err == nil || !strings.Contains(err.Error(), "--insecure-storage") || out.Len()+errb.Len() != 0 {
		t.Errorf("token file present: err %v, stdout %q stderr %q", err, out, errb)
	}
	g, out, errb = hubcliGlobals("https://hub.example", "")
	if err := runLogout(ctx, g, &logoutOptions{InsecureStorage: true}, a); err != nil || strings.Count(out.String(), "\n") != 1 || errb.Len() != 0 {
		t.Errorf("--insecure-storage: err %v, stdout %q stderr %q", err, out, errb)
	}
}

// TestWhoamiJSON: whoami --json prints one object naming the user and the token source, never the token.
func TestWhoamiJSON(t *testing.T) {
	s := hubcliServer(t)
	g, out, _ := hubcliGlobals(s.URL(), "")
	if err := runWhoami(context.Background(), g, authEnv{getenv: hubcliEnv(map[string]string{"HF_TOKEN": hubcliToken})}, true); err != nil {
		t.Fatal(err)
	}
	var v struct{ User, Source, Endpoint, Role string }
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.User != "w" || v.Source != "HF_TOKEN" || v.Endpoint != s.URL() ||
		strings.Contains(out.String(), hubcliToken) {
		t.Errorf("whoami --json: %q (%v)", out, err)
	}
}
