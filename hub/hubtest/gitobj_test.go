package hubtest

import (
	"net"
	"strings"
	"testing"
	"time"
)

// Expected values computed with git 2.x (git hash-object, git write-tree, and git commit-tree with the
// message on stdin ending in a newline) on the same content.
func TestGitObjectIDs(t *testing.T) {
	if got := blobOID([]byte("hello\n")); got != "ce013625030ba8dba906f756967f9e9ca394464a" {
		t.Errorf("blob id %s", got)
	}
	if got, _ := blobOIDReader(strings.NewReader("hello\n"), 6); got != "ce013625030ba8dba906f756967f9e9ca394464a" {
		t.Errorf("streamed blob id %s", got)
	}
	if _, err := blobOIDReader(strings.NewReader("hello"), 6); err == nil {
		t.Error("short blob accepted")
	}
	lfsOID := "c565fe03ca9b6242e01dfddefe9bba3d98b270e19cd02fd85ceaf75e2b25bf12" // sha256("01234")
	ptr := lfsPointer(lfsOID, 5)
	if got := blobOID(ptr); got != "0a2f33c9c42c0476a4bb33e2f1c8501532acc083" {
		t.Errorf("pointer blob id %s", got)
	}
	files := map[string]fileEntry{
		"hello":     {OID: blobOID([]byte("hello\n"))},
		"a/b/c.txt": {OID: blobOID([]byte("x"))},
		"a/m.bin":   {OID: blobOID(ptr)},
	}
	trees := computeTrees(files)
	want := map[string]string{
		"":    "2b7b194a70145748f215b8433845cab32595ad0e",
		"a":   "e17401992587b84b2bcfa13b9ac5f2bcf4902e2c",
		"a/b": "e2b0c41b0f7802e3db16736400d84a86ca333494",
	}
	for d, w := range want {
		if trees[d] != w {
			t.Errorf("tree %q = %s, want %s", d, trees[d], w)
		}
	}
	if got := computeTrees(map[string]fileEntry{})[""]; got != emptyTreeOID {
		t.Errorf("empty tree %s", got)
	}
	date := time.Unix(1700000000, 0)
	first := commitOID(want[""], nil, "alice", date, "Add files\n\nbody")
	if first != "dde82b5e723a5854b87853962ae48961fa09e122" {
		t.Errorf("commit id %s", first)
	}
	if got := commitOID(want[""], []string{first}, "alice", date, "second"); got != "83cf7f944e025d882bec2816e76c0085e8202620" {
		t.Errorf("child commit id %s", got)
	}
}

func TestCommitListing(t *testing.T) {
	c := &commit{Files: map[string]fileEntry{
		"a.txt": {OID: "1"}, "d/x.txt": {OID: "2"}, "d/e/y.txt": {OID: "3"}, "z/w.txt": {OID: "4"},
	}}
	paths := func(es []listEntry) string {
		var s []string
		for _, e := range es {
			if e.Dir {
				s = append(s, e.Path+"/")
			} else {
				s = append(s, e.Path)
			}
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		dir       string
		recursive bool
		want      string
	}{
		{"", false, "a.txt d/ z/"},
		{"", true, "a.txt d/ d/e/ d/e/y.txt d/x.txt z/ z/w.txt"},
		{"d", false, "d/e/ d/x.txt"},
		{"d", true, "d/e/ d/e/y.txt d/x.txt"},
		{"d/e", false, "d/e/y.txt"},
	}
	for _, tt := range tests {
		if got := paths(c.list(tt.dir, tt.recursive)); got != tt.want {
			t.Errorf("list(%q, %v) = %s, want %s", tt.dir, tt.recursive, got, tt.want)
		}
	}
	if e, ok := c.lookup("d/e"); !ok || !e.Dir {
		t.Error("lookup of a directory")
	}
	if _, ok := c.lookup("d/e/y"); ok {
		t.Error("lookup of a missing path")
	}
}

func TestDialable(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8089}, "127.0.0.1:8089"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 80}, "127.0.0.1:80"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "[::1]:80"},
	}
	for _, tt := range tests {
		if got := dialable(tt.addr); got != tt.want {
			t.Errorf("dialable(%v) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}
