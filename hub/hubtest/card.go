package hubtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Repository cards: the YAML front matter of README.md is validated (POST /api/validate-yaml, as the Hub
// does before a commit that adds README.md) and read into cardData, tags, library_name and pipeline_tag of
// the repo info; the safetensors headers of a commit give its parameter counts by dtype.

// frontMatterRE matches the Hub's front matter: a first line "---", then everything up to the next "---" line.
var frontMatterRE = regexp.MustCompile(`^\s*---\r?\n([\s\S]*?)\r?\n?---[ \t]*(\r?\n|$)`)

// maxCardSize bounds the README read for its metadata.
const maxCardSize = 1 << 20

// cardMessage is the text of one error or warning of validate-yaml.
type cardMessage struct {
	Message string `json:"message"`
}

const emptyMetadataWarning = "Empty or missing yaml metadata in repo card (https://huggingface.co/docs/hub/model-cards#model-card-metadata)"

// parseCard parses the front matter of a card. meta is nil when there is none; errs lists what the Hub
// would refuse, warns what it would only warn about.
func parseCard(content string) (meta map[string]any, errs, warns []cardMessage) {
	m := frontMatterRE.FindStringSubmatch(content)
	if m == nil || strings.TrimSpace(m[1]) == "" {
		return nil, nil, []cardMessage{{emptyMetadataWarning}}
	}
	var v any
	if err := yaml.Unmarshal([]byte(m[1]), &v); err != nil {
		return nil, []cardMessage{{"Invalid YAML in the metadata of the repo card: " + err.Error()}}, nil
	}
	if v == nil {
		return nil, nil, []cardMessage{{emptyMetadataWarning}}
	}
	mv, ok := jsonable(v).(map[string]any)
	if !ok {
		return nil, []cardMessage{{"The metadata of the repo card must be a YAML mapping (key: value), not " + yamlKind(v)}}, nil
	}
	errs = checkCardFields(mv)
	return mv, errs, nil
}

// checkCardFields checks the types of the fields the Hub knows.
func checkCardFields(m map[string]any) []cardMessage {
	var errs []cardMessage
	bad := func(key, want string) {
		errs = append(errs, cardMessage{fmt.Sprintf("%q must be %s", key, want)})
	}
	for _, key := range []string{"license", "library_name", "pipeline_tag", "license_name", "license_link", "model_name", "pretty_name"} {
		if v, ok := m[key]; ok && !isString(v) {
			bad(key, "a string")
		}
	}
	for _, key := range []string{"tags", "datasets", "metrics", "language", "base_model", "widget_examples"} {
		v, ok := m[key]
		if !ok || key == "widget_examples" {
			continue
		}
		if !isString(v) && !isStringList(v) {
			bad(key, "a string or a list of strings")
		}
	}
	if v, ok := m["model-index"]; ok {
		list, isList := v.([]any)
		if !isList {
			bad("model-index", "a list")
		}
		for i, e := range list {
			em, ok := e.(map[string]any)
			if !ok || !isString(em["name"]) {
				errs = append(errs, cardMessage{fmt.Sprintf("\"model-index[%d]\" must be a mapping with a string \"name\"", i)})
			}
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Message < errs[j].Message })
	return errs
}

func isString(v any) bool { _, ok := v.(string); return ok }

func isStringList(v any) bool {
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range l {
		if !isString(e) {
			return false
		}
	}
	return true
}

func yamlKind(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// jsonable turns YAML values into JSON-encodable ones (map keys become strings).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

// stringList returns a string or the strings of a list.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// validateYAML answers POST /api/validate-yaml {"content", "repoType"}: 200 {"errors":[],"warnings":[...]}
// when the card's metadata is acceptable, 400 {"error","errors":[{"message"}],"warnings"} when not.
func (c *call) validateYAML() {
	var req struct {
		Content  *string `json:"content"`
		RepoType string  `json:"repoType"`
	}
	if !c.decodeJSON(&req, 8<<20, false) {
		return
	}
	if req.Content == nil {
		c.fail(http.StatusBadRequest, "", `"content" is required`)
		return
	}
	switch req.RepoType {
	case "", "model", "dataset", "space":
	default:
		c.fail(http.StatusBadRequest, "", fmt.Sprintf("Invalid repoType %q (model, dataset or space)", req.RepoType))
		return
	}
	_, errs, warns := parseCard(*req.Content)
	if errs == nil {
		errs = []cardMessage{}
	}
	if warns == nil {
		warns = []cardMessage{}
	}
	body := map[string]any{"errors": errs, "warnings": warns}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Message
		}
		body["error"] = strings.Join(msgs, "; ")
		c.w.Header().Set("X-Error-Message", headerText(body["error"].(string)))
		c.writeJSON(http.StatusBadRequest, "application/json; charset=utf-8", body)
		return
	}
	c.ok(body)
}

// commitMeta is what the repo info derives from a commit's files (computed once per commit).
type commitMeta struct {
	card        map[string]any
	tags        []string
	library     string
	pipeline    string
	safetensors map[string]any // {"parameters": {dtype: n}, "total": n}, nil without safetensors files
}

// meta returns the card data, tags and parameter counts of a commit.
func (s *store) meta(c *commit) *commitMeta {
	c.metaOnce.Do(func() { c.meta = s.computeMeta(c) })
	return c.meta
}

func (s *store) computeMeta(c *commit) *commitMeta {
	m := &commitMeta{}
	if e, ok := c.Files["README.md"]; ok && e.LFS == nil && e.Size <= maxCardSize {
		if b, err := readAll(s.blobPath(e.OID)); err == nil {
			m.card, _, _ = parseCard(string(b))
		}
	}
	tags := map[string]bool{}
	if m.card != nil {
		for _, t := range stringList(m.card["tags"]) {
			tags[t] = true
		}
		if l, ok := m.card["library_name"].(string); ok && l != "" {
			m.library = l
			tags[l] = true
		}
		if p, ok := m.card["pipeline_tag"].(string); ok && p != "" {
			m.pipeline = p
			tags[p] = true
		}
		if l, ok := m.card["license"].(string); ok && l != "" {
			tags["license:"+l] = true
		}
		for _, l := range stringList(m.card["language"]) {
			tags[l] = true
		}
		for _, d := range stringList(m.card["datasets"]) {
			tags["dataset:"+d] = true
		}
		for _, b := range stringList(m.card["base_model"]) {
			tags["base_model:"+b] = true
		}
	}
	params := map[string]int64{}
	found := false
	c.index()
	for _, p := range c.paths {
		if !strings.HasSuffix(p, ".safetensors") {
			continue
		}
		e := c.Files[p]
		path := s.blobPath(e.OID)
		if e.LFS != nil {
			path = s.objectPath(e.LFS.OID)
		}
		counts, err := safetensorsParams(path)
		if err != nil {
			continue // not a safetensors file after all: the Hub leaves it out
		}
		found = true
		for dt, n := range counts {
			params[dt] += n
		}
	}
	if found {
		tags["safetensors"] = true
		var total int64
		for _, n := range params {
			total += n
		}
		m.safetensors = map[string]any{"parameters": params, "total": total}
	}
	m.tags = make([]string, 0, len(tags)+1)
	for t := range tags {
		m.tags = append(m.tags, t)
	}
	sort.Strings(m.tags)
	m.tags = append(m.tags, "region:us")
	return m
}

// maxSafetensorsHeader bounds the JSON header of a safetensors file (the format's own limit is 100 MB).
const maxSafetensorsHeader = 100 << 20

// safetensorsParams reads a safetensors file's header and counts the elements of its tensors by dtype.
func safetensorsParams(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var n [8]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size > maxSafetensorsHeader || int64(size) > fi.Size()-8 {
		return nil, fmt.Errorf("safetensors header of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return parseSafetensorsHeader(b)
}

// parseSafetensorsHeader counts the elements of each dtype in a safetensors JSON header.
func parseSafetensorsHeader(b []byte) (map[string]int64, error) {
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b, &hdr); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			DType string  `json:"dtype"`
			Shape []int64 `json:"shape"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if t.DType == "" {
			return nil, fmt.Errorf("tensor %q: no dtype", name)
		}
		count := int64(1)
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && count > (1<<62)/d) {
				return nil, fmt.Errorf("tensor %q: bad shape", name)
			}
			count *= d
		}
		out[t.DType] += count
	}
	return out, nil
}
