package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// public drops the unexported bookkeeping so configs compare by their keys.
func public(c *Config) Config {
	cp := *c
	cp.baseDir, cp.lines = "", nil
	return cp
}

const examplePath = "../../config.example.yaml"

func TestExampleFileMatchesDefaults(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	w := DefaultWatch()
	w.Dir, w.Repo, w.Private = "./outputs", "me/llama3-sft", true
	want.Watch = []Watch{w}
	if got := public(c); !reflect.DeepEqual(got, public(want)) {
		t.Fatalf("config.example.yaml drifted from Default():\n got %+v\nwant %+v", got, public(want))
	}
	// Every key of every section is written out in the example (documented with its default).
	sections := map[string]any{"": Config{}, "upload.": Upload{}, "lock.": Lock{}, "watch[0].": Watch{}, "watch[0].prune.": Prune{}}
	for prefix, v := range sections {
		for _, k := range yamlKeys(v) {
			if _, ok := c.lines[prefix+k]; !ok {
				t.Errorf("config.example.yaml does not show key %s%s", prefix, k)
			}
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestOmittedKeysTakeDefaults(t *testing.T) {
	c, err := Parse([]byte(`
settle: 5s
upload:
  retries: 0
lock:
watch:
  - dir: /data/run1
    repo: me/a
  - dir: /data/run2
    repo: me/b
    layout: subfolders
    max_shard_size: 2GiB
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Settle = 5 * time.Second
	want.Upload.Retries = 0 // explicitly zero: kept
	w1, w2 := DefaultWatch(), DefaultWatch()
	w1.Dir, w1.Repo = "/data/run1", "me/a"
	w2.Dir, w2.Repo, w2.Layout, w2.MaxShardSize = "/data/run2", "me/b", LayoutSubfolders, 2<<30
	want.Watch = []Watch{w1, w2}
	if !reflect.DeepEqual(public(c), public(want)) {
		t.Fatalf("got %+v\nwant %+v", public(c), public(want))
	}
	for _, empty := range []string{"", "# only a comment\n", "~\n", "---\n"} {
		c, err := Parse([]byte(empty))
		if err != nil {
			t.Fatalf("%q: %v", empty, err)
		}
		if !reflect.DeepEqual(public(c), public(Default())) {
			t.Fatalf("%q: %+v", empty, c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const w = "watch:\n  - dir: /o\n    repo: me/m\n"
	for _, tc := range []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "poll: 5s\nsetle: 5s\n", []string{`line 2: unknown key "setle" at the top level`, `did you mean "settle"`}},
		{"unknown watch key", w + "    layuot: tags\n", []string{`line 4: unknown key "layuot" in a watch entry`, `"layout"`}},
		{"unknown nested key", "upload:\n  parallel: 3\n", []string{`line 2: unknown key "parallel" in upload`}},
		{"token refused", "token: hf_abc\n", []string{`unknown key "token"`, "HF_TOKEN"}},
		{"bad duration", "settle: 3x\n", []string{`line 1: settle: invalid duration "3x"`}},
		{"duration without unit", "poll: 30\n", []string{"line 1: poll: duration 30 needs a unit"}},
		{"nested bad duration", "lock:\n  heartbeat: soon\n", []string{`line 2: lock.heartbeat: invalid duration "soon"`}},
		{"zero stall timeout", "upload:\n  stall_timeout: 0s\n", []string{"upload.stall_timeout: must be positive and at most 1h"}},
		{"wrong type", "upload:\n  retries: many\n", []string{`line 2: upload.retries: str value "many" where an integer is expected`}},
		{"bool type", w + "    private: maybe\n", []string{"line 4: watch[0].private", "true or false"}},
		{"bad size", w + "    max_shard_size: 5 gigs\n", []string{"line 4: watch[0].max_shard_size", `invalid size "5 gigs"`}},
		{"negative size", w + "    max_shard_size: -1\n", []string{"line 4: watch[0].max_shard_size", `invalid size "-1"`}},
		{"bad layout", w + "    layout: tag\n", []string{`line 4: watch[0].layout: must be one of tags, branches, subfolders, not "tag"`}},
		{"bad publish", w + "    publish: all\n", []string{"watch[0].publish: must be one of adapter, merged, both"}},
		{"missing repo", "watch:\n  - dir: /o\n", []string{"watch[0].repo: required"}},
		{"missing dir", "watch:\n  - repo: me/m\n", []string{"watch[0].dir: required"}},
		{"bad repo", "watch:\n  - dir: /o\n    repo: llama\n", []string{`line 3: watch[0].repo: invalid repo id "llama": want OWNER/NAME`}},
		{"bad repo chars", "watch:\n  - dir: /o\n    repo: me/a--b\n", []string{"invalid repo id"}},
		{"duplicate dir", w + "  - dir: /o/\n    repo: me/n\n", []string{"watch[1].dir: /o/ is already watched by watch[0]"}},
		{"same target", w + "  - dir: /p\n    repo: me/m\n", []string{"watch[1].repo: watch[0] already publishes to me/m"}},
		{"tag without step", w + "    tag_format: latest\n", []string{"watch[0].tag_format", "must contain {step}"}},
		{"bad placeholder", w + "    commit_message: \"step {stp}\"\n", []string{"unknown placeholder {stp}"}},
		{"bad tag chars", w + "    tag_format: \"step {step}\"\n", []string{"not a valid git ref name"}},
		{"bad subfolder", w + "    layout: subfolders\n    subfolder_format: ../{step}\n", []string{"watch[0].subfolder_format"}},
		{"bad dtype", w + "    dtype: bfloat16\n", []string{`watch[0].dtype: must be one of , bf16, fp16, fp32, nf4, fp4, not "bfloat16"`}},
		{"bad quant blocksize", w + "    dtype: nf4\n    quant: {blocksize: 100}\n", []string{"watch[0].quant.blocksize: must be a power of two"}},
		{"bad quant storage", w + "    dtype: fp4\n    quant: {storage: int8}\n", []string{`watch[0].quant.storage: must be one of , uint8, bf16, not "int8"`}},
		{"bad quant key", w + "    dtype: nf4\n    quant: {block_size: 64}\n", []string{`unknown key "block_size"`}},
		{"three dtypes", w + "    dtype: bf16,nf4,fp4\n", []string{"watch[0].dtype: names 3 outputs"}},
		{"two 4-bit dtypes", w + "    dtype: nf4,fp4\n", []string{"watch[0].dtype: names two 4-bit dtypes"}},
		{"two float dtypes", w + "    dtype: bf16,fp16\n", []string{"watch[0].dtype: names two float dtypes"}},
		{"bad dtype in pair", w + "    dtype: bf16,int4\n", []string{`watch[0].dtype: "int4" is not one of`}},
		{"pair bad blocksize", w + "    dtype: bf16,nf4\n    quant: {blocksize: 100}\n", []string{"watch[0].quant.blocksize: must be a power of two"}},
		{"pair with adapter only", w + "    dtype: bf16,nf4\n    publish: adapter\n", []string{"watch[0].dtype: bf16,nf4 names two merged outputs, but publish is adapter"}},
		{"quant repo equals repo", w + "    dtype: bf16,nf4\n    quant_repo: me/m\n", []string{"watch[0].quant_repo: must differ from repo"}},
		{"quant repo equals adapter repo", w + "    dtype: bf16,nf4\n    publish: both\n    adapter_repo: me/a\n    quant_repo: me/a\n", []string{"watch[0].quant_repo: must differ from adapter_repo"}},
		{"quant repo single dtype", w + "    dtype: nf4\n    quant_repo: me/q\n", []string{"watch[0].quant_repo: is only used with two outputs"}},
		{"bad quant repo", w + "    dtype: bf16,nf4\n    quant_repo: q\n", []string{"watch[0].quant_repo: invalid repo id"}},
		{"bad shard_layout", w + "    shard_layout: flat\n", []string{`watch[0].shard_layout: must be one of delta, hf, not "flat"`}},
		{"bad staging", w + "    staging: ram\n", []string{`line 4: watch[0].staging: must be one of disk, none, auto, not "ram"`}},
		{"adapter repo equals repo", w + "    publish: both\n    adapter_repo: me/m\n", []string{"adapter_repo: must differ"}},
		{"negative prune", w + "    prune: {keep: -1}\n", []string{"watch[0].prune.keep: must not be negative"}},
		{"metrics not loopback", "metrics_addr: 0.0.0.0:9109\n", []string{"line 1: metrics_addr", "not a loopback address"}},
		{"metrics bad", "metrics_addr: 9109\n", []string{"want HOST:PORT"}},
		{"endpoint credentials", "endpoint: https://user:pw@hub.example\n", []string{"must not contain credentials"}},
		{"endpoint scheme", "endpoint: ftp://hub.example\n", []string{"http or https"}},
		{"log format", "log_format: text\n", []string{"log_format: must be one of auto, console, json"}},
		{"policy", "policy: newest\n", []string{"policy: must be one of latest, all"}},
		{"device", "device: gpu\n", []string{"device: must be one of auto, cpu, cuda"}},
		{"parallel", "upload:\n  parallel_files: 0\n", []string{"line 2: upload.parallel_files: must be between 1 and 64"}},
		{"settle zero", "settle: 0s\n", []string{"settle: must be positive"}},
		{"marker path", "marker: a/b\n", []string{"marker: must be a plain file name"}},
		{"stale vs heartbeat", "lock:\n  heartbeat: 1m\n  stale_after: 2m\n", []string{"lock.stale_after: must be at least three heartbeats"}},
		{"two documents", "settle: 5s\n---\nsettle: 6s\n", []string{"more than one YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a mapping"}},
		{"syntax", "settle: [\n", []string{"line"}},
		{"watch not a list", "watch: /o\n", []string{"line 1: watch:", "a list"}},
		{"several problems", "policy: x\ndevice: y\n", []string{"line 1: policy", "line 2: device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q\ndoes not contain %q", err, s)
				}
			}
		})
	}
}

func TestLoadNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hubsync.yaml")
	if err := os.WriteFile(p, []byte("settle: 5s\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), "config "+p+": line 2: unknown key \"bogus\"") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestValidateAfterFlags(t *testing.T) {
	c := Default()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "no watch entries") {
		t.Fatalf("err = %v", err)
	}
	w := DefaultWatch()
	w.Dir, w.Repo = "/out", "me/m"
	c.Watch = append(c.Watch, w)
	c.Poll = 10 * time.Second // a flag override
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Watch[0].Layout = "folders"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "watch[0].layout") {
		t.Fatalf("err = %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cfg", "hubsync.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := `watch:
  - dir: ./outputs
    repo: me/m
    publish: both
    base: ../models/base
  - dir: ~/runs/b
    repo: me/n
    base: meta-llama/Llama-3.1-8B
`
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                      string
		env                       map[string]string
		endpoint, state, hfHome   string
		stagingForFirst           string
		stagingDir                string
		wantBaseOfFirst, wantDir1 string
	}{
		{
			name:     "bare",
			env:      map[string]string{"HOME": "/home/u"},
			endpoint: "https://huggingface.co", state: "/home/u/.local/state/hubsync", hfHome: "/home/u/.cache/huggingface",
		},
		{
			name: "environment",
			env: map[string]string{"HOME": "/home/u", "HF_ENDPOINT": "http://127.0.0.1:8089/", "STATE_DIRECTORY": "/var/lib/hubsync:/var/lib/other",
				"HF_HOME": "/data/hf", "XDG_STATE_HOME": "/x/state", "HF_TOKEN": "hf_secret_token_value"},
			endpoint: "http://127.0.0.1:8089", state: "/var/lib/hubsync", hfHome: "/data/hf",
		},
		{
			name:     "xdg",
			env:      map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "/x/state", "XDG_CACHE_HOME": "/x/cache"},
			endpoint: "https://huggingface.co", state: "/x/state/hubsync", hfHome: "/x/cache/huggingface",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			getenv := func(k string) string { return tc.env[k] }
			if err := c.Resolve(getenv); err != nil {
				t.Fatal(err)
			}
			if c.Endpoint != tc.endpoint || c.StateDir != tc.state || c.HFHome != tc.hfHome {
				t.Fatalf("endpoint %q state %q hf_home %q", c.Endpoint, c.StateDir, c.HFHome)
			}
			w0, w1 := c.Watch[0], c.Watch[1]
			if w0.Dir != filepath.Join(dir, "cfg", "outputs") || w1.Dir != "/home/u/runs/b" {
				t.Errorf("dirs %q %q", w0.Dir, w1.Dir)
			}
			if w0.Base != filepath.Join(dir, "models", "base") || w1.Base != "meta-llama/Llama-3.1-8B" {
				t.Errorf("bases %q %q", w0.Base, w1.Base)
			}
			if w0.AdapterRepo != "me/m-adapter" || w1.AdapterRepo != "" {
				t.Errorf("adapter repos %q %q", w0.AdapterRepo, w1.AdapterRepo)
			}
			if c.JournalPath() != filepath.Join(tc.state, "journal.db") {
				t.Errorf("journal %q", c.JournalPath())
			}
			if got := c.StagingFor(w0); got != filepath.Join(w0.Dir, ".hubsync-staging") {
				t.Errorf("staging %q", got)
			}
			before := public(c)
			if err := c.Resolve(getenv); err != nil || !reflect.DeepEqual(public(c), before) {
				t.Errorf("Resolve is not idempotent: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			// The token in the environment never appears in what the config prints or marshals.
			js, _ := json.Marshal(c)
			if strings.Contains(c.String(), "hf_secret") || strings.Contains(string(js), "hf_secret") {
				t.Fatal("token leaked into the configuration's output")
			}
		})
	}
	// A staging_dir gives each watched directory its own distinct subdirectory.
	c := Default()
	c.StagingDir = "/scratch/staging"
	a := c.StagingFor(Watch{Dir: "/a/outputs"})
	b := c.StagingFor(Watch{Dir: "/b/outputs"})
	if a == b || filepath.Dir(a) != "/scratch/staging" || !strings.HasPrefix(filepath.Base(a), "outputs-") {
		t.Fatalf("staging dirs %q %q", a, b)
	}
}

func TestStringRoundTrip(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	c.Watch[0].MaxShardSize = 3 << 30
	c.Poll = 90 * time.Second
	again, err := Parse([]byte(c.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, c.String())
	}
	if !reflect.DeepEqual(public(again), public(c)) {
		t.Fatalf("round trip:\n%s\n%+v", c.String(), public(again))
	}
}

func TestExpand(t *testing.T) {
	w := DefaultWatch()
	if w.TagName(500) != "step-500" || w.BranchName(7) != "step-7" || w.Subfolder(20) != "checkpoint-20" ||
		w.Message(20) != "Upload checkpoint-20 (step 20)" {
		t.Fatalf("%q %q %q %q", w.TagName(500), w.BranchName(7), w.Subfolder(20), w.Message(20))
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		out  string
		err  bool
	}{
		{"5GB", 5_000_000_000, "5GB", false},
		{"500MB", 500_000_000, "500MB", false},
		{"1.5GB", 1_500_000_000, "1500MB", false},
		{"2GiB", 2 << 30, "2GiB", false},
		{"10kB", 10_000, "10kB", false},
		{"10KB", 10_000, "10kB", false},
		{"1024", 1024, "1KiB", false},
		{"1023", 1023, "1023", false},
		{"7B", 7, "7", false},
		{" 5 GB ", 5_000_000_000, "5GB", false},
		{"1TB", 1_000_000_000_000, "1TB", false},
		{"0", 0, "0", false},
		{"", 0, "", true},
		{"GB", 0, "", true},
		{"-5GB", 0, "", true},
		{"5e9", 0, "", true},
		{"1.5B", 1, "1", false}, // truncated to whole bytes, as huggingface_hub does
		{"5 gigs", 0, "", true},
		{"99999999999TB", 0, "", true},
		{".5GB", 500_000_000, "500MB", false},
	} {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v", tc.in, got, err)
			continue
		}
		if !tc.err && got.String() != tc.out {
			t.Errorf("%d.String() = %q, want %q", got, got.String(), tc.out)
		}
		if !tc.err {
			back, err := ParseByteSize(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %q: %d %v", got.String(), back, err)
			}
		}
	}
}

func FuzzConfig(f *testing.F) {
	ex, _ := os.ReadFile(examplePath)
	f.Add(ex)
	f.Add([]byte("settle: 5s\nwatch:\n  - dir: /o\n    repo: me/m\n    max_shard_size: 2GiB\n"))
	f.Add([]byte("watch: [{dir: a, repo: b/c, prune: {keep: 2}}]\n"))
	f.Add([]byte("upload: {parallel_files: 2}\nlock: ~\n"))
	f.Add([]byte("token: x\n"))
	f.Add([]byte("poll: 1h\nmetrics_addr: \"[::1]:9\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// Whatever is accepted prints as YAML that parses back to the same configuration.
		again, err := Parse([]byte(c.String()))
		if err != nil {
			t.Fatalf("re-parse failed: %v\n%s", err, c.String())
		}
		if !reflect.DeepEqual(public(again), public(c)) {
			t.Fatalf("round trip differs:\n%s", c.String())
		}
	})
}

// TestSplitDType: a dtype value is one float or 4-bit dtype, or a pair of one of each in either order.
func TestSplitDType(t *testing.T) {
	for _, tc := range []struct {
		in, float, quant string
		both, bad        bool
	}{
		{"", "", "", false, false},
		{"bf16", "bf16", "", false, false},
		{"nf4", "", "nf4", false, false},
		{"bf16,nf4", "bf16", "nf4", true, false},
		{"fp4, fp16", "fp16", "fp4", true, false},
		{"nf4,fp4", "", "", false, true},
		{"bf16,", "", "", false, true},
		{"bf16,nf4,fp32", "", "", false, true},
	} {
		f, q, both, err := SplitDType(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (f != tc.float || q != tc.quant || both != tc.both)) {
			t.Errorf("SplitDType(%q) = %q, %q, %v, %v", tc.in, f, q, both, err)
		}
	}
}

// TestQuantRepoDefault: a dtype pair sends the 4-bit output to <repo>-bnb-4bit unless quant_repo names one.
func TestQuantRepoDefault(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"    dtype: bf16,nf4\n", "me/m-bnb-4bit"},
		{"    dtype: bf16,nf4\n    quant_repo: me/small\n", "me/small"},
		{"    dtype: nf4\n", ""},
	} {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte("watch:\n  - dir: /o\n    repo: me/m\n"+tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Resolve(func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Watch[0].QuantRepo; got != tc.want {
			t.Errorf("%q: quant_repo %q, want %q", tc.yaml, got, tc.want)
		}
	}
}
