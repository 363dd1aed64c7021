package hub

import (
	"context"
	"errors"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// TestXetCommitDevhub: Commit against devhub --xet: Xet when offered (auto), LFS when the client does not offer
// it (off), and the second checkpoint dedupes; faults (xorb/shard 5xx, a reset, expired CAS tokens) are
// retried and the repo ends identical.
func TestXetCommitDevhub(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mode    XetMode
		faults  []hubtest.FaultRule
		wantXet bool
	}{
		{name: "auto uses xet", mode: XetAuto, wantXet: true},
		{name: "off uses LFS", mode: XetOff, wantXet: false},
		{name: "xorb 503", mode: XetOn, wantXet: true, faults: []hubtest.FaultRule{{Op: hubtest.OpXorbPut, Kind: hubtest.FaultStatus, Status: 503}}},
		{name: "shard 500", mode: XetOn, wantXet: true, faults: []hubtest.FaultRule{{Op: hubtest.OpShardPut, Kind: hubtest.FaultStatus}}},
		{name: "xorb reset", mode: XetOn, wantXet: true, faults: []hubtest.FaultRule{{Op: hubtest.OpXorbPut, Kind: hubtest.FaultReset, AfterBytes: 1000}}},
		{name: "expired CAS token", mode: XetOn, wantXet: true, faults: []hubtest.FaultRule{{Kind: hubtest.FaultExpireURLs}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newHubServer(t, func(o *hubtest.Options) { o.Xet = true })
			c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Xet = tc.mode; o.XetCacheDir = t.TempDir() })
			ctx := context.Background()
			repo := "w/xet"
			newRepo(t, c, repo)
			dir := t.TempDir()
			files := standardFiles(t, dir, 3)
			for _, r := range tc.faults {
				s.InjectFault(r)
			}
			if _, err := c.Commit(ctx, repo, uploadFilesOf(dir, files), CommitOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := s.PendingFaults(); n != 0 {
				t.Errorf("%d fault rules never fired", n)
			}
			checkRepo(t, c, repo, "main", files)
			st := s.Stats()
			if got := st.Xet.ShardsStored > 0; got != tc.wantXet {
				t.Errorf("used xet %v, want %v (stats %+v)", got, tc.wantXet, st.Xet)
			}
			if st.TokenLeaks != 0 {
				t.Errorf("token leaks %d", st.TokenLeaks)
			}
		})
	}
}

// TestXetCommitDevhubOnRefused: --xet on against a Hub without Xet fails clearly.
func TestXetCommitDevhubOnRefused(t *testing.T) {
	t.Parallel()
	s := newHubServer(t, nil)
	c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Xet = XetOn })
	repo := "w/noxet"
	newRepo(t, c, repo)
	dir := t.TempDir()
	files := standardFiles(t, dir, 4)
	_, err := c.Commit(context.Background(), repo, uploadFilesOf(dir, files), CommitOptions{})
	if err == nil || !errors.Is(err, ErrXetNotOffered) {
		t.Fatalf("error %v, want ErrXetNotOffered", err)
	}

}
