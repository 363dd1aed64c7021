package hubtest

import (
	"net/http"
	"net/url"
	"strings"
)

// route is what the router learnt from a request's method and path.
type route struct {
	op        Op
	h         func(*call)
	bucket    string // rate-limit bucket ("api", "resolvers"); "" = not rate limited
	lfs       bool   // a git-lfs route: Basic auth accepted, git-lfs error shape
	signed    bool   // a self-authenticating URL (completion): any Authorization header is a leak
	badMethod bool   // the path exists but not with this method

	key  repoKey
	rev  string
	path string // path in the repository, or the ref name of branch/tag routes
	raw  bool   // resolve: /raw/ instead of /resolve/
	oid  string
	part int
}

// repoTypes maps the plural used in API paths to the repo type.
var repoTypes = map[string]string{"models": "model", "datasets": "dataset", "spaces": "space"}

// segments splits the escaped path into unescaped segments; ok is false for an undecodable path.
func segments(r *http.Request) ([]string, bool) {
	esc := strings.Trim(r.URL.EscapedPath(), "/")
	if esc == "" {
		return nil, true
	}
	raw := strings.Split(esc, "/")
	out := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		out[i] = u
	}
	return out, true
}

// route matches the API routes.
func (s *Server) route(r *http.Request) route {
	seg, ok := segments(r)
	if !ok || len(seg) == 0 {
		return route{op: OpUnknown}
	}
	m := r.Method
	method := func(rt route, allowed ...string) route {
		for _, a := range allowed {
			if m == a {
				return rt
			}
		}
		if m == http.MethodHead {
			for _, a := range allowed {
				if a == http.MethodGet {
					return rt
				}
			}
		}
		rt.h, rt.badMethod = nil, true
		return rt
	}
	switch {
	case len(seg) == 2 && seg[0] == "_devhub" && seg[1] == "stats":
		return method(route{op: OpStats, h: (*call).stats}, http.MethodGet)
	case len(seg) == 2 && seg[0] == "api" && seg[1] == "whoami-v2":
		return method(route{op: OpWhoami, h: (*call).whoami, bucket: "api"}, http.MethodGet)
	case len(seg) == 3 && seg[0] == "api" && seg[1] == "repos" && seg[2] == "create":
		return method(route{op: OpCreateRepo, h: (*call).createRepo, bucket: "api"}, http.MethodPost)
	case len(seg) == 3 && seg[0] == "api" && seg[1] == "repos" && seg[2] == "delete":
		return method(route{op: OpDeleteRepo, h: (*call).deleteRepo, bucket: "api"}, http.MethodDelete)
	case len(seg) == 2 && seg[0] == "api" && repoTypes[seg[1]] != "":
		return method(route{op: OpList, h: (*call).listRepos, bucket: "api", key: repoKey{Type: repoTypes[seg[1]]}}, http.MethodGet)
	case len(seg) == 3 && seg[0] == "api" && seg[1] == "repos" && seg[2] == "move":
		return method(route{op: OpMoveRepo, h: (*call).moveRepo, bucket: "api"}, http.MethodPost)
	case len(seg) == 2 && seg[0] == "api" && seg[1] == "validate-yaml":
		return method(route{op: OpValidateYAML, h: (*call).validateYAML, bucket: "api"}, http.MethodPost)
	case len(seg) == 2 && seg[0] == "api" && seg[1] == "complete_multipart":
		rt := route{op: OpComplete, h: (*call).complete, signed: true}
		if oid := r.URL.Query().Get("oid"); isHex(oid, 64, 64) {
			rt.oid = oid
		}
		return method(rt, http.MethodPost)
	case len(seg) >= 4 && seg[0] == "api" && repoTypes[seg[1]] != "":
		return s.routeRepoAPI(seg, method)
	}
	return s.routeRepoWeb(seg, method)
}

// routeRepoAPI matches /api/{type}s/{ns}/{name}[/...].
func (s *Server) routeRepoAPI(seg []string, method func(route, ...string) route) route {
	rt := route{bucket: "api", key: repoKey{Type: repoTypes[seg[1]], NS: seg[2], Name: seg[3]}}
	if !validNamespace(rt.key.NS) || !validRepoName(rt.key.Name) {
		return route{op: OpUnknown}
	}
	rest := seg[4:]
	tail := func(from int) string { return strings.Join(rest[from:], "/") }
	if len(rest) == 0 {
		rt.op, rt.h = OpRepoInfo, (*call).repoInfo
		return method(rt, http.MethodGet)
	}
	switch rest[0] {
	case "revision":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpRepoInfo, (*call).repoInfo, tail(1)
			return method(rt, http.MethodGet)
		}
	case "branch":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.path = OpBranch, (*call).branch, tail(1)
			return method(rt, http.MethodPost, http.MethodDelete)
		}
	case "tag":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.path = OpTag, (*call).tag, tail(1)
			return method(rt, http.MethodPost, http.MethodDelete)
		}
	case "refs":
		if len(rest) == 1 {
			rt.op, rt.h = OpRefs, (*call).refs
			return method(rt, http.MethodGet)
		}
	case "settings":
		if len(rest) == 1 {
			rt.op, rt.h = OpSettings, (*call).settings
			return method(rt, http.MethodPut)
		}
	case "super-squash":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.path = OpSuperSquash, (*call).superSquash, tail(1)
			return method(rt, http.MethodPost)
		}
	case "discussions":
		return s.routeDiscussions(rt, rest[1:], method)
	case "xet-read-token", "xet-write-token":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpXetToken, (*call).xetToken, tail(1)
			rt.path = strings.TrimSuffix(strings.TrimPrefix(rest[0], "xet-"), "-token")
			return method(rt, http.MethodGet)
		}
	case "preupload":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpPreupload, (*call).preupload, tail(1)
			return method(rt, http.MethodPost)
		}
	case "commit":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpCommit, (*call).commit, tail(1)
			return method(rt, http.MethodPost)
		}
	case "commits":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpCommits, (*call).commits, tail(1)
			return method(rt, http.MethodGet)
		}
	case "paths-info":
		if len(rest) >= 2 {
			rt.op, rt.h, rt.rev = OpPathsInfo, (*call).pathsInfo, tail(1)
			return method(rt, http.MethodPost)
		}
	case "tree":
		if len(rest) >= 2 {
			rt.op, rt.h = OpTree, (*call).tree
			rt.rev, rt.path = splitRevPath(rest[1:])
			return method(rt, http.MethodGet)
		}
	}
	return route{op: OpUnknown}
}

// splitRevPath splits "rev/path..." segments where the revision may be sent unencoded as
// refs/{heads,tags,pr,convert}/X (three segments).
func splitRevPath(seg []string) (rev, p string) {
	if len(seg) >= 3 && seg[0] == "refs" && (seg[1] == "pr" || seg[1] == "heads" || seg[1] == "tags" || seg[1] == "convert") {
		return strings.Join(seg[:3], "/"), strings.Join(seg[3:], "/")
	}
	return seg[0], strings.Join(seg[1:], "/")
}

// routeRepoWeb matches /[datasets/|spaces/]{ns}/{name}/(resolve|raw)/{rev}/{path} and
// /[prefix]{ns}/{name}.git/info/lfs/objects/(batch|verify).
func (s *Server) routeRepoWeb(seg []string, method func(route, ...string) route) route {
	try := func(typ string, seg []string) (route, bool) {
		if len(seg) < 3 {
			return route{}, false
		}
		ns, name := seg[0], seg[1]
		if len(seg) == 6 && strings.HasSuffix(name, ".git") && seg[2] == "info" && seg[3] == "lfs" && seg[4] == "objects" {
			rt := route{bucket: "api", lfs: true, key: repoKey{Type: typ, NS: ns, Name: strings.TrimSuffix(name, ".git")}}
			if !validNamespace(rt.key.NS) || !validRepoName(rt.key.Name) {
				return route{}, false
			}
			switch seg[5] {
			case "batch":
				rt.op, rt.h = OpBatch, (*call).batch
			case "verify":
				rt.op, rt.h = OpVerify, (*call).verify
			default:
				return route{}, false
			}
			return method(rt, http.MethodPost), true
		}
		if len(seg) >= 5 && (seg[2] == "resolve" || seg[2] == "raw") {
			rt := route{op: OpResolve, h: (*call).resolve, bucket: "resolvers", raw: seg[2] == "raw",
				key: repoKey{Type: typ, NS: ns, Name: name}}
			if !validNamespace(ns) || !validRepoName(name) {
				return route{}, false
			}
			rt.rev, rt.path = splitRevPath(seg[3:])
			if rt.path == "" {
				return route{}, false
			}
			return method(rt, http.MethodGet), true
		}
		return route{}, false
	}
	if len(seg) > 0 && (seg[0] == "datasets" || seg[0] == "spaces") {
		if rt, ok := try(repoTypes[seg[0]], seg[1:]); ok {
			return rt
		}
	}
	if rt, ok := try("model", seg); ok {
		return rt
	}
	return route{op: OpUnknown}
}

// validNamespace checks a user or organization name: letters, digits, "-", "_" and "." (not first or
// last, no "--" or ".."), at most 96 characters.
func validNamespace(s string) bool {
	return validName(s, 96)
}

// validRepoName checks a repository name with the same rules as a namespace.
func validRepoName(s string) bool {
	return validName(s, 96) && !strings.HasSuffix(s, ".git")
}

func validName(s string, max int) bool {
	if s == "" || len(s) > max || strings.Contains(s, "--") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && !(c == '-' || c == '_' || c == '.') {
			return false
		}
		if !alnum && (i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}
