package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// contentOf returns a ContentFunc serving data, counting calls, that runs hook (when set) before each range.
func contentOf(data []byte, calls *atomic.Int64, hook func(off, n int64) error) ContentFunc {
	return func(ctx context.Context, off, n int64, w io.Writer) error {
		calls.Add(1)
		if hook != nil {
			if err := hook(off, n); err != nil {
				return err
			}
		}
		if off < 0 || off+n > int64(len(data)) {
			return fmt.Errorf("range [%d,+%d) outside %d bytes", off, n, len(data))
		}
		// Write in small pieces, as a tile stream does.
		for b := data[off : off+n]; len(b) > 0; {
			k := min(len(b), 4096)
			if _, err := w.Write(b[:k]); err != nil {
				return err
			}
			b = b[k:]
		}
		return nil
	}
}

func contentFile(p string, data []byte, calls *atomic.Int64, hook func(off, n int64) error) UploadFile {
	return UploadFile{PathInRepo: p, Content: contentOf(data, calls, hook), SHA256: sha(data), Size: int64(len(data)),
		Sample: data[:min(len(data), sampleSize)]}
}

// TestCommitContentFiles commits files that exist only as content functions (a basic transfer, two multipart
// ones and an inline one) and reads them back byte for byte.
func TestCommitContentFiles(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.ParallelParts = 4 })
	repo := "w/content"
	newRepo(t, c, repo)
	want := map[string][]byte{
		"config.json":                      []byte(`{"a":1}`),
		"small.safetensors":                randomBytes(1, 100<<10),
		"model-00001-of-00002.safetensors": randomBytes(2, 10*testChunk+12345),
		"model-00002-of-00002.safetensors": randomBytes(3, 12*testChunk),
	}
	var calls atomic.Int64
	var files []UploadFile
	for p, d := range want {
		files = append(files, contentFile(p, d, &calls, nil))
	}
	res, err := c.Commit(context.Background(), repo, files, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 3 {
		t.Errorf("uploaded %d LFS objects, want 3", res.Uploaded)
	}
	checkRepo(t, c, repo, "main", want)
}

// TestCommitContentChangedAborts checks that a content function reporting ErrContentChanged for one part stops
// the upload without retrying that part and commits nothing.
func TestCommitContentChangedAborts(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.ParallelParts = 2 })
	repo := "w/changed"
	newRepo(t, c, repo)
	data := randomBytes(4, 8*testChunk)
	var calls, bad atomic.Int64
	f := contentFile("model.safetensors", data, &calls, func(off, n int64) error {
		if off == 3*testChunk {
			bad.Add(1)
			return fmt.Errorf("%w: block differs", ErrContentChanged)
		}
		return nil
	})
	_, err := c.Commit(context.Background(), repo, []UploadFile{f}, CommitOptions{})
	if !errors.Is(err, ErrContentChanged) {
		t.Fatalf("err = %v, want ErrContentChanged", err)
	}
	if n := bad.Load(); n != 1 {
		t.Errorf("the changed part was produced %d times, want 1 (no retry)", n)
	}
	if n := commitCount(t, c, repo, "main"); n != 1 {
		t.Errorf("%d commits, want only the initial one", n)
	}
	if _, ok := s.HasObject(sha(data)); ok {
		t.Error("the object was stored")
	}
}

// TestCommitContentResumeSendsOnlyMissingParts interrupts a journaled multipart upload of a content file (the
// context is cancelled once some parts are stored) and checks that the second run neither produces nor sends a
// stored part again.
func TestCommitContentResumeSendsOnlyMissingParts(t *testing.T) {
	s := newHubServer(t, nil)
	j, err := OpenBoltJournal(filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Journal = j; o.ParallelParts = 1 })
	repo := "w/resume"
	newRepo(t, c, repo)
	data := randomBytes(5, 10*testChunk)
	oid := sha(data)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	var mu sync.Mutex
	produced := map[int64]int{}
	hook := func(off, n int64) error {
		mu.Lock()
		defer mu.Unlock()
		produced[off]++
		if off == 4*testChunk && ctx.Err() == nil {
			cancel() // parts 1-4 are stored; part 5 is in flight
			return context.Canceled
		}
		return nil
	}
	f := contentFile("model.safetensors", data, &calls, hook)
	if _, err := c.Commit(ctx, repo, []UploadFile{f}, CommitOptions{}); err == nil {
		t.Fatal("the interrupted commit succeeded")
	}
	stored := s.Stats().PartsStored
	for n := 1; n <= 4; n++ {
		if stored[fmt.Sprintf("%s/%d", oid, n)] != 1 {
			t.Fatalf("part %d stored %d times before the interruption, want 1", n, stored[fmt.Sprintf("%s/%d", oid, n)])
		}
	}
	mu.Lock()
	clear(produced)
	mu.Unlock()
	if _, err := c.Commit(context.Background(), repo, []UploadFile{f}, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	for n := 1; n <= 10; n++ {
		k := fmt.Sprintf("%s/%d", oid, n)
		if st.Parts[k] != 1 && n != 5 {
			t.Errorf("part %d: %d PUTs in all, want 1", n, st.Parts[k])
		}
	}
	mu.Lock()
	for off := range produced {
		if off < 4*testChunk {
			t.Errorf("journaled part at %d was produced again", off)
		}
	}
	mu.Unlock()
	if got := readBack(t, c, repo, "main", "model.safetensors"); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}
