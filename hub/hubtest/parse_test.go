package hubtest

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTokenFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    Token
		wantErr string
	}{
		{"alice=hf_abc", Token{Name: "alice", Value: "hf_abc"}, ""},
		{"alice=hf_abc:write", Token{Name: "alice", Value: "hf_abc", Write: true}, ""},
		{"bob=t:read", Token{Name: "bob", Value: "t"}, ""},
		{"ci=t:write:orgs=acme+labs", Token{Name: "ci", Value: "t", Write: true, Orgs: []string{"acme", "labs"}}, ""},
		{"dev=t:orgs=*", Token{Name: "dev", Value: "t", Orgs: []string{"*"}}, ""},
		{"alice", Token{}, "NAME=TOKEN"},
		{"=t", Token{}, "invalid user name"},
		{"a b=t", Token{}, "invalid user name"},
		{"alice=", Token{}, "empty token"},
		{"alice=:write", Token{}, "empty token"},
		{"alice=t:admin", Token{}, "unknown option"},
		{"alice=t t", Token{}, "printable"},
		{"alice=t:orgs=a..b", Token{}, "invalid org"},
	}
	for _, tt := range tests {
		got, err := ParseTokenFlag(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %+v %v, want %+v", tt.in, got, err, tt.want)
		}
		if len(got.Value) > 2 && strings.Contains(got.String(), got.Value) {
			t.Errorf("Token.String() shows the secret: %s", got)
		}
	}
}

func TestParseFaults(t *testing.T) {
	tests := []struct {
		in      string
		want    Faults
		wantErr string
	}{
		{"", Faults{}, ""},
		{"part-5xx=0.1,part-reset=0.05,rate-limit=0.05,commit-lost=0.1", Faults{PartError: 0.1, PartReset: 0.05, RateLimit: 0.05, CommitLost: 0.1}, ""},
		{" put-5xx = 1 , batch-error=0,complete-5xx=0.5,seed=42 ,", Faults{PutError: 1, CompleteError: 0.5, Seed: 42}, ""},
		{"part-5xx", Faults{}, "NAME=VALUE"},
		{"part-5xx=2", Faults{}, "probability"},
		{"part-5xx=-0.1", Faults{}, "probability"},
		{"part-5xx=NaN", Faults{}, "probability"},
		{"disk-full=0.1", Faults{}, "unknown fault"},
		{"seed=-1", Faults{}, "seed"},
	}
	for _, tt := range tests {
		got, err := ParseFaults(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v %v, want %+v", tt.in, got, err, tt.want)
		}
		// String round-trips.
		if back, err := ParseFaults(got.String()); err != nil || back != got {
			t.Errorf("%q: String() %q parses to %+v %v", tt.in, got.String(), back, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1024", 1024, false},
		{"0", 0, false},
		{"8MiB", 8 << 20, false},
		{"8mib", 8 << 20, false},
		{"5MB", 5_000_000, false},
		{"5 MB", 5_000_000, false},
		{"64KiB", 64 << 10, false},
		{"1k", 0, true}, // single-letter units are ambiguous: not accepted
		{"2G", 0, true},
		{"1.5GiB", 3 << 29, false},
		{"0.5KB", 500, false},
		{"1TiB", 1 << 40, false},
		{"100B", 100, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-5MB", 0, true},
		{"5XB", 0, true},
		{"1.2.3MB", 0, true},
		{"9223372036854775807", 1<<63 - 1, false},
		{"9223372036854775808", 0, true},
		{"9000000TiB", 0, true},
		{"1e9", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestGitignore(t *testing.T) {
	rules := parseGitignore("# comment\n*.log\n!keep.log\nbuild/\n/root.txt\ndocs/**/*.md\n**/cache\nsecret?.txt\n\\#hash\n")
	tests := []struct {
		path string
		want bool
	}{
		{"a.log", true},
		{"x/y/a.log", true},
		{"keep.log", false},
		{"x/keep.log", false},
		{"build/out.bin", true},
		{"src/build/out.bin", true},
		{"build", false}, // a file named build is not the directory pattern
		{"root.txt", true},
		{"x/root.txt", false},
		{"docs/a.md", true},
		{"docs/x/y/a.md", true},
		{"docs/a.txt", false},
		{"a/b/cache/x", true},
		{"cache", true},
		{"secret1.txt", true},
		{"secret12.txt", false},
		{"#hash", true},
		{"readme.md", false},
	}
	for _, tt := range tests {
		if got := rules.ignored(tt.path); got != tt.want {
			t.Errorf("ignored(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	// A file in an ignored directory cannot be re-included.
	r2 := parseGitignore("logs/\n!logs/keep.txt\n")
	if !r2.ignored("logs/keep.txt") {
		t.Error("re-included a file of an ignored directory")
	}
}

func TestGitattributes(t *testing.T) {
	def := parseGitattributes(defaultGitattributes)
	tests := []struct {
		attrs lfsAttributes
		path  string
		want  bool
	}{
		{def, "model.safetensors", true},
		{def, "a/b/model-00001-of-00002.safetensors", true},
		{def, "pytorch_model.bin", true},
		{def, "data.tar.gz", true},
		{def, "events.out.tfevents.123", true},
		{def, "saved_model/variables/v.data", true},
		{def, "saved_model", false},
		{def, "config.json", false},
		{def, "tokenizer.model", true},
		{def, "README.md", false},
		{parseGitattributes("*.bin filter=lfs\nsmall.bin -filter\n"), "small.bin", false},
		{parseGitattributes("*.bin filter=lfs\nsmall.bin -filter\n"), "big.bin", true},
		{parseGitattributes("*.json filter=lfs\n*.json filter=other\n"), "a.json", false},
		{parseGitattributes("weights/*.pt filter=lfs\n"), "weights/a.pt", true},
		{parseGitattributes("weights/*.pt filter=lfs\n"), "x/weights/a.pt", false},
		{parseGitattributes("# *.txt filter=lfs\n"), "a.txt", false},
	}
	for _, tt := range tests {
		if got := tt.attrs.isLFS(tt.path); got != tt.want {
			t.Errorf("isLFS(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestValidNames(t *testing.T) {
	for _, ok := range []string{"a", "alice", "my-model_v1.0", "A1", "x.y"} {
		if !validRepoName(ok) || !validNamespace(ok) {
			t.Errorf("%q should be valid", ok)
		}
	}
	for _, bad := range []string{"", "-a", "a-", ".a", "a.", "a--b", "a..b", "a/b", "a b", "é", strings.Repeat("a", 97)} {
		if validRepoName(bad) || validNamespace(bad) {
			t.Errorf("%q should be invalid", bad)
		}
	}
	if validRepoName("m.git") {
		t.Error("a repo name must not end with .git")
	}
	for _, ok := range []string{"main", "dev/feature-1", "v1.0", "release_2"} {
		if !validRefName(ok) {
			t.Errorf("ref %q should be valid", ok)
		}
	}
	for _, bad := range []string{"", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", `a\b`, "/a", "a/", "a.lock", "a.", "a//b", ".a", "a/.b", "@", "a@{b"} {
		if validRefName(bad) {
			t.Errorf("ref %q should be invalid", bad)
		}
	}
}

func TestValidateRepoPath(t *testing.T) {
	for _, ok := range []string{"a", "a/b.txt", "dir/sub/model.safetensors", "..a", "a..", ".gitattributes", "a/.hidden"} {
		if err := validateRepoPath(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "./a", "a/./b", "../a", "a/../b", ".git", "a/.git/b", `..\ddd`, "a\x00b", "a\nb"} {
		if err := validateRepoPath(bad); err == nil {
			t.Errorf("%q should be invalid", bad)
		}
	}
}
