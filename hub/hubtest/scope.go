package hubtest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LFS objects are stored once for all repositories (objects/ab/cd/<sha256>), but a repository may only use
// the objects granted to it: those uploaded through its own batch API (the storage URL names the repository)
// and those already reachable from one of its commits. A grant is an empty marker file
// repos/<type>s/<ns>/<name>/lfs/ab/cd/<sha256>, so it goes with the repository when it is deleted or moved.
// Batch, verify and commit answers consult only the grants of the repository they are about, so no
// repository learns whether another one holds an object.

// grantPath is the marker file of an object granted to the repository.
func (h *repoHandle) grantPath(oid string) string {
	return shardPath(filepath.Join(h.s.repoDir(h.key), "lfs"), oid)
}

// grant records that the repository may use the object.
func (h *repoHandle) grant(oid string) error {
	p := h.grantPath(oid)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeAtomic(p, nil, 0o600)
}

// hasObject reports whether the object is stored and granted to the repository (or reachable from one of
// its commits, for data written before grants existed), and its size.
func (h *repoHandle) hasObject(oid string) (int64, bool) {
	size, stored := h.s.objectSize(oid)
	if !stored {
		return 0, false
	}
	if _, err := os.Stat(h.grantPath(oid)); err == nil {
		return size, true
	}
	if h.reachable(oid) {
		h.grant(oid) // best effort: the next look-up is a stat
		return size, true
	}
	return 0, false
}

// reachable reports whether a commit of the repository has a file with that LFS object. The set is built once
// per handle from the commits on disk: commits made since only reference granted objects, so it never needs to
// grow.
func (h *repoHandle) reachable(oid string) bool {
	h.reachOnce.Do(func() {
		h.reach = map[string]bool{}
		entries, err := os.ReadDir(filepath.Join(h.s.repoDir(h.key), "commits"))
		if err != nil {
			return
		}
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok {
				continue
			}
			c, err := h.commit(id)
			if err != nil || c == nil {
				continue
			}
			for _, f := range c.Files {
				if f.LFS != nil {
					h.reach[f.LFS.OID] = true
				}
			}
		}
	})
	return h.reach[oid]
}

// grantUpload grants a freshly stored object to the repository an upload URL was issued for (repo is
// repoKey.grantName, rid the repository's id then, so that a repository deleted and created again under the
// same name does not inherit the upload).
func (s *Server) grantUpload(repo, rid, oid string) error {
	k, ok := parseGrantName(repo)
	if !ok {
		return errors.New("storage URL names no repository")
	}
	h, err := s.store.repo(k)
	if err != nil {
		return err
	}
	if h == nil {
		return fs.ErrNotExist
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.st == nil || h.st.ID != rid {
		return fs.ErrNotExist
	}
	return h.grant(oid)
}

// grantName is how a storage URL names the repository: "<type>/<ns>/<name>".
func (k repoKey) grantName() string { return k.Type + "/" + k.NS + "/" + k.Name }

func parseGrantName(s string) (repoKey, bool) {
	p := strings.Split(s, "/")
	if len(p) != 3 || repoTypes[p[0]+"s"] == "" || !validNamespace(p[1]) || !validRepoName(p[2]) {
		return repoKey{}, false
	}
	return repoKey{Type: p[0], NS: p[1], Name: p[2]}, true
}
