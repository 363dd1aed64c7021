package hub

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// escapeSegment percent-encodes s as one URL path segment, keeping only unreserved characters
// (Python's quote(s, safe="")): "refs/pr/1" → "refs%2Fpr%2F1".
func escapeSegment(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' ||
			ch == '.' || ch == '~' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[ch>>4])
		b.WriteByte(hexDigits[ch&15])
	}
	return b.String()
}

// escapePath percent-encodes a repo file path keeping the slashes (Python's quote(path)).
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/")
}

// validRepoID checks "owner/name" (or a bare "name"): letters, digits, '-', '_', '.', no "--" or ".." tricks.
func validRepoID(repo string) error {
	parts := strings.Split(repo, "/")
	if len(parts) != 2 {
		return fmt.Errorf("invalid repo id %q: want OWNER/NAME", repo)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || len(p) > 96 {
			return fmt.Errorf("invalid repo id %q", repo)
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("invalid repo id %q: character %q not allowed", repo, r)
			}
		}
	}
	return nil
}

// repoAPI returns the /api/models/{repo} prefix.
func (c *Client) repoAPI(repo string) string { return c.endpoint + "/api/models/" + repo }

// cleanRepoPath normalises a path inside a repo the way the Hub's clients do (strip leading "/" and "./",
// forward slashes) and rejects what the Hub rejects: empty, ".", "..", any ".." component, and any ".git" or
// ".cache" component.
func cleanRepoPath(p string) (string, error) {
	orig := p
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("invalid path in repo %q: not valid UTF-8", orig)
	}
	p = strings.ReplaceAll(p, "\\", "/")
	for {
		switch {
		case strings.HasPrefix(p, "/"):
			p = p[1:]
		case strings.HasPrefix(p, "./"):
			p = p[2:]
		default:
			goto done
		}
	}
done:
	if p == "" || p == "." {
		return "", fmt.Errorf("invalid path in repo %q: empty", orig)
	}
	if strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("invalid path in repo %q: ends with a slash", orig)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".", "..":
			return "", fmt.Errorf("invalid path in repo %q: bad component %q", orig, seg)
		case ".git", ".cache":
			return "", fmt.Errorf("invalid path in repo %q: %s is not allowed", orig, seg)
		}
	}
	if path.Clean(p) != p {
		return "", fmt.Errorf("invalid path in repo %q", orig)
	}
	return p, nil
}
