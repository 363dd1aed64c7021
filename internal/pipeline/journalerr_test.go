package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/hubsync/hubsync/internal/journal"
)

// TestDaemonNewerRecordKeepsStaging: a journal record the daemon cannot read (here one written by a newer
// hubsync) is never taken for "no such job": the job's pinned staging directory is kept, and the daemon says
// what is wrong instead of deleting it.
func TestDaemonNewerRecordKeepsStaging(t *testing.T) {
	s := newTestHub(t)
	outputs := filepath.Join(t.TempDir(), "outputs")
	writeCheckpoint(t, outputs, 10, nil)
	cfg := testConfig(t, s.URL(), nil, outputs)
	env := openTestEnv(t, cfg, testToken)
	defer env.Close()
	ctx := context.Background()
	staging := filepath.Join(cfg.StagingFor(cfg.Watch[0]), "checkpoint-10")
	pinned := filepath.Join(staging, "checkpoint-10", "adapter_config.json")
	if err := os.MkdirAll(filepath.Dir(pinned), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pinned, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := &journal.Job{WatchDir: cfg.Watch[0].Dir, Step: 10, Dir: filepath.Join(outputs, "checkpoint-10"), StagingDir: staging}
	job.SetStage(journal.Pinned, env.now())
	if err := env.Journal.Put(ctx, job); err != nil {
		t.Fatal(err)
	}
	err := env.Journal.DB().Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(journal.Bucket))
		var k, v []byte
		_ = b.ForEach(func(kk, vv []byte) error { k, v = append([]byte(nil), kk...), append([]byte(nil), vv...); return nil })
		return b.Put(k, bytes.Replace(v, []byte(`"v":1`), []byte(`"v":99`), 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDaemon(cfg, *env, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = d.Run(rctx)
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("Run: %v; want an error naming the record's version", err)
	}
	if _, serr := os.Stat(pinned); serr != nil {
		t.Errorf("the pinned staging of the unreadable job was deleted: %v", serr)
	}
}
