//go:build unix

package export

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOutputHonoursUmask: shards, small files and the model directory get 0666/0777 less the umask, like any
// file the user creates (shards used to be 0600, the rest a fixed 0644/0755). Not parallel: the umask is the
// process's.
func TestOutputHonoursUmask(t *testing.T) {
	for _, umask := range []int{0o022, 0o027, 0o002} {
		old := syscall.Umask(umask)
		func() {
			defer syscall.Umask(old)
			final := filepath.Join(t.TempDir(), "merged")
			plan, err := PlanShards(testSpecs(), 5000)
			if err != nil {
				t.Fatal(err)
			}
			out, err := CreateOutput(final)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Abort()
			if err := out.WriteShards(context.Background(), plan, streamFill); err != nil {
				t.Fatal(err)
			}
			if err := out.WriteFile("config.json", []byte("{}\n")); err != nil {
				t.Fatal(err)
			}
			dir, err := out.Commit()
			if err != nil {
				t.Fatal(err)
			}
			wantFile, wantDir := fs.FileMode(0o666&^umask), fs.FileMode(0o777&^umask)
			err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				st, err := os.Stat(p)
				if err != nil {
					return err
				}
				want := wantFile
				if d.IsDir() {
					want = wantDir
				}
				if st.Mode().Perm() != want {
					t.Errorf("umask %03o: %s has mode %03o, want %03o", umask, p, st.Mode().Perm(), want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}()
	}
}
