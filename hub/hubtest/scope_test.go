package hubtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Bob knows the sha256 and size of a file in alice's private repository; he must neither learn that it
// exists nor commit a pointer to it and download alice's bytes.
func TestLFSObjectsScopedToRepos(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "secret", true)
	e.createRepo(bobTok, "", "mine", false)
	data := randomBytes(11, 100<<10)
	oid := e.upload(aliceTok, "alice/secret", data)
	if r := e.commitLines(aliceTok, "alice/secret", "main", "", header("add", ""), lfsLine("w.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("alice's commit: %d %s", r.StatusCode, r.body)
	}

	// The batch answer for bob's repository asks for the bytes, as for an object nobody has.
	a := e.batch(bobTok, "bob/mine", "upload", obj(oid, len(data)))
	if o := a.Objects[0]; o.Error != nil || o.Actions["upload"].Href == "" {
		t.Fatalf("bob's upload batch for alice's oid: %+v; want upload actions (not \"exists\")", o)
	}
	// Nor does a download batch or verify reveal it.
	if o := e.batch(bobTok, "bob/mine", "download", obj(oid, len(data))).Objects[0]; o.Error == nil || o.Error.Code != 404 {
		t.Fatalf("bob's download batch for alice's oid: %+v; want a 404 object error", o)
	}
	e.api("POST", "/bob/mine.git/info/lfs/objects/verify", bobTok, obj(oid, len(data)), 404)
	// A pointer to it is refused.
	if r := e.commitLines(bobTok, "bob/mine", "main", "", header("steal", ""), lfsLine("stolen.bin", oid, int64(len(data)))); r.StatusCode != 400 {
		t.Fatalf("bob's pointer to alice's object: %d %s; want 400", r.StatusCode, r.body)
	}
	if r := e.do("GET", "/bob/mine/resolve/main/stolen.bin", bobTok, nil); r.StatusCode != 404 {
		t.Fatalf("resolve of the refused file: %d", r.StatusCode)
	}

	// Alice's own repository still sees it (reachable and uploaded there); a second repository of hers
	// gets it once the bytes are sent to it.
	if o := e.batch(aliceTok, "alice/secret", "upload", obj(oid, len(data))).Objects[0]; o.Actions != nil || o.Error != nil {
		t.Fatalf("alice's batch for her own object: %+v; want no actions (stored)", o)
	}
	e.createRepo(aliceTok, "", "copy", false)
	if oid2 := e.upload(aliceTok, "alice/copy", data); oid2 != oid {
		t.Fatal("oid changed")
	}
	if r := e.commitLines(aliceTok, "alice/copy", "main", "", header("add", ""), lfsLine("w.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("commit after uploading to the second repo: %d %s", r.StatusCode, r.body)
	}
}

// A multipart upload grants the object to the repository too, and only to it.
func TestLFSMultipartGrantIsPerRepo(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "a", false)
	e.createRepo(bobTok, "", "b", false)
	data := randomBytes(12, 600<<10) // above MultipartThreshold
	oid := e.upload(aliceTok, "alice/a", data)
	if r := e.commitLines(bobTok, "bob/b", "main", "", header("steal", ""), lfsLine("x.bin", oid, int64(len(data)))); r.StatusCode != 400 {
		t.Fatalf("bob's pointer: %d %s; want 400", r.StatusCode, r.body)
	}
	if r := e.commitLines(aliceTok, "alice/a", "main", "", header("add", ""), lfsLine("x.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("alice's commit: %d %s", r.StatusCode, r.body)
	}
}

// Everything under the data directory is private to the server's user (0600 files, 0700 folders).
func TestDataDirModes(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.DataDir = filepath.Join(dir, "data")
	e := newEnv(t, opts)
	e.createRepo(aliceTok, "", "p", true)
	small := []byte("hello private\n")
	big := randomBytes(13, 100<<10)
	oid := e.upload(aliceTok, "alice/p", big)
	if r := e.commitLines(aliceTok, "alice/p", "main", "", header("add", ""), fileLine("a.txt", small), lfsLine("w.bin", oid, int64(len(big)))); r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	e.batch(aliceTok, "alice/p", "upload", obj(sha256hex(randomBytes(14, 600<<10)), 600<<10)) // an upload in flight
	n := 0
	err := filepath.WalkDir(opts.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v; want no group or other bits", p, fi.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("walked only %d entries", n)
	}
}

// Data written before grants existed: an object reachable from a repository's commits stays usable there (and
// only there) after a restart.
func TestLFSReachableWithoutGrant(t *testing.T) {
	opts := testOptions()
	opts.DataDir = t.TempDir()
	e := newEnv(t, opts)
	e.createRepo(aliceTok, "", "old", false)
	e.createRepo(bobTok, "", "b", false)
	data := randomBytes(15, 100<<10)
	oid := e.upload(aliceTok, "alice/old", data)
	if r := e.commitLines(aliceTok, "alice/old", "main", "", header("add", ""), lfsLine("w.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(opts.DataDir, "repos", "models", "alice", "old", "lfs")); err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, opts)
	if r := e.commitLines(aliceTok, "alice/old", "main", "", header("copy", ""), lfsLine("w2.bin", oid, int64(len(data)))); r.StatusCode != 200 {
		t.Fatalf("commit of a reachable object: %d %s", r.StatusCode, r.body)
	}
	if r := e.commitLines(bobTok, "bob/b", "main", "", header("steal", ""), lfsLine("w.bin", oid, int64(len(data)))); r.StatusCode != 400 {
		t.Fatalf("bob's pointer: %d %s; want 400", r.StatusCode, r.body)
	}
}
