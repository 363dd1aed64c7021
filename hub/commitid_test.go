package hub

import (
	"context"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// TestCommitID checks that a caller-chosen CommitID is the trailer of the commit (so a later process can find
// the commit by it), that a lost answer is recovered by that id without a second commit, and that ids which
// could not be found intact in a commit message are refused before anything is sent.
func TestCommitID(t *testing.T) {
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, nil)
	ctx := context.Background()
	repo := "w/commitid"
	newRepo(t, c, repo)
	dir := t.TempDir()

	tests := []struct {
		name string
		id   string
		lose bool
	}{
		{name: "plain", id: "job-0123456789abcdef0123"},
		{name: "answer lost", id: "job.lost_42", lose: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := testFiles(t, dir, uint64(100+i), map[string]int{tc.name + ".json": 10, tc.name + ".bin": 1000})
			if tc.lose {
				s.InjectFault(hubtest.FaultRule{Op: hubtest.OpCommit, Kind: hubtest.FaultLoseResponse, Status: 504})
			}
			before := s.Stats().Commits
			res, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{Summary: tc.name, CommitID: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Stats().Commits - before; got != 1 {
				t.Errorf("%d commits made, want 1", got)
			}
			if res.Recovered != tc.lose {
				t.Errorf("Recovered = %v, want %v", res.Recovered, tc.lose)
			}
			cs, err := c.ListCommits(ctx, repo, "main", 1)
			if err != nil || len(cs) != 1 {
				t.Fatalf("list commits: %v %v", cs, err)
			}
			if cs[0].ID != res.CommitOID {
				t.Errorf("head %s, result %s", cs[0].ID, res.CommitOID)
			}
			if want := CommitTrailer + ": " + tc.id; !strings.Contains(cs[0].Message, want) {
				t.Errorf("commit message %q lacks %q", cs[0].Message, want)
			}
		})
	}

	t.Run("random ids differ", func(t *testing.T) {
		var msgs []string
		for i := range 2 {
			files := testFiles(t, dir, uint64(200+i), map[string]int{"r.json": 10 + i})
			if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
				t.Fatal(err)
			}
			cs, err := c.ListCommits(ctx, repo, "main", 1)
			if err != nil {
				t.Fatal(err)
			}
			_, after, ok := strings.Cut(cs[0].Message, CommitTrailer+": ")
			if !ok || after == "" {
				t.Fatalf("no trailer in %q", cs[0].Message)
			}
			msgs = append(msgs, after)
		}
		if msgs[0] == msgs[1] {
			t.Errorf("two calls without CommitID share the id %s", msgs[0])
		}
	})

	for _, bad := range []string{"has space", "line\nbreak", "x:y", strings.Repeat("a", 65)} {
		before := s.Stats().Requests[hubtest.OpCommit]
		files := testFiles(t, dir, 300, map[string]int{"bad.json": 5})
		_, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{CommitID: bad})
		if err == nil || !strings.Contains(err.Error(), "commit id") {
			t.Errorf("CommitID %q: err %v, want a commit id error", bad, err)
		}
		if got := s.Stats().Requests[hubtest.OpCommit]; got != before {
			t.Errorf("CommitID %q: a commit was sent", bad)
		}
	}
}
