package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/export/gguf"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/hub/hubtest"
)

// hubTree lists repo@rev's files (path → entry).
func hubTree(t *testing.T, s *hubtest.Server, repo, rev string) map[string]hub.TreeEntry {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ents, err := c.ListTree(context.Background(), repo, rev, "", true)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hub.TreeEntry{}
	for _, e := range ents {
		if e.Type == "file" && e.Path != ".gitattributes" {
			out[e.Path] = e
		}
	}
	return out
}

// TestPushGGUFCLI: push --gguf publishes one commit holding one LFS file per type and a GGUF card, byte for
// byte what export gguf writes, the same with --staging none (never on disk) as with disk; --merged --gguf puts
// the merged model and the GGUF files (in --gguf-path) in one commit, its card with a GGUF section.
func TestPushGGUFCLI(t *testing.T) {
	hubcliIsolate(t)
	s := hubcliServer(t)
	f := newCkptFixture(t, 60)
	ckpt := filepath.Join(f.outputs, "checkpoint-60")
	local := filepath.Join(t.TempDir(), "export")
	if code, _, errb := hubcliRun(t, "export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", local, "--type", "q8_0,f16", "--name", "tiny"); code != 0 {
		t.Fatalf("export gguf: %s", errb)
	}
	want := digests(t, local)
	g := []string{"--endpoint", s.URL(), "--token", hubcliToken, "--log-format", "json"}
	const repo = "w/tiny-GGUF"
	for _, staging := range []string{"disk", "none"} {
		// One branch per staging mode: the same repo name, so the same file names and general.name.
		rev := "staging-" + staging
		before := s.Stats().Commits
		args := append(append([]string{}, g...), "push", ckpt, "--repo", repo, "--revision", rev, "--gguf", "q8_0,F16", "--base", f.base, "--staging", staging)
		code, out, errb := hubcliRun(t, args...)
		if code != 0 {
			t.Fatalf("push --gguf --staging %s: exit %d\n%s", staging, code, errb)
		}
		if !strings.Contains(out, "/"+repo+"/commit/") {
			t.Errorf("stdout %q", out)
		}
		if n := s.Stats().Commits - before; n != 1 {
			t.Errorf("staging %s: %d commits, want one", staging, n)
		}
		tree := hubTree(t, s, repo, rev)
		const name = "tiny"
		got := hubDigests(t, s, repo, rev)
		if len(tree) != 3 || got[name+"-Q8_0.gguf"] != want["tiny-Q8_0.gguf"] || got[name+"-F16.gguf"] != want["tiny-F16.gguf"] {
			t.Errorf("staging %s: %s holds %v, want README.md and the exported files %v", staging, repo, got, want)
		}
		for p, e := range tree {
			if strings.HasSuffix(p, ".gguf") && !e.IsLFS() {
				t.Errorf("%s is not in LFS", p)
			}
		}
		card := hubFile(t, s, repo, rev, "README.md")
		for _, w := range []string{"library_name: gguf", "- gguf", "llama-cli -hf " + repo + ":Q8_0", "ollama run hf.co/" + repo + ":Q8_0", name + "-F16.gguf"} {
			if !strings.Contains(card, w) {
				t.Errorf("card lacks %q:\n%s", w, card)
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(f.outputs, ".hubsync-staging")); len(ents) != 0 {
		t.Errorf("staging not cleaned: %v", ents)
	}

	// --merged --gguf: one commit with both, GGUF files in their folder.
	before := s.Stats().Commits
	args := append(append([]string{}, g...), "push", ckpt, "--repo", "w/both", "--merged", "--gguf", "q8_0", "--gguf-path", "gguf", "--gguf-pre", "gpt-2", "--base", f.base, "--staging", "disk")
	if code, _, errb := hubcliRun(t, args...); code != 0 {
		t.Fatalf("push --merged --gguf: %s", errb)
	}
	if n := s.Stats().Commits - before; n != 1 {
		t.Errorf("--merged --gguf made %d commits", n)
	}
	tree := hubTree(t, s, "w/both", "main")
	if _, ok := tree["gguf/both-Q8_0.gguf"]; !ok {
		t.Errorf("no gguf/both-Q8_0.gguf in %v", tree)
	}
	if h, err := gguf.Parse([]byte(hubFile(t, s, "w/both", "main", "gguf/both-Q8_0.gguf"))); err != nil {
		t.Errorf("gguf/both-Q8_0.gguf: %v", err)
	} else if kv, ok := h.Get("tokenizer.ggml.pre"); !ok || kv.Value != "gpt-2" {
		t.Errorf("--gguf-pre gpt-2: tokenizer.ggml.pre = %#v", kv.Value)
	}
	if _, ok := tree["model.safetensors"]; !ok {
		if _, ok := tree["model.safetensors.index.json"]; !ok {
			t.Errorf("no merged weights in %v", tree)
		}
	}
	// Staged on disk beside the merged shards, the file is made from them: the same bytes as export gguf's.
	bothRef := filepath.Join(t.TempDir(), "both-Q8_0.gguf")
	if code, _, errb := hubcliRun(t, "export", "gguf", "--base", f.base, "--adapter", ckpt, "--out", bothRef, "--type", "q8_0", "--name", "both"); code != 0 {
		t.Fatalf("export gguf: %s", errb)
	}
	if got, want := hubDigests(t, s, "w/both", "main")["gguf/both-Q8_0.gguf"], fileDigest(t, bothRef); got != want {
		t.Errorf("gguf/both-Q8_0.gguf on the Hub differs from export gguf's")
	}
	card := hubFile(t, s, "w/both", "main", "README.md")
	for _, w := range []string{"library_name: transformers", "- gguf", "## GGUF", "`gguf/both-Q8_0.gguf`", "ollama run hf.co/w/both:Q8_0", "AutoModelForCausalLM"} {
		if !strings.Contains(card, w) {
			t.Errorf("merged card lacks %q:\n%s", w, card)
		}
	}

	// Usage errors.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--gguf", "q8_0", "--adapter-only"}, "--gguf"},
		{[]string{"--gguf", "q9"}, "q9"},
		{[]string{"--gguf-path", "x"}, "--gguf-path applies to --gguf"},
		{[]string{"--gguf-pre", "qwen2"}, "--gguf-pre applies to --gguf"},
		{[]string{"--gguf", "q8_0", "--merged", "--dtype", "nf4"}, "16/32-bit"},
		{[]string{"--gguf", "q8_0", "--gguf-path", "../up"}, "--gguf-path"},
	} {
		code, _, errb := hubcliRun(t, append(append(append([]string{}, g...), "push", ckpt, "--repo", "w/x"), tc.args...)...)
		if code != 2 || !strings.Contains(errb, tc.msg) {
			t.Errorf("%v: exit %d, %s; want 2 and %q", tc.args, code, errb, tc.msg)
		}
	}
}

// hubFile downloads one file of repo@rev and returns its text.
func hubFile(t *testing.T, s *hubtest.Server, repo, rev, name string) string {
	t.Helper()
	c, err := hub.New(hub.Options{Endpoint: s.URL(), Token: hubcliToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	dir := filepath.Join(t.TempDir(), "dl")
	if _, err := c.Download(context.Background(), repo, rev, hub.DownloadOptions{LocalDir: dir, Include: []string{name}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fileDigest is the hex SHA-256 of one file (as digests computes it).
func fileDigest(t *testing.T, p string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return digests(t, dir)["f"]
}
