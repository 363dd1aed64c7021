package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// TestXetFlagValidated: --xet takes auto, on or off; anything else is a usage error naming the flag.
func TestXetFlagValidated(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--xet", "sometimes", "whoami"}, strings.NewReader(""), &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--xet") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// TestPushXet: push uses Xet against devhub --xet by default (auto), LFS with --xet off or
// HF_HUB_DISABLE_XET=1, and --xet on fails clearly against a Hub without Xet.
func TestPushXet(t *testing.T) {
	hubcliIsolate(t)
	s := hubtest.NewTestServer(t, hubtest.Options{
		Tokens: []hubtest.Token{{Name: "w", Value: hubcliToken, Write: true}}, Xet: true,
	})
	noXet := hubcliServer(t)
	dir := t.TempDir()
	data := make([]byte, 600<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	push := func(endpoint, repo string, extra ...string) (int, string) {
		args := append([]string{"--endpoint", endpoint, "--token", hubcliToken}, extra...)
		code, _, errb := hubcliRun(t, append(args, "push", dir, "--repo", repo)...)
		return code, errb
	}
	shards := func() int64 { return s.Stats().Xet.ShardsStored }

	if code, errb := push(s.URL(), "w/auto"); code != 0 || shards() != 1 {
		t.Fatalf("auto: exit %d, %d shards\n%s", code, shards(), errb)
	}
	data[0] ^= 1 // another object, so that the next pushes upload again
	os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644)
	if code, errb := push(s.URL(), "w/off", "--xet", "off"); code != 0 || shards() != 1 {
		t.Fatalf("--xet off: exit %d, %d shards\n%s", code, shards(), errb)
	}
	data[0] ^= 2
	os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644)
	t.Setenv("HF_HUB_DISABLE_XET", "1")
	if code, errb := push(s.URL(), "w/env", "--xet", "on"); code != 0 || shards() != 1 {
		t.Fatalf("HF_HUB_DISABLE_XET=1: exit %d, %d shards\n%s", code, shards(), errb)
	}
	t.Setenv("HF_HUB_DISABLE_XET", "")
	if code, errb := push(noXet.URL(), "w/on", "--xet", "on"); code == 0 || !strings.Contains(errb, "xet") {
		t.Fatalf("--xet on without Xet: exit %d\n%s", code, errb)
	}
}
