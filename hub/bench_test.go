package hub

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubsync/hubsync/hub/hubtest"
)

// benchSize is the object size BenchmarkUpload sends (256 MiB).
const benchSize = 256 << 20

// BenchmarkUpload uploads a 256 MiB generated file to an in-process hubtest server, once through the client's
// parallel multipart path (8 MiB parts, 8 in flight) and once as a plain single-stream PUT of the same bytes to
// the same server (a repo whose multipart threshold is above the size, so the Hub hands out a basic transfer),
// and reports both rates and their ratio. The sha256 is passed in, as the merge writer does, so hashing is not
// timed; each iteration changes the first bytes so the Hub never already has the object.
func BenchmarkUpload(b *testing.B) {
	if testing.Short() {
		b.Skip("uploads 256 MiB per iteration")
	}
	s := newHubServer(b, func(o *hubtest.Options) {
		o.MinPartSize = 5 << 20
		o.ChunkSize = 8 << 20
		o.MultipartThreshold = 16 << 20
	})
	c, err := New(Options{Endpoint: s.URL(), Token: wTok, ParallelParts: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if _, _, err := c.CreateRepo(ctx, "w/multi", CreateRepoOptions{}); err != nil {
		b.Fatal(err)
	}
	// The baseline repo: multipart threshold above the object size → one basic PUT.
	body, _ := json.Marshal(map[string]any{"name": "single", "organization": "w", "type": "model", "lfsmultipartthresh": int64(benchSize) * 2})
	if _, err := c.send(ctx, call{method: "POST", url: c.apiURL("/api/repos/create"), auth: true, body: jsonBody(body),
		headers: map[string]string{"Content-Type": "application/json"}}); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "model.safetensors")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, io.LimitReader(newPRNGReader(1), benchSize)); err != nil {
		b.Fatal(err)
	}
	f.Close()

	// next rewrites the first 8 bytes with a fresh counter and returns the file's digest and sample.
	counter := uint64(0)
	next := func() UploadFile {
		counter++
		fh, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer fh.Close()
		var head [8]byte
		binary.LittleEndian.PutUint64(head[:], counter)
		if _, err := fh.WriteAt(head[:], 0); err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
			b.Fatal(err)
		}
		sample := make([]byte, 512)
		fh.ReadAt(sample, 0)
		return UploadFile{PathInRepo: "model.safetensors", LocalPath: path, SHA256: hex.EncodeToString(h.Sum(nil)), Size: benchSize, Sample: sample}
	}

	var multi, single time.Duration
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		uf := next()
		b.StartTimer()
		start := time.Now()
		if _, err := c.Commit(ctx, "w/multi", []UploadFile{uf}, CommitOptions{}); err != nil {
			b.Fatal(err)
		}
		multi += time.Since(start)
		b.StopTimer()
		uf = next()
		start = time.Now()
		if _, err := c.Commit(ctx, "w/single", []UploadFile{uf}, CommitOptions{}); err != nil {
			b.Fatal(err)
		}
		single += time.Since(start)
		b.StartTimer()
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(benchSize) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(multi), "MB/s")
	b.ReportMetric(mbps(single), "single-PUT-MB/s")
	b.ReportMetric(mbps(multi)/mbps(single), "ratio")
	if st := s.Stats(); st.TokenLeaks != 0 {
		b.Fatalf("token leaks %d", st.TokenLeaks)
	}
}

// prngReader is a fast deterministic byte stream (xorshift) for generating big test files.
type prngReader struct{ x uint64 }

func newPRNGReader(seed uint64) *prngReader { return &prngReader{x: seed*0x9e3779b97f4a7c15 + 1} }

func (r *prngReader) Read(p []byte) (int, error) {
	n := len(p) &^ 7
	for i := 0; i < n; i += 8 {
		r.x ^= r.x << 13
		r.x ^= r.x >> 7
		r.x ^= r.x << 17
		binary.LittleEndian.PutUint64(p[i:], r.x)
	}
	if n == 0 && len(p) > 0 {
		p[0] = byte(r.x)
		return 1, nil
	}
	return n, nil
}
