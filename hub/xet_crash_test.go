package hub

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
)

const (
	xetCrashRepo      = "w/xetcrash"
	xetCrashXorbLimit = 256 << 10
)

// throttledPOST slows the bodies of xorb POSTs so that a kill lands mid-upload.
type throttledPOST struct {
	base  http.RoundTripper
	delay time.Duration // per 16 KiB read
}

func (t throttledPOST) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/v1/xorbs/") {
		req.Body = &slowBody{ReadCloser: req.Body, delay: t.delay}
	}
	return t.base.RoundTrip(req)
}

// xetCrashClient is the client of both runs: Xet required, small xorbs, the journal at path.
func xetCrashClient(endpoint string, j Journal, rt http.RoundTripper) (*Client, error) {
	c, err := New(Options{Endpoint: endpoint, Token: wTok, Journal: j, Retry: TestFastRetries(), Xet: XetOn,
		HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		return nil, err
	}
	c.xetXorbLimit = xetCrashXorbLimit
	return c, nil
}

// TestXetHelperProcess is the process TestXetCrashResume kills mid-upload.
func TestXetHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "xet-upload" {
		t.Skip("helper process only")
	}
	j, err := OpenBoltJournal(os.Getenv(helperJournalEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	c, err := xetCrashClient(os.Getenv(helperEndpointEnv), j, throttledPOST{base: newTransport(), delay: 10 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	f := UploadFile{PathInRepo: crashPath, LocalPath: os.Getenv(helperFileEnv)}
	if _, err := c.Commit(context.Background(), xetCrashRepo, []UploadFile{f}, CommitOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestXetCrashResume: a process uploading through Xet is SIGKILLed after some xorbs were stored; a new process
// with the same journal finishes, re-sending no xorb the CAS had acknowledged, and the repo ends identical to
// an uninterrupted upload.
func TestXetCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	s := newHubServer(t, func(o *hubtest.Options) { o.Xet = true })
	dir := t.TempDir()
	content := xetRandom(11, 4<<20) // about 16 xorbs of 256 KiB
	file := filepath.Join(dir, crashPath)
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c0 := newTestClient(t, s.URL(), wTok, nil)
	newRepo(t, c0, xetCrashRepo)
	journalPath := filepath.Join(dir, "state", "uploads.db")

	cmd := exec.Command(os.Args[0], "-test.run=^TestXetHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=xet-upload", helperEndpointEnv+"="+s.URL(), helperJournalEnv+"="+journalPath,
		helperFileEnv+"="+file)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for s.Stats().Xet.XorbsStored < 4 {
		select {
		case err := <-done:
			t.Fatalf("the helper ended before it could be killed: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("timeout: %d xorbs stored\n%s", s.Stats().Xet.XorbsStored, stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	time.Sleep(20 * time.Millisecond) // let the server notice the cut connections
	atKill := s.Stats().Xet

	j, err := OpenBoltJournal(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	key := c0.journalKey(xetCrashRepo, fmt.Sprintf("%x", sha256Of(content))) + " xet"
	rec, err := j.Get(context.Background(), key)
	if err != nil || rec == nil || len(rec.ETags) == 0 {
		t.Fatalf("no acknowledged xorb journaled at the kill: %+v %v", rec, err)
	}
	if int64(len(rec.ETags)) > atKill.XorbsStored {
		t.Errorf("journal has %d xorbs, the CAS stored %d (the journal ran ahead)", len(rec.ETags), atKill.XorbsStored)
	}

	c, err := xetCrashClient(s.URL(), j, newTransport())
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if _, err := c.Commit(context.Background(), xetCrashRepo, []UploadFile{{PathInRepo: crashPath, LocalPath: file}}, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	checkRepo(t, c, xetCrashRepo, "main", map[string][]byte{crashPath: content})
	after := s.Stats().Xet
	// Every xorb the CAS stored but had not acknowledged at the kill is sent again (the client cannot know);
	// an acknowledged one never is.
	resent := after.XorbsReceived - after.XorbsStored
	if want := atKill.XorbsStored - int64(len(rec.ETags)); resent != want {
		t.Errorf("%d xorbs received again, want %d (stored at the kill %d, acknowledged %d)", resent, want, atKill.XorbsStored, len(rec.ETags))
	}
	if rec, err := j.Get(context.Background(), key); err != nil || rec != nil {
		t.Errorf("journal record left after completion: %+v %v", rec, err)
	}
	t.Logf("xorbs: stored at the kill %d, journaled %d, stored in all %d, received in all %d", atKill.XorbsStored, len(rec.ETags),
		after.XorbsStored, after.XorbsReceived)
}
