package hubtest

import (
	"path"
	"strings"
)

// Git's pattern files (.gitignore, .gitattributes), with the usual glob semantics: "*", "?" and "[...]" within
// one path component, "**" across components, a pattern without "/" matching a base name at any depth, a
// pattern with a "/" anchored at the repository root, "!" negation and a trailing "/" for directories
// (.gitignore only).

// pattern is one parsed line of a pattern file.
type pattern struct {
	segs    []string // pattern components; a single component matches base names when !anchored
	anchor  bool
	dirOnly bool
	negate  bool
}

func parsePattern(p string) (pattern, bool) {
	var pt pattern
	if strings.HasPrefix(p, "!") {
		pt.negate = true
		p = p[1:]
	} else if strings.HasPrefix(p, `\!`) || strings.HasPrefix(p, `\#`) {
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		pt.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if p == "" {
		return pattern{}, false
	}
	if strings.Contains(p, "/") {
		pt.anchor = true
		p = strings.TrimPrefix(p, "/")
	}
	pt.segs = strings.Split(p, "/")
	return pt, true
}

// match reports whether the pattern matches the path p (a directory when isDir).
func (pt pattern) match(p string, isDir bool) bool {
	if pt.dirOnly && !isDir {
		return false
	}
	segs := strings.Split(p, "/")
	if !pt.anchor {
		return globSeg(pt.segs[0], segs[len(segs)-1])
	}
	return globSegs(pt.segs, segs)
}

// globSegs matches pattern components against path components, "**" standing for any number of them
// (at least one when it ends the pattern). Dynamic programming keeps it O(len(pat)·len(segs)) whatever the
// number of "**".
func globSegs(pat, segs []string) bool {
	np, ns := len(pat), len(segs)
	// m[i*(ns+1)+j] reports whether pat[i:] matches segs[j:].
	m := make([]bool, (np+1)*(ns+1))
	at := func(i, j int) *bool { return &m[i*(ns+1)+j] }
	*at(np, ns) = true
	for i := np - 1; i >= 0; i-- {
		for j := ns; j >= 0; j-- {
			switch {
			case pat[i] == "**" && i == np-1:
				*at(i, j) = j < ns
			case pat[i] == "**":
				*at(i, j) = *at(i+1, j) || (j < ns && *at(i, j+1))
			default:
				*at(i, j) = j < ns && *at(i+1, j+1) && globSeg(pat[i], segs[j])
			}
		}
	}
	return m[0]
}

func globSeg(pat, name string) bool {
	if pat == "**" {
		return true
	}
	ok, err := path.Match(pat, name)
	return err == nil && ok
}

// ignoreRules is a parsed .gitignore.
type ignoreRules []pattern

func parseGitignore(content string) ignoreRules {
	var rules ignoreRules
	for _, line := range strings.Split(content, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasSuffix(line, `\ `) {
			line = strings.TrimRight(line, " \t")
		}
		if pt, ok := parsePattern(line); ok {
			rules = append(rules, pt)
		}
	}
	return rules
}

// ignored reports whether the file p is ignored: the last matching rule decides, and a file inside an ignored
// directory is ignored whatever later rules say (as in git).
func (rules ignoreRules) ignored(p string) bool {
	if len(rules) == 0 {
		return false
	}
	segs := strings.Split(p, "/")
	for k := 1; k <= len(segs); k++ {
		cand := strings.Join(segs[:k], "/")
		isDir := k < len(segs)
		ign := false
		for _, r := range rules {
			if r.match(cand, isDir) {
				ign = !r.negate
			}
		}
		if ign {
			return true
		}
	}
	return false
}

// attrRule is one .gitattributes line that sets or unsets the lfs filter.
type attrRule struct {
	pat pattern
	lfs bool
}

// lfsAttributes is a parsed .gitattributes, reduced to the "filter" attribute.
type lfsAttributes []attrRule

func parseGitattributes(content string) lfsAttributes {
	var rules lfsAttributes
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "!") {
			continue
		}
		pt, ok := parsePattern(fields[0])
		if !ok || pt.dirOnly {
			continue
		}
		for _, a := range fields[1:] {
			switch {
			case a == "filter=lfs":
				rules = append(rules, attrRule{pat: pt, lfs: true})
			case a == "-filter" || a == "!filter" || strings.HasPrefix(a, "filter="):
				rules = append(rules, attrRule{pat: pt, lfs: false})
			}
		}
	}
	return rules
}

// isLFS reports whether the last rule matching p sets filter=lfs.
func (rules lfsAttributes) isLFS(p string) bool {
	lfs := false
	for _, r := range rules {
		if r.pat.match(p, false) {
			lfs = r.lfs
		}
	}
	return lfs
}

// defaultGitattributes is the .gitattributes of the initial commit of a new repository, as the Hub writes it.
const defaultGitattributes = `*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
`
