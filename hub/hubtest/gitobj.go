package hubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// emptyTreeOID is git's id of the empty tree.
const emptyTreeOID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// blobOID returns git's blob id (SHA-1 of "blob <size>\x00" + content).
func blobOID(content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// blobOIDReader computes git's blob id of size bytes read from r.
func blobOIDReader(r io.Reader, size int64) (string, error) {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", size)
	n, err := io.Copy(h, r)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("blob: read %d bytes, want %d", n, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lfsPointer returns the git-lfs pointer file that stands in the repository for an LFS object.
func lfsPointer(oid string, size int64) []byte {
	return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:" + oid + "\nsize " + strconv.FormatInt(size, 10) + "\n")
}

// treeEntry is one entry of a git tree object.
type treeEntry struct {
	name string
	dir  bool
	oid  string
}

// treeOID returns git's id of a tree holding entries.
func treeOID(entries []treeEntry) string {
	sorted := append([]treeEntry(nil), entries...)
	key := func(e treeEntry) string {
		if e.dir {
			return e.name + "/"
		}
		return e.name
	}
	sort.Slice(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
	var body []byte
	for _, e := range sorted {
		mode := "100644"
		if e.dir {
			mode = "40000"
		}
		raw, _ := hex.DecodeString(e.oid)
		body = append(body, mode+" "+e.name+"\x00"...)
		body = append(body, raw...)
	}
	h := sha1.New()
	fmt.Fprintf(h, "tree %d\x00", len(body))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// commitOID returns git's id of a commit object with these fields.
func commitOID(tree string, parents []string, author string, date time.Time, message string) string {
	var b strings.Builder
	b.WriteString("tree " + tree + "\n")
	for _, p := range parents {
		b.WriteString("parent " + p + "\n")
	}
	who := fmt.Sprintf("%s <%s@users.noreply.huggingface.co> %d +0000", author, author, date.Unix())
	b.WriteString("author " + who + "\n")
	b.WriteString("committer " + who + "\n\n")
	b.WriteString(message)
	b.WriteString("\n")
	h := sha1.New()
	fmt.Fprintf(h, "commit %d\x00", b.Len())
	io.WriteString(h, b.String())
	return hex.EncodeToString(h.Sum(nil))
}

// computeTrees returns the git tree id of every directory ("" is the root) of a flat file map.
func computeTrees(files map[string]fileEntry) map[string]string {
	children := map[string][]treeEntry{"": nil}
	dirs := map[string]bool{"": true}
	for p, f := range files {
		dir, name := splitDir(p)
		children[dir] = append(children[dir], treeEntry{name: name, oid: f.OID})
		for d := dir; d != "" && !dirs[d]; {
			dirs[d] = true
			parent, dname := splitDir(d)
			children[parent] = append(children[parent], treeEntry{name: dname, dir: true})
			d = parent
		}
	}
	order := make([]string, 0, len(dirs))
	for d := range dirs {
		order = append(order, d)
	}
	// Deepest first, so every child tree is known before its parent.
	depth := func(d string) int {
		if d == "" {
			return -1
		}
		return strings.Count(d, "/")
	}
	sort.Slice(order, func(i, j int) bool {
		if di, dj := depth(order[i]), depth(order[j]); di != dj {
			return di > dj
		}
		return order[i] < order[j]
	})
	trees := make(map[string]string, len(order))
	for _, d := range order {
		entries := children[d]
		for i := range entries {
			if entries[i].dir {
				entries[i].oid = trees[joinPath(d, entries[i].name)]
			}
		}
		trees[d] = treeOID(entries)
	}
	return trees
}

// splitDir splits "a/b/c" into "a/b" and "c", and "c" into "" and "c".
func splitDir(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
