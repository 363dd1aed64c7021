package hub

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// TestXetStaleShardCache: the shard cache names xorbs a CAS at the same URL no longer holds (a devhub restarted
// on the same address without its data). The CAS refuses the shard built from the cache (missing xorb); the
// upload drops the cache, sends the file again deduplicating only against what the CAS holds, and succeeds
// with Xet required (--xet on), where it used to fail on every try until the cache was deleted by hand.
func TestXetStaleShardCache(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	casAddr := l.Addr().String()
	l.Close()
	cache := t.TempDir()
	content := xetRandom(51, 700<<10)
	dir := t.TempDir()
	file := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		s := newHubServer(t, func(o *hubtest.Options) { o.Xet, o.CASAddr = true, casAddr })
		c := newTestClient(t, s.URL(), wTok, func(o *Options) { o.Xet, o.XetCacheDir = XetOn, cache })
		newRepo(t, c, "w/stale")
		if _, err := c.Commit(context.Background(), "w/stale", []UploadFile{{PathInRepo: "model.safetensors", LocalPath: file}}, CommitOptions{}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		checkRepo(t, c, "w/stale", "main", map[string][]byte{"model.safetensors": content})
		st := s.Stats()
		if st.Xet.XorbsStored == 0 || st.Xet.ShardsStored != 1 {
			t.Errorf("run %d: %d xorbs, %d shards stored", run, st.Xet.XorbsStored, st.Xet.ShardsStored)
		}
		if run == 1 && st.Xet.Rejected["missing-xorb"] != 1 {
			t.Errorf("run %d: refusals %v, want one missing-xorb (the stale cache was used first)", run, st.Xet.Rejected)
		}
		c.CloseIdleConnections()
		s.Close()
	}
}
