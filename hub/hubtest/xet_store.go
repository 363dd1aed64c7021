package hubtest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hubsync/hubsync/internal/xet"
)

// On-disk layout of the Xet CAS, under the data directory:
//
//	xet/xorbs/ab/cd/<hash>        a xorb as received (validated)
//	xet/xorbs/ab/cd/<hash>.json   its chunk index (xorbIndex)
//	xet/files/ab/cd/<hash>.json   a file reconstruction registered by a shard (xetFile)
//	xet/shards/ab/cd/<sha256>     every accepted shard, as received
//
// Xorbs are global (dedup is system-wide, as on the real Xet service); a file registered by a shard becomes an
// ordinary LFS object (objects/…/<sha256>) granted to the token's repository, so commits and /resolve/ work
// unchanged. The in-memory indexes are rebuilt from these files when the server starts.

// xorbIndex is what the CAS keeps about a stored xorb.
type xorbIndex struct {
	Hash xet.Hash `json:"hash"`
	// Chunks are the chunk hashes and unpacked lengths in order.
	Chunks []xet.ChunkRef `json:"chunks"`
	// Offsets are the serialized offsets of each chunk's header, plus the end of the last chunk.
	Offsets []uint32 `json:"offsets"`
	// Size is the serialized size (with a footer, if the upload had one).
	Size int64 `json:"size"`
}

// xetTerm is one term of a registered file.
type xetTerm struct {
	Xorb  xet.Hash `json:"xorb"`
	Start uint32   `json:"start"`
	End   uint32   `json:"end"`
	Bytes uint32   `json:"bytes"`
}

// xetFile is a file registered by a shard.
type xetFile struct {
	Hash   xet.Hash  `json:"hash"`
	SHA256 string    `json:"sha256"`
	Size   int64     `json:"size"`
	Terms  []xetTerm `json:"terms"`
}

// xetStore is the CAS's state.
type xetStore struct {
	dir string

	mu     sync.RWMutex
	xorbs  map[xet.Hash]*xorbIndex
	chunks map[xet.Hash]xet.Hash // chunk hash → the first stored xorb holding it
	files  map[xet.Hash]*xetFile
	bySHA  map[string]xet.Hash // LFS oid → file hash
}

func openXetStore(dataDir string) (*xetStore, error) {
	x := &xetStore{
		dir:    filepath.Join(dataDir, "xet"),
		xorbs:  map[xet.Hash]*xorbIndex{},
		chunks: map[xet.Hash]xet.Hash{},
		files:  map[xet.Hash]*xetFile{},
		bySHA:  map[string]xet.Hash{},
	}
	for _, d := range []string{"xorbs", "files", "shards"} {
		if err := os.MkdirAll(filepath.Join(x.dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	err := filepath.WalkDir(filepath.Join(x.dir, "xorbs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		var xi xorbIndex
		if b, err := readAll(p); err != nil || json.Unmarshal(b, &xi) != nil {
			return nil // a damaged index: the xorb counts as absent and may be uploaded again
		}
		x.addXorb(&xi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("xet store: %w", err)
	}
	err = filepath.WalkDir(filepath.Join(x.dir, "files"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		var f xetFile
		if b, err := readAll(p); err != nil || json.Unmarshal(b, &f) != nil {
			return nil
		}
		x.files[f.Hash] = &f
		x.bySHA[f.SHA256] = f.Hash
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("xet store: %w", err)
	}
	return x, nil
}

// addXorb indexes a stored xorb; the caller holds mu (or is openXetStore).
func (x *xetStore) addXorb(xi *xorbIndex) {
	x.xorbs[xi.Hash] = xi
	for _, c := range xi.Chunks {
		if _, ok := x.chunks[c.Hash]; !ok {
			x.chunks[c.Hash] = xi.Hash
		}
	}
}

func (x *xetStore) xorbPath(h xet.Hash) string {
	return shardPath(filepath.Join(x.dir, "xorbs"), h.String())
}

func (x *xetStore) filePath(h xet.Hash) string {
	return shardPath(filepath.Join(x.dir, "files"), h.String())
}

// xorb returns the index of a stored xorb, or nil.
func (x *xetStore) xorb(h xet.Hash) *xorbIndex {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.xorbs[h]
}

// file returns a registered file, or nil.
func (x *xetStore) file(h xet.Hash) *xetFile {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.files[h]
}

// fileBySHA returns the file registered for an LFS oid, or nil.
func (x *xetStore) fileBySHA(oid string) *xetFile {
	x.mu.RLock()
	defer x.mu.RUnlock()
	h, ok := x.bySHA[oid]
	if !ok {
		return nil
	}
	return x.files[h]
}

// chunkXorb returns the xorb holding a chunk.
func (x *xetStore) chunkXorb(c xet.Hash) (xet.Hash, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	h, ok := x.chunks[c]
	return h, ok
}

// putXorb stores a validated xorb; it reports whether it was new.
func (x *xetStore) putXorb(body []byte, xo *xet.Xorb) (bool, error) {
	if x.xorb(xo.Hash) != nil {
		return false, nil
	}
	xi := &xorbIndex{Hash: xo.Hash, Size: int64(len(body))}
	for _, c := range xo.Chunks {
		xi.Chunks = append(xi.Chunks, c.Ref)
		xi.Offsets = append(xi.Offsets, c.Offset)
	}
	end := uint32(0)
	if n := len(xo.Chunks); n > 0 {
		last := xo.Chunks[n-1]
		end = last.Offset + xorbChunkHeaderLen + last.StoredLen
	}
	xi.Offsets = append(xi.Offsets, end)
	p := x.xorbPath(xo.Hash)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, err
	}
	if err := writeAtomic(p, body, 0o600); err != nil {
		return false, err
	}
	meta, _ := json.Marshal(xi)
	if err := writeAtomic(p+".json", meta, 0o600); err != nil {
		return false, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.xorbs[xo.Hash] != nil {
		return false, nil
	}
	x.addXorb(xi)
	return true, nil
}

// xorbChunkHeaderLen is the size of a serialized chunk header.
const xorbChunkHeaderLen = 8

// putFile records a registered file.
func (x *xetStore) putFile(f *xetFile) error {
	p := x.filePath(f.Hash)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(f)
	if err := writeAtomic(p+".json", b, 0o600); err != nil {
		return err
	}
	x.mu.Lock()
	x.files[f.Hash] = f
	x.bySHA[f.SHA256] = f.Hash
	x.mu.Unlock()
	return nil
}

// putShard keeps an accepted shard; it reports whether the same shard was stored before.
func (x *xetStore) putShard(sum [32]byte, body []byte) (bool, error) {
	p := shardPath(filepath.Join(x.dir, "shards"), hex.EncodeToString(sum[:]))
	if _, err := os.Stat(p); err == nil {
		return true, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, err
	}
	return false, writeAtomic(p, body, 0o600)
}

// readXorb parses a stored xorb (decompressing its chunks).
func (x *xetStore) readXorb(h xet.Hash) (*xet.Xorb, error) {
	b, err := os.ReadFile(x.xorbPath(h))
	if err != nil {
		return nil, err
	}
	return xet.ParseXorb(b)
}
