package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hubsync/hubsync/export/gguf"
)

// Validate checks the whole configuration, including that there is at least one watch entry. Call it after
// flags have overridden keys (and after Resolve). The error is an *Error listing every problem.
func (c *Config) Validate() error {
	if probs := c.problems(true); len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// problems checks every key; requireWatch demands a watch entry. Each problem names its key (and its line when
// the key came from a file).
func (c *Config) problems(requireWatch bool) []string {
	var out []string
	add := func(key, format string, args ...any) {
		msg := key + ": " + fmt.Sprintf(format, args...)
		if l, ok := c.lines[key]; ok {
			msg = fmt.Sprintf("line %d: %s", l, msg)
		}
		out = append(out, msg)
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		add(key, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}

	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			add("endpoint", "%v", err)
		}
	}
	oneOf("log_format", c.LogFormat, LogAuto, LogConsole, LogJSON)
	if c.MetricsAddr != "" {
		if err := checkMetricsAddr(c.MetricsAddr, c.MetricsAllowRemote); err != nil {
			add("metrics_addr", "%v", err)
		}
	}
	if c.Poll < 0 {
		add("poll", "must not be negative")
	}
	if c.Settle <= 0 {
		add("settle", "must be positive (the settle period decides completeness without a marker)")
	}
	if c.Marker == "" || c.Marker != filepath.Base(c.Marker) || c.Marker == "." || c.Marker == ".." || strings.ContainsAny(c.Marker, `/\`) {
		add("marker", "must be a plain file name, not %q", c.Marker)
	}
	oneOf("policy", c.Policy, PolicyLatest, PolicyAll)
	oneOf("device", c.Device, DeviceAuto, DeviceCPU, DeviceCUDA)
	if c.Upload.ParallelFiles < 1 || c.Upload.ParallelFiles > 64 {
		add("upload.parallel_files", "must be between 1 and 64, not %d", c.Upload.ParallelFiles)
	}
	if c.Upload.ParallelParts < 1 || c.Upload.ParallelParts > 256 {
		add("upload.parallel_parts", "must be between 1 and 256, not %d", c.Upload.ParallelParts)
	}
	if c.Upload.MaxBackoff < time.Second || c.Upload.MaxBackoff > 24*time.Hour {
		add("upload.max_backoff", "must be between 1s and 24h, not %s", c.Upload.MaxBackoff)
	}
	if c.Upload.StallTimeout <= 0 || c.Upload.StallTimeout > time.Hour {
		add("upload.stall_timeout", "must be positive and at most 1h, not %s", c.Upload.StallTimeout)
	}
	if c.Upload.Xet != "" { // "" (a Config built without Default): auto
		oneOf("upload.xet", c.Upload.Xet, "auto", "on", "off")
	}
	if c.Upload.Retries < 0 || c.Upload.Retries > 100 {
		add("upload.retries", "must be between 0 and 100, not %d", c.Upload.Retries)
	}
	if c.Lock.Heartbeat <= 0 {
		add("lock.heartbeat", "must be positive")
	}
	if c.Lock.StaleAfter < 3*c.Lock.Heartbeat {
		add("lock.stale_after", "must be at least three heartbeats (%s), not %s", 3*c.Lock.Heartbeat, c.Lock.StaleAfter)
	}

	if requireWatch && len(c.Watch) == 0 {
		out = append(out, "no watch entries: give directories to watch (a watch: list in the file, or arguments)")
	}
	dirs := map[string]int{}
	targets := map[string]int{}
	for i := range c.Watch {
		w := &c.Watch[i]
		k := func(field string) string { return fmt.Sprintf("watch[%d].%s", i, field) }
		if w.Dir == "" {
			add(k("dir"), "required")
		} else {
			clean := filepath.Clean(w.Dir)
			if j, dup := dirs[clean]; dup {
				add(k("dir"), "%s is already watched by watch[%d]", w.Dir, j)
			}
			dirs[clean] = i
		}
		if w.Repo == "" {
			add(k("repo"), "required (OWNER/NAME)")
		} else if err := checkRepoID(w.Repo); err != nil {
			add(k("repo"), "%v", err)
		}
		if err := checkRefName(w.Revision); err != nil {
			add(k("revision"), "%v", err)
		}
		oneOf(k("publish"), w.Publish, PublishAdapter, PublishMerged, PublishBoth, PublishGGUF)
		if len(w.GGUF) > 0 {
			if _, err := gguf.ParseFileTypes(strings.Join(w.GGUF, ",")); err != nil {
				add(k("gguf"), "%v", err)
			}
		}
		switch {
		case w.Publish == PublishGGUF && len(w.GGUF) == 0:
			add(k("gguf"), "publish is gguf, but no GGUF type is given (e.g. gguf: [q4_k_m])")
		case w.Publish == PublishAdapter && len(w.GGUF) > 0:
			add(k("gguf"), "GGUF files are made from the merge, but publish is adapter (use merged, both or gguf)")
		}
		if w.GGUFPre != "" && len(w.GGUF) == 0 {
			add(k("gguf_pre"), "applies to gguf, which is empty")
		}
		if w.GGUFPath != "" {
			if err := checkRepoPath(w.GGUFPath); err != nil {
				add(k("gguf_path"), "%v", err)
			}
		}
		if w.AdapterRepo != "" {
			if err := checkRepoID(w.AdapterRepo); err != nil {
				add(k("adapter_repo"), "%v", err)
			} else if w.AdapterRepo == w.Repo {
				add(k("adapter_repo"), "must differ from repo")
			}
		}
		oneOf(k("layout"), w.Layout, LayoutTags, LayoutBranches, LayoutSubfolders)
		for _, f := range []struct {
			key, format string
			check       func(string) error
		}{
			{"tag_format", w.TagFormat, checkRefName},
			{"branch_format", w.BranchFormat, checkRefName},
			{"subfolder_format", w.SubfolderFormat, checkRepoPath},
		} {
			if err := checkFormat(f.format, f.check); err != nil {
				add(k(f.key), "%v", err)
			}
		}
		if w.CommitMessage == "" || strings.ContainsAny(w.CommitMessage, "\n\r") {
			add(k("commit_message"), "must be one non-empty line")
		} else if err := checkPlaceholders(w.CommitMessage); err != nil {
			add(k("commit_message"), "%v", err)
		}
		_, quant, both, derr := SplitDType(w.DType)
		if derr != nil {
			add(k("dtype"), "%v", derr)
		} else if !both {
			oneOf(k("dtype"), w.DType, "", "bf16", "fp16", "fp32", "nf4", "fp4")
		}
		if both && (w.Publish == PublishAdapter || w.Publish == PublishGGUF) {
			add(k("dtype"), "%s names two merged outputs, but publish is %s", w.DType, w.Publish)
		}
		if quant != "" && !both && len(w.GGUF) > 0 {
			add(k("gguf"), "GGUF files are made from a 16/32-bit merge, but dtype is %s (use e.g. bf16,%s)", w.DType, w.DType)
		}
		if w.QuantRepo != "" {
			switch err := checkRepoID(w.QuantRepo); {
			case !both:
				add(k("quant_repo"), "is only used with two outputs (dtype bf16,nf4)")
			case err != nil:
				add(k("quant_repo"), "%v", err)
			case w.QuantRepo == w.Repo:
				add(k("quant_repo"), "must differ from repo (the 4-bit output would replace the 16-bit one)")
			case w.Publish == PublishBoth && w.QuantRepo == w.AdapterRepo:
				add(k("quant_repo"), "must differ from adapter_repo")
			}
		}
		if quant != "" {
			if bs := w.Quant.Blocksize; bs != 0 && (bs < 32 || bs > 4096 || bs&(bs-1) != 0) {
				add(k("quant.blocksize"), "must be a power of two between 32 and 4096, not %d", bs)
			}
			oneOf(k("quant.compute_dtype"), w.Quant.ComputeDType, "", "bf16", "fp16", "fp32")
			oneOf(k("quant.storage"), w.Quant.Storage, "", "uint8", "bf16")
		}
		oneOf(k("staging"), w.Staging, StagingDisk, StagingNone, StagingAuto)
		if w.MaxShardSize <= 0 {
			add(k("max_shard_size"), "must be positive")
		}
		oneOf(k("shard_layout"), w.ShardLayout, "delta", "hf")
		if w.Prune.Keep < 0 {
			add(k("prune.keep"), "must not be negative")
		}
		if w.Repo != "" && w.Layout != LayoutSubfolders {
			// Two runs publishing to one repo root (or one set of step branches) would overwrite each other.
			t := w.Repo + "\x00" + w.Layout + "\x00" + w.Revision
			if j, dup := targets[t]; dup {
				add(k("repo"), "watch[%d] already publishes to %s with layout %s; use layout subfolders or "+
					"another repo", j, w.Repo, w.Layout)
			}
			targets[t] = i
		}
	}
	return out
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must be an http or https URL, not %q", s)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("must not contain credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("must not have a query or fragment")
	}
	return nil
}

func checkMetricsAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:9109 (%v)", err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address; set metrics_allow_remote: true to serve metrics beyond this host", addr)
}

var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// checkRepoID accepts OWNER/NAME as the Hub does: letters, digits, '-', '_', '.', at most 96 characters per part,
// no "--" or "..", not ending in '.' or '-'.
func checkRepoID(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) != 2 {
		return fmt.Errorf("invalid repo id %q: want OWNER/NAME", id)
	}
	for _, p := range parts {
		if len(p) > 96 || !repoPart.MatchString(p) || strings.Contains(p, "--") || strings.Contains(p, "..") ||
			strings.HasSuffix(p, ".") || strings.HasSuffix(p, "-") {
			return fmt.Errorf("invalid repo id %q", id)
		}
	}
	return nil
}

// checkRefName applies git's check-ref-format rules to a branch or tag name.
func checkRefName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case strings.HasPrefix(name, "-"), strings.HasPrefix(name, "/"), strings.HasSuffix(name, "/"),
		strings.HasSuffix(name, "."), strings.HasSuffix(name, ".lock"), name == "@",
		strings.Contains(name, ".."), strings.Contains(name, "@{"), strings.Contains(name, "//"),
		strings.Contains(name, "/."):
		return fmt.Errorf("%q is not a valid git ref name", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return fmt.Errorf("%q is not a valid git ref name (character %q)", name, r)
		}
	}
	return nil
}

// checkRepoPath accepts a relative folder path inside a repo.
func checkRepoPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p || p == "." {
		return fmt.Errorf("%q is not a clean relative folder path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == ".git" || seg == ".cache" {
			return fmt.Errorf("%q: %q is not allowed in a repo path", p, seg)
		}
	}
	return nil
}

var rePlaceholder = regexp.MustCompile(`\{[^{}]*\}`)

// checkPlaceholders accepts only {step} and {checkpoint}.
func checkPlaceholders(format string) error {
	for _, ph := range rePlaceholder.FindAllString(format, -1) {
		if ph != "{step}" && ph != "{checkpoint}" {
			return fmt.Errorf("unknown placeholder %s (use {step} or {checkpoint})", ph)
		}
	}
	return nil
}

// checkFormat requires a per-step name format to name the step and expand to a valid name.
func checkFormat(format string, check func(string) error) error {
	if err := checkPlaceholders(format); err != nil {
		return err
	}
	if !strings.Contains(format, "{step}") && !strings.Contains(format, "{checkpoint}") {
		return fmt.Errorf("%q must contain {step} or {checkpoint}, or every step gets the same name", format)
	}
	return check(Expand(format, 1234))
}
