package hub

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// Environment of the helper process.
const (
	helperEnv         = "HUBSYNC_HUB_HELPER"
	helperEndpointEnv = "HUBSYNC_HUB_HELPER_ENDPOINT"
	helperJournalEnv  = "HUBSYNC_HUB_HELPER_JOURNAL"
	helperFileEnv     = "HUBSYNC_HUB_HELPER_FILE"
	// helperContentEnv=1 makes the helper upload the file through a ContentFunc (as a merged shard produced on
	// demand), not from its path.
	helperContentEnv = "HUBSYNC_HUB_HELPER_CONTENT"
)

// fileContent is the UploadFile of path with its bytes served by a ContentFunc (read into memory first).
func fileContent(path string) (UploadFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return UploadFile{}, err
	}
	var calls atomic.Int64
	return contentFile(crashPath, data, &calls, nil), nil
}

// crashRepo and crashPath are where the helper uploads.
const (
	crashRepo  = "w/crash"
	crashPath  = "big.safetensors"
	crashParts = 40
)

// throttledTransport slows request bodies down so a test can kill the process mid-upload.
type throttledTransport struct {
	base  http.RoundTripper
	delay time.Duration // per 16 KiB read
}

func (t throttledTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Method == http.MethodPut {
		req.Body = &slowBody{ReadCloser: req.Body, delay: t.delay}
	}
	return t.base.RoundTrip(req)
}

type slowBody struct {
	io.ReadCloser
	delay time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	time.Sleep(b.delay)
	return b.ReadCloser.Read(p)
}

// TestHelperProcess is not a test: it is the upload process that TestCrashResume kills with SIGKILL.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "upload" {
		t.Skip("helper process only")
	}
	j, err := OpenBoltJournal(os.Getenv(helperJournalEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	c, err := New(Options{
		Endpoint: os.Getenv(helperEndpointEnv), Token: wTok, Journal: j, ParallelParts: 2, Retry: TestFastRetries(),
		HTTPClient: &http.Client{Transport: throttledTransport{base: newTransport(), delay: 10 * time.Millisecond}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	f := UploadFile{PathInRepo: crashPath, LocalPath: os.Getenv(helperFileEnv)}
	if os.Getenv(helperContentEnv) == "1" {
		if f, err = fileContent(f.LocalPath); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	_, err = c.Commit(context.Background(), crashRepo, []UploadFile{f}, CommitOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startAndKill runs the helper until the server has stored at least minParts parts of oid, then SIGKILLs it. It
// returns the stats at that moment.
func startAndKill(t *testing.T, s *hubtest.Server, journal, file, oid string, minParts int, env ...string) hubtest.Stats {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=upload", helperEndpointEnv+"="+s.URL(), helperJournalEnv+"="+journal,
		helperFileEnv+"="+file)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored := 0
		for k := range s.Stats().PartsStored {
			if strings.HasPrefix(k, oid+"/") {
				stored++
			}
		}
		if stored >= minParts {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the helper ended before it could be killed (%d parts stored): %v\n%s", stored, err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("timeout: %d parts stored\n%s", stored, stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let the server notice the cut connections
	return s.Stats()
}

func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	tests := []struct {
		name string
		// between runs between the kill and the resume.
		between func(t *testing.T, s *hubtest.Server, journalPath string)
		// rebatch: the resume must ask for fresh URLs (all bytes again).
		rebatch bool
	}{
		{name: "finishes the missing parts with the journaled URLs"},
		{name: "URLs revoked on the server: fresh batch", rebatch: true,
			between: func(t *testing.T, s *hubtest.Server, _ string) {
				s.InjectFault(hubtest.FaultRule{Kind: hubtest.FaultExpireURLs})
			}},
		{name: "recorded expiry passed: fresh batch without trying", rebatch: true,
			between: func(t *testing.T, s *hubtest.Server, jp string) {
				j, err := OpenBoltJournal(jp)
				if err != nil {
					t.Fatal(err)
				}
				defer j.Close()
				keys, _ := j.Keys(context.Background())
				if len(keys) != 1 {
					t.Fatalf("journal keys %v, want one", keys)
				}
				rec, _ := j.Get(context.Background(), keys[0])
				etags := rec.ETags
				rec.ExpiresAt = time.Now().Add(-time.Minute)
				j.Put(context.Background(), rec)
				for n, e := range etags {
					j.PutPart(context.Background(), keys[0], n, e)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newHubServer(t, nil)
			c := newTestClient(t, s.URL(), wTok, nil)
			newRepo(t, c, crashRepo)
			dir := t.TempDir()
			data := randomBytes(77, crashParts*testChunk-1000)
			file := filepath.Join(dir, "big.safetensors")
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			oid := sha(data)
			journalPath := filepath.Join(dir, "state", "uploads.db")
			atKill := startAndKill(t, s, journalPath, file, oid, 6)
			if tc.between != nil {
				tc.between(t, s, journalPath)
			}

			j, err := OpenBoltJournal(journalPath)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			rec, err := j.Get(context.Background(), newTestClient(t, s.URL(), wTok, nil).journalKey(crashRepo, oid))
			if err != nil || rec == nil {
				t.Fatalf("no journal record after the kill: %v", err)
			}
			storedAtKill := 0
			for k := range atKill.PartsStored {
				if strings.HasPrefix(k, oid+"/") {
					storedAtKill++
				}
			}
			// Every ETag in the journal is a part the server stored (the journal never runs ahead).
			for n := range rec.ETags {
				if atKill.PartsStored[fmt.Sprintf("%s/%d", oid, n)] == 0 {
					t.Errorf("journal has part %d that the server never stored", n)
				}
			}
			if len(rec.ETags) < storedAtKill-2 {
				t.Errorf("journal has %d ETags, server stored %d parts (at most 2 in flight)", len(rec.ETags), storedAtKill)
			}

			rc := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Journal = j; o.ParallelParts = 2 })
			before := commitCount(t, rc, crashRepo, "main")
			res, err := rc.Commit(context.Background(), crashRepo, []UploadFile{{PathInRepo: crashPath, LocalPath: file}}, CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Uploaded != 1 {
				t.Errorf("uploaded %d", res.Uploaded)
			}
			after := s.Stats()
			checkRepo(t, rc, crashRepo, "main", map[string][]byte{crashPath: data})
			if n := commitCount(t, rc, crashRepo, "main"); n != before+1 {
				t.Errorf("%d new commits", n-before)
			}
			if keys, _ := j.Keys(context.Background()); len(keys) != 0 {
				t.Errorf("journal not emptied after completion: %v", keys)
			}
			size := int64(len(data))
			received := after.Objects[oid]
			t.Logf("size %d, received %d (%.2f×), parts journaled at kill %d, stored at kill %d, uploads started %d",
				size, received, float64(received)/float64(size), len(rec.ETags), storedAtKill, after.UploadsStarted)
			if tc.rebatch {
				if after.UploadsStarted != 2 {
					t.Errorf("uploads started %d, want 2 (a fresh batch)", after.UploadsStarted)
				}
				return
			}
			if after.UploadsStarted != 1 {
				t.Errorf("uploads started %d, want 1 (the journaled upload resumed)", after.UploadsStarted)
			}
			// Parts journaled before the kill were not sent again.
			for n := range rec.ETags {
				k := fmt.Sprintf("%s/%d", oid, n)
				if after.Parts[k] != atKill.Parts[k] {
					t.Errorf("part %d sent again after the resume (%d → %d PUTs)", n, atKill.Parts[k], after.Parts[k])
				}
			}
			// Bytes for the object: the file once plus at most the parts in flight at the kill (2 parallel), plus
			// the completion bodies (the server counts them too: ~65 bytes per part).
			if limit := size + 2*testChunk + 2*crashParts*80; received > limit {
				t.Errorf("received %d bytes for a %d-byte object, more than size + 2 in-flight parts (%d)", received, size, limit)
			}
		})
	}
}

// TestCrashResumeContent SIGKILLs a process uploading a file given by its ContentFunc (a shard produced on
// demand) and resumes in a new client: the journaled parts are neither produced nor sent again, only the parts
// in flight at the kill are.
func TestCrashResumeContent(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	newRepo(t, c, crashRepo)
	dir := t.TempDir()
	data := randomBytes(78, crashParts*testChunk-1000)
	file := filepath.Join(dir, "big.safetensors")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	oid := sha(data)
	journalPath := filepath.Join(dir, "state", "uploads.db")
	startAndKill(t, s, journalPath, file, oid, 6, helperContentEnv+"=1")
	j, err := OpenBoltJournal(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rec, err := j.Get(context.Background(), c.journalKey(crashRepo, oid))
	if err != nil || rec == nil || len(rec.ETags) == 0 {
		t.Fatalf("no journaled part after the kill: %+v %v", rec, err)
	}
	var mu sync.Mutex
	produced := map[int64]bool{}
	var calls atomic.Int64
	f := contentFile(crashPath, data, &calls, func(off, n int64) error {
		mu.Lock()
		produced[off] = true
		mu.Unlock()
		return nil
	})
	rc := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Journal = j; o.ParallelParts = 2 })
	if _, err := rc.Commit(context.Background(), crashRepo, []UploadFile{f}, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	checkRepo(t, rc, crashRepo, "main", map[string][]byte{crashPath: data})
	after := s.Stats()
	for n := range rec.ETags {
		if produced[int64(n-1)*testChunk] {
			t.Errorf("journaled part %d was produced again", n)
		}
		if k := fmt.Sprintf("%s/%d", oid, n); after.PartsStored[k] != 1 {
			t.Errorf("journaled part %d stored %d times", n, after.PartsStored[k])
		}
	}
	again := 0
	for k, v := range after.PartsStored {
		if strings.HasPrefix(k, oid+"/") && v > 1 {
			again++
		}
	}
	if again > 2 {
		t.Errorf("%d parts stored twice; at most the 2 in flight at the kill may be", again)
	}
	t.Logf("journaled at kill %d of %d parts; produced on resume %d ranges", len(rec.ETags), crashParts, len(produced))
}
