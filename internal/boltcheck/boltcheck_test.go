package boltcheck

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// sound writes a small database with nested buckets and a value larger than a page.
func sound(t testing.TB, p string) {
	t.Helper()
	db, err := bbolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for i := 0; i < 20; i++ {
			b, err := tx.CreateBucketIfNotExists([]byte{'b', byte('a' + i)})
			if err != nil {
				return err
			}
			for k := 0; k < 200; k++ {
				if err := b.Put([]byte(strings.Repeat("k", 10)+string(rune('a'+k%26))+string(rune('0'+k/26))), []byte(strings.Repeat("v", 300))); err != nil {
					return err
				}
			}
			n, err := b.CreateBucketIfNotExists([]byte("nested"))
			if err != nil {
				return err
			}
			if err := n.Put([]byte("big"), make([]byte, 20000)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenDamaged: random bytes and a file cut in half are an error naming the file and what to do, never a
// panic; a sound file, an empty file and a missing one open.
func TestOpenDamaged(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	sound(t, good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 64<<10)
	rand.New(rand.NewSource(1)).Read(random)
	for _, tc := range []struct {
		name    string
		content []byte
		corrupt bool
	}{
		{"sound", data, false},
		{"empty", []byte{}, false},
		{"random bytes", random, true},
		{"cut in half", data[:len(data)/2], true},
		{"cut after the meta pages", data[:3*4096], true},
		{"zeros", make([]byte, 32<<10), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "j.db")
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(p, 0o600, nil)
			if !tc.corrupt {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				db.Close()
				return
			}
			if err == nil {
				db.Close()
				t.Fatal("a damaged file opened")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "move it aside") {
				t.Errorf("error %q: want ErrCorrupt naming %s and what to do", err, p)
			}
		})
	}
	if db, err := Open(filepath.Join(dir, "new.db"), 0o600, nil); err != nil {
		t.Errorf("new file: %v", err)
	} else {
		db.Close()
	}
}

// FuzzCheck: no file content makes Check panic or fault.
func FuzzCheck(f *testing.F) {
	p := filepath.Join(f.TempDir(), "seed.db")
	sound(f, p)
	data, _ := os.ReadFile(p)
	f.Add(data[:8192])
	f.Add(data[:len(data)/3])
	f.Add([]byte("not a database"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = Check(p, nil)
	})
}
