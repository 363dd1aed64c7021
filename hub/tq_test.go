package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAdapterSelection: the adapter follows the batch answer's "transfer" and the object's actions; a transfer
// the client did not offer is refused clearly.
func TestAdapterSelection(t *testing.T) {
	t.Parallel()
	multipartActions := `"actions":{"upload":{"href":"https://s/complete","header":{"chunk_size":"5","1":"https://s/1"}}}`
	basicActions := `"actions":{"upload":{"href":"https://s/put"}}`
	tests := []struct {
		name     string
		transfer string
		actions  string
		want     string // adapter name, or "error: <substring>"
	}{
		{"basic answer, basic object", "basic", basicActions, "basic"},
		{"no transfer field means basic", "", basicActions, "basic"},
		{"multipart answer, multipart object", "multipart", multipartActions, "multipart"},
		{"basic answer naming chunk_size: multipart", "basic", multipartActions, "multipart"},
		{"multipart answer, single-PUT object: basic", "multipart", basicActions, "basic"},
		{"already stored", "multipart", `"actions":null`, "none"},
		{"xet not offered", "xet", basicActions, "error: did not offer"},
		{"unknown transfer", "tus", basicActions, "error: \"tus\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req batchRequest
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					t.Error(err)
				}
				if got := strings.Join(req.Transfers, ","); got != "basic,multipart" {
					t.Errorf("offered %q, want basic,multipart", got)
				}
				fmt.Fprintf(w, `{"transfer":%q,"objects":[{"oid":%q,"size":5,%s}]}`, tc.transfer, testOID, tc.actions)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, "", nil)
			plans, err := c.batchUpload(context.Background(), "o/r", "main", false, []batchItem{{OID: testOID, Size: 5}})
			got := ""
			switch {
			case err != nil:
				got = "error: " + err.Error()
			case plans[testOID].kind == transferNone:
				got = "none"
			default:
				a, aerr := c.adapterFor(plans[testOID])
				if aerr != nil {
					got = "error: " + aerr.Error()
				} else {
					got = a.name()
				}
			}
			if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
				if !strings.HasPrefix(got, "error: ") || !strings.Contains(got, want) {
					t.Errorf("got %q, want an error containing %q", got, want)
				}
			} else if got != tc.want {
				t.Errorf("adapter %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAdapterForUnregistered: a plan whose kind has no registered adapter is an error naming what was offered.
func TestAdapterForUnregistered(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "http://hub.test", "", nil)
	for _, k := range []transferKind{transferBasic, transferMultipart} {
		if a, err := c.adapterFor(&uploadPlan{kind: k}); err != nil || a.name() != k.String() {
			t.Errorf("%v: adapter %v, %v", k, a, err)
		}
	}
	if _, err := c.adapterFor(&uploadPlan{kind: transferXet}); err == nil || !strings.Contains(err.Error(), "basic, multipart") {
		t.Errorf("xet without the xet adapter: %v", err)
	}
}

// TestErrorKinds: the exported kinds classify answers by status and by which server gave them, so callers need
// neither status codes nor URLs.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	kinds := []error{ErrAuth, ErrServer, ErrRejected, ErrStorage, ErrNotFound, ErrRateLimited}
	tests := []struct {
		status int
		origin Origin
		want   []error
	}{
		{400, OriginHub, []error{ErrRejected}},
		{422, OriginUnknown, []error{ErrRejected}},
		{413, OriginHub, []error{ErrRejected}},
		{400, OriginStorage, []error{ErrStorage}},
		{401, OriginHub, []error{ErrAuth}},
		{403, OriginHub, []error{ErrAuth}},
		{403, OriginStorage, []error{ErrStorage}},
		{404, OriginHub, []error{ErrNotFound}},
		{404, OriginStorage, []error{ErrNotFound, ErrStorage}},
		{429, OriginHub, []error{ErrRateLimited}},
		{500, OriginHub, []error{ErrServer}},
		{503, OriginStorage, []error{ErrServer, ErrStorage}},
		{409, OriginHub, nil},
	}
	for _, tc := range tests {
		err := fmt.Errorf("wrapped: %w", &HTTPError{Status: tc.status, Origin: tc.origin})
		for _, k := range kinds {
			want := false
			for _, w := range tc.want {
				want = want || w == k
			}
			if got := errors.Is(err, k); got != want {
				t.Errorf("%d from origin %d: errors.Is(%q) = %v, want %v", tc.status, tc.origin, k, got, want)
			}
		}
	}
}

// TestErrorOriginRecorded: the client records whether the Hub or another host answered.
func TestErrorOriginRecorded(t *testing.T) {
	t.Parallel()
	h := func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad", http.StatusBadRequest) }
	hubSrv := httptest.NewServer(http.HandlerFunc(h))
	defer hubSrv.Close()
	storage := httptest.NewServer(http.HandlerFunc(h))
	defer storage.Close()
	c := newTestClient(t, hubSrv.URL, "", nil)
	ctx := context.Background()
	_, err := c.send(ctx, call{method: "GET", url: hubSrv.URL + "/api/x"})
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrStorage) {
		t.Errorf("hub 400: %v (rejected %v)", err, errors.Is(err, ErrRejected))
	}
	_, err = c.send(ctx, call{method: "PUT", url: storage.URL + "/obj"})
	if errors.Is(err, ErrRejected) || !errors.Is(err, ErrStorage) {
		t.Errorf("storage 400: %v", err)
	}
}

// TestProgressMeterConcurrent: counting from many goroutines never runs the callback concurrently, and the
// last value of every file is delivered.
func TestProgressMeterConcurrent(t *testing.T) {
	t.Parallel()
	var inCallback atomic.Int32
	var mu sync.Mutex
	last := map[string]int64{}
	events := 0
	sink := newProgressSink(func(ev ProgressEvent) {
		if inCallback.Add(1) != 1 {
			t.Error("callback ran concurrently")
		}
		mu.Lock()
		last[ev.File] = ev.Done
		events++
		mu.Unlock()
		inCallback.Add(-1)
	})
	const files, workers, adds = 3, 8, 2000
	var wg sync.WaitGroup
	for f := range files {
		p := sink.file(PhaseUploading, fmt.Sprint("f", f), workers*adds)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range adds {
					p.add(1)
				}
			}()
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for f := range files {
		if got := last[fmt.Sprint("f", f)]; got != workers*adds {
			t.Errorf("file f%d: last delivered %d, want %d", f, got, workers*adds)
		}
	}
	if events == 0 || events > files*workers*adds {
		t.Errorf("%d events", events)
	}
}

// TestProgressMeterNoCallback: without a callback nothing is registered or delivered.
func TestProgressMeterNoCallback(t *testing.T) {
	t.Parallel()
	sink := newProgressSink(nil)
	p := sink.file(PhaseHashing, "x", 10)
	p.add(10)
	sink.emit(ProgressEvent{Phase: PhaseCommitting})
	if p.done.Load() != 10 || len(sink.files) != 0 {
		t.Errorf("done %d, registered %d", p.done.Load(), len(sink.files))
	}
}
