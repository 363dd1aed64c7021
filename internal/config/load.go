package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error lists every problem found in a configuration, each prefixed with its line when it comes from a file.
type Error struct {
	File     string // "" when not from a file
	Problems []string
}

// Error lists the problems, one per line when there are several.
func (e *Error) Error() string {
	prefix := "config"
	if e.File != "" {
		prefix = "config " + e.File
	}
	if len(e.Problems) == 1 {
		return prefix + ": " + e.Problems[0]
	}
	return prefix + ":\n  " + strings.Join(e.Problems, "\n  ")
}

// Load reads and checks the configuration file at path: strict YAML (unknown keys are errors), defaults for
// omitted keys, and every check of Validate except the requirement of a watch entry (the watch command may add
// them from its arguments). Relative paths in the file are resolved against the file's directory by Resolve.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(data)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.baseDir = filepath.Dir(abs)
	return c, nil
}

// Parse decodes and checks a configuration document as Load does, without a file (relative paths are then
// resolved against the working directory).
func Parse(data []byte) (*Config, error) { return parse(data) }

func parse(data []byte) (*Config, error) {
	c := Default()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Problems: []string{strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	c.lines = map[string]int{}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
			return nil, &Error{Problems: []string{fmt.Sprintf("line %d: the configuration must be a mapping of keys", root.Line)}}
		}
		keyLines(root, "", c.lines)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, &Error{Problems: rewriteYAMLError(err, c.lines)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Problems: []string{"more than one YAML document"}}
	}
	if len(c.Watch) == 0 {
		c.Watch = nil // "watch: []" and no watch key mean the same
	}
	for i := range c.Watch {
		fillWatchDefaults(&c.Watch[i])
	}
	if probs := c.problems(false); len(probs) > 0 {
		return nil, &Error{Problems: probs}
	}
	return c, nil
}

// keyLines records the line of every key below n: "settle", "upload.retries", "watch[0]", "watch[0].dir".
func keyLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[p] = k.Line
			keyLines(v, p, out)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			out[p] = v.Line
			keyLines(v, p, out)
		}
	}
}

var (
	reUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.(\w+)$`)
	reCannot       = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
	reLine         = regexp.MustCompile(`^line (\d+): (.*)$`)
)

var sections = map[string]string{
	"Config": "at the top level",
	"Upload": "in upload",
	"Lock":   "in lock",
	"Watch":  "in a watch entry",
	"Prune":  "in prune",
}

// rewriteYAMLError turns yaml's messages into ones that name the key: `line 7: settle: invalid duration "3x"`.
func rewriteYAMLError(err error, lines map[string]int) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	keyAt := map[int]string{}
	for p, l := range lines {
		if cur, ok := keyAt[l]; !ok || len(p) > len(cur) || (len(p) == len(cur) && p < cur) {
			keyAt[l] = p // the deepest key on a line names the value
		}
	}
	var out []string
	for _, msg := range te.Errors {
		if m := reUnknownField.FindStringSubmatch(msg); m != nil {
			s := fmt.Sprintf("line %s: unknown key %q %s", m[1], m[2], sections[m[3]])
			if m[2] == "token" {
				s += "; the Hub token is never read from the configuration file: use HF_TOKEN, " +
					"$CREDENTIALS_DIRECTORY/hf_token (systemd LoadCredential=) or `hubsync login`"
			} else if hint := suggest(m[2], m[3]); hint != "" {
				s += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			out = append(out, s)
			continue
		}
		if m := reCannot.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := keyAt[line]
			switch {
			case m[4] == "time.Duration" && m[2] == "int":
				out = append(out, fmt.Sprintf("line %d: %s: duration %s needs a unit (e.g. %ss, 5m, 1h)", line, key, m[3], m[3]))
			case m[4] == "time.Duration":
				out = append(out, fmt.Sprintf("line %d: %s: invalid duration %q (write e.g. 30s, 5m, 1h)", line, key, m[3]))
			default:
				out = append(out, fmt.Sprintf("line %d: %s: %s value %q where %s is expected", line, key, m[2], m[3], goType(m[4])))
			}
			continue
		}
		if m := reLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if key := keyAt[line]; key != "" {
				out = append(out, fmt.Sprintf("line %d: %s: %s", line, key, m[2]))
				continue
			}
		}
		out = append(out, msg)
	}
	return out
}

func goType(t string) string {
	switch {
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "a " + strings.TrimPrefix(t, "config.")
}

// suggest returns a known key of the section close to an unknown one (a typo), or "".
func suggest(key, section string) string {
	var known []string
	switch section {
	case "Config":
		known = yamlKeys(Config{})
	case "Upload":
		known = yamlKeys(Upload{})
	case "Lock":
		known = yamlKeys(Lock{})
	case "Watch":
		known = yamlKeys(Watch{})
	case "Prune":
		known = yamlKeys(Prune{})
	}
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// yamlKeys lists the YAML keys of a config struct.
func yamlKeys(v any) []string {
	var keys []string
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	sort.Strings(keys)
	return keys
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
