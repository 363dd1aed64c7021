package hub

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestBoltJournalRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "uploads.db")
	j, err := OpenBoltJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := j.Get(ctx, "k"); rec != nil || err != nil {
		t.Fatalf("empty journal: %v %v", rec, err)
	}
	rec := &UploadRecord{Key: "k", Repo: "a/b", OID: testOID, Size: 12, CompletionURL: "https://h/c?sig=1", ChunkSize: 5,
		PartURLs: []string{"https://s/1", "https://s/2", "https://s/3"}, ObtainedAt: time.Unix(100, 0).UTC(),
		ExpiresAt: time.Unix(5000, 0).UTC(), Verify: &Action{Href: "https://h/v"}}
	if err := j.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := j.PutPart(ctx, "k", 3, `"etag3"`); err != nil {
		t.Fatal(err)
	}
	if err := j.PutPart(ctx, "k", 1, `"etag1"`); err != nil {
		t.Fatal(err)
	}
	if err := j.PutPart(ctx, "missing", 1, "x"); err == nil {
		t.Error("PutPart on a missing record succeeded")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// A new process opens the file and finds the record and both parts.
	j2, err := OpenBoltJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	got, err := j2.Get(ctx, "k")
	if err != nil || got == nil {
		t.Fatalf("%v %v", got, err)
	}
	if !reflect.DeepEqual(got.ETags, map[int]string{1: `"etag1"`, 3: `"etag3"`}) {
		t.Errorf("etags %v", got.ETags)
	}
	got.ETags = nil
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("record\n got %+v\nwant %+v", got, rec)
	}
	// Put replaces the record and forgets its parts.
	if err := j2.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, _ := j2.Get(ctx, "k"); len(got.ETags) != 0 {
		t.Errorf("parts survived Put: %v", got.ETags)
	}
	keys, _ := j2.Keys(ctx)
	if !reflect.DeepEqual(keys, []string{"k"}) {
		t.Errorf("keys %v", keys)
	}
	if err := j2.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := j2.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got, _ := j2.Get(ctx, "k"); got != nil {
		t.Errorf("record survived Delete")
	}
}

func TestNewBoltJournalSharesDB(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "daemon.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j, err := NewBoltJournal(db, "uploads")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Put(context.Background(), &UploadRecord{Key: "x", OID: testOID}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// The daemon's DB stays open and usable.
	if err := db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("uploads")).Bucket([]byte("x")) == nil {
			t.Error("record not in the shared bucket")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewBoltJournal(db, ""); err == nil {
		t.Error("empty bucket name accepted")
	}
}

func TestUploadRecordUsable(t *testing.T) {
	now := time.Unix(1000, 0)
	base := UploadRecord{OID: testOID, Size: 12, ChunkSize: 5, CompletionURL: "https://h/c", PartURLs: []string{"a", "b", "c"}}
	tests := []struct {
		name string
		mod  func(*UploadRecord)
		want bool
	}{
		{"ok, no expiry", func(*UploadRecord) {}, true},
		{"ok, far expiry", func(r *UploadRecord) { r.ExpiresAt = now.Add(time.Hour) }, true},
		{"expiring within the margin", func(r *UploadRecord) { r.ExpiresAt = now.Add(time.Minute) }, false},
		{"expired", func(r *UploadRecord) { r.ExpiresAt = now.Add(-time.Second) }, false},
		{"other size", func(r *UploadRecord) { r.Size = 13 }, false},
		{"part count mismatch", func(r *UploadRecord) { r.PartURLs = r.PartURLs[:2] }, false},
		{"no completion", func(r *UploadRecord) { r.CompletionURL = "" }, false},
	}
	for _, tc := range tests {
		r := base
		tc.mod(&r)
		if got := r.usable(testOID, 12, now); got != tc.want {
			t.Errorf("%s: usable = %v", tc.name, got)
		}
	}
	var nilRec *UploadRecord
	if nilRec.usable(testOID, 12, now) {
		t.Error("nil record usable")
	}
}
