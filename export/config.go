package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hubsync/hubsync/internal/tensor"
)

// maxJSONDepth bounds nesting in config.json (Python's json module stops near 1000 by recursion limit).
const maxJSONDepth = 1000

// RewriteConfig returns config.json for the merged model:
//   - every "quantization_config" key is removed, in the top-level object and in every nested object
//     (text_config, vision_config, ...);
//   - "torch_dtype" is set to dtype's torch name ("bfloat16") at the top level (appended if missing), and in
//     every nested *_config object that already has one; "dtype" (transformers v5) is set likewise where present;
//   - when vocabSize > 0, "vocab_size" is set at the top level and in text_config wherever present (at the top
//     level if it is present nowhere).
//
// Everything else is preserved: key order, and every value literally (numbers keep their spelling, so 1e-05 stays
// 1e-05, and strings keep their escapes). On a duplicate key the last value wins at the first key's position, as
// Python's json.load does. The output is indented with 2 spaces and ends with a newline. NaN, Infinity and
// -Infinity, which Python's json module reads and writes, are accepted and kept.
func RewriteConfig(raw []byte, dtype tensor.DType, vocabSize int64) ([]byte, error) {
	torchName := dtype.TorchName()
	if torchName == "" {
		return nil, fmt.Errorf("config.json: output dtype %s has no torch name", dtype)
	}
	root, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if root.kind != '{' {
		return nil, fmt.Errorf("config.json: top-level value is not a JSON object")
	}
	removeKey(root, "quantization_config")
	dt := stringNode(torchName)
	root.set("torch_dtype", dt, true)
	root.set("dtype", dt, false)
	setInSubConfigs(root, dt)
	if vocabSize > 0 {
		v := &jnode{kind: 'n', raw: []byte(fmt.Sprint(vocabSize))}
		found := root.set("vocab_size", v, false)
		if tc := root.get("text_config"); tc != nil && tc.kind == '{' {
			found = tc.set("vocab_size", v, false) || found
		}
		if !found {
			root.set("vocab_size", v, true)
		}
	}
	var b bytes.Buffer
	root.write(&b, 0)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// UntieConfig returns config.json (RewriteConfig's output, or any config) with "tie_word_embeddings": false: set
// at the top level (appended if missing) and in every nested "*_config" object that has the key (Gemma 3's
// text_config), so transformers loads the separate lm_head.weight instead of tying it to the input embedding.
// Everything else is preserved as RewriteConfig preserves it.
func UntieConfig(raw []byte) ([]byte, error) {
	root, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if root.kind != '{' {
		return nil, fmt.Errorf("config.json: top-level value is not a JSON object")
	}
	f := &jnode{kind: 'l', raw: []byte("false")}
	root.set("tie_word_embeddings", f, true)
	var sub func(n *jnode)
	sub = func(n *jnode) {
		for i, k := range n.keys {
			if v := n.vals[i]; v.kind == '{' && strings.HasSuffix(k, "_config") {
				v.set("tie_word_embeddings", f, false)
				sub(v)
			}
		}
	}
	sub(root)
	var b bytes.Buffer
	root.write(&b, 0)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// setInSubConfigs sets torch_dtype/dtype inside nested "*_config" objects that already carry them.
func setInSubConfigs(n *jnode, dt *jnode) {
	for i, k := range n.keys {
		v := n.vals[i]
		if v.kind != '{' || !strings.HasSuffix(k, "_config") {
			continue
		}
		v.set("torch_dtype", dt, false)
		v.set("dtype", dt, false)
		setInSubConfigs(v, dt)
	}
}

// removeKey deletes key from every object in the tree.
func removeKey(n *jnode, key string) {
	switch n.kind {
	case '{':
		keys, vals, rawKeys := n.keys[:0], n.vals[:0], n.rawKeys[:0]
		for i, k := range n.keys {
			if k == key {
				continue
			}
			removeKey(n.vals[i], key)
			keys, vals, rawKeys = append(keys, k), append(vals, n.vals[i]), append(rawKeys, n.rawKeys[i])
		}
		n.keys, n.vals, n.rawKeys = keys, vals, rawKeys
	case '[':
		for _, v := range n.vals {
			removeKey(v, key)
		}
	}
}

// jnode is an order-preserving JSON value. Scalars keep their literal bytes.
type jnode struct {
	kind    byte // '{' object, '[' array, 's' string, 'n' number, 'l' literal (true/false/null/NaN/Infinity)
	raw     []byte
	keys    []string // objects: decoded keys
	rawKeys [][]byte // objects: keys as written
	vals    []*jnode // object values / array elements
}

func stringNode(s string) *jnode {
	var b bytes.Buffer
	writePyString(&b, s)
	return &jnode{kind: 's', raw: b.Bytes()}
}

func (n *jnode) get(key string) *jnode {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// set replaces key's value if present; otherwise appends it when add is true. It reports whether key was present.
func (n *jnode) set(key string, v *jnode, add bool) bool {
	for i, k := range n.keys {
		if k == key {
			n.vals[i] = v
			return true
		}
	}
	if add {
		var b bytes.Buffer
		writePyString(&b, key)
		n.keys, n.rawKeys, n.vals = append(n.keys, key), append(n.rawKeys, b.Bytes()), append(n.vals, v)
	}
	return false
}

// write renders n like Python's json.dumps(indent=2): one member per line, "key": value, empty containers as
// {} and [].
func (n *jnode) write(b *bytes.Buffer, depth int) {
	switch n.kind {
	case '{', '[':
		closer := byte('}')
		if n.kind == '[' {
			closer = ']'
		}
		b.WriteByte(n.kind)
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
			indent(b, depth+1)
			if n.kind == '{' {
				b.Write(n.rawKeys[i])
				b.WriteString(": ")
			}
			v.write(b, depth+1)
		}
		if len(n.vals) > 0 {
			b.WriteByte('\n')
			indent(b, depth)
		}
		b.WriteByte(closer)
	default:
		b.Write(n.raw)
	}
}

func indent(b *bytes.Buffer, depth int) {
	for range depth {
		b.WriteString("  ")
	}
}

// jparser is a strict recursive-descent JSON parser (RFC 8259 plus Python's NaN/Infinity/-Infinity) that keeps
// every scalar's literal bytes.
type jparser struct {
	s   []byte
	pos int
}

func parseJSON(s []byte) (*jnode, error) {
	if !utf8.Valid(s) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	p := &jparser{s: s}
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return nil, p.errf("unexpected data after the top-level value")
	}
	return n, nil
}

func (p *jparser) errf(format string, args ...any) error {
	line, col := 1, 1
	for _, c := range p.s[:p.pos] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("invalid JSON at line %d column %d: %s", line, col, fmt.Sprintf(format, args...))
}

func (p *jparser) skipSpace() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jparser) value(depth int) (*jnode, error) {
	if depth > maxJSONDepth {
		return nil, p.errf("nested deeper than %d levels", maxJSONDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.s) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.s[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		raw, _, err := p.str()
		if err != nil {
			return nil, err
		}
		return &jnode{kind: 's', raw: raw}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		if bytes.HasPrefix(p.s[p.pos:], []byte("-Infinity")) {
			p.pos += len("-Infinity")
			return &jnode{kind: 'l', raw: []byte("-Infinity")}, nil
		}
		return p.number()
	default:
		for _, lit := range []string{"true", "false", "null", "NaN", "Infinity"} {
			if bytes.HasPrefix(p.s[p.pos:], []byte(lit)) {
				p.pos += len(lit)
				return &jnode{kind: 'l', raw: []byte(lit)}, nil
			}
		}
		return nil, p.errf("unexpected character %q", c)
	}
}

func (p *jparser) object(depth int) (*jnode, error) {
	n := &jnode{kind: '{'}
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return n, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != '"' {
			return nil, p.errf("expected a string key")
		}
		rawKey, key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return nil, p.errf("expected ':' after key")
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if !n.set(key, v, false) { // duplicate: last value wins at the first position (Python dict semantics)
			n.keys, n.rawKeys, n.vals = append(n.keys, key), append(n.rawKeys, rawKey), append(n.vals, v)
		}
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.errf("unexpected end of input in object")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return n, nil
		default:
			return nil, p.errf("expected ',' or '}' in object")
		}
	}
}

func (p *jparser) array(depth int) (*jnode, error) {
	n := &jnode{kind: '['}
	p.pos++ // '['
	p.skipSpace()
	if p.pos < len(p.s) && p.s[p.pos] == ']' {
		p.pos++
		return n, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.vals = append(n.vals, v)
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.errf("unexpected end of input in array")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return n, nil
		default:
			return nil, p.errf("expected ',' or ']' in array")
		}
	}
}

// str scans a string literal at p.pos, returning its bytes as written and its decoded value.
func (p *jparser) str() (raw []byte, val string, err error) {
	start := p.pos
	i := p.pos + 1
	for {
		if i >= len(p.s) {
			return nil, "", p.errf("unterminated string")
		}
		c := p.s[i]
		if c == '"' {
			break
		}
		if c < 0x20 {
			p.pos = i
			return nil, "", p.errf("control character %#02x in string", c)
		}
		if c == '\\' {
			i++ // the escape is validated by json.Unmarshal below
		}
		i++
	}
	raw = p.s[start : i+1]
	if bytes.IndexByte(raw, '\\') < 0 { // no escapes: the bytes are the value (UTF-8 validated up front)
		p.pos = i + 1
		return raw, string(raw[1 : len(raw)-1]), nil
	}
	if err := json.Unmarshal(raw, &val); err != nil {
		return nil, "", p.errf("invalid string: %v", err)
	}
	p.pos = i + 1
	return raw, val, nil
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *jparser) number() (*jnode, error) {
	s, i := p.s, p.pos
	digits := func() int {
		k := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			k++
		}
		return k
	}
	if s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return nil, p.errf("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return nil, p.errf("invalid number: no digits after '.'")
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, p.errf("invalid number: no exponent digits")
		}
	}
	n := &jnode{kind: 'n', raw: s[p.pos:i]}
	p.pos = i
	return n, nil
}
