package hubtest

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkPartPut measures part PUTs over loopback HTTP (MD5 + a file write per part).
func BenchmarkPartPut(b *testing.B) {
	opts := testOptions()
	opts.MinPartSize = 1 << 20
	e := newEnv(b, opts)
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(1, 8<<20)
	_, _, hdr := e.multipartFixture(data)
	part := data[:1<<20]
	b.SetBytes(int64(len(part)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.do("PUT", hdr[fmt.Sprintf("%05d", i%8+1)], "", bytes.NewReader(part)); r.StatusCode != 200 {
			b.Fatal(r.StatusCode)
		}
	}
}

// BenchmarkComplete measures a completion: checks, streamed reassembly of 8 parts and the sha256 check.
func BenchmarkComplete(b *testing.B) {
	opts := testOptions()
	opts.MinPartSize = 1 << 20
	e := newEnv(b, opts)
	e.createRepo(aliceTok, "alice", "m", false)
	data := randomBytes(2, 8<<20)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		data[0] = byte(i) // a new object each time
		data[1] = byte(i >> 8)
		oid, href, hdr := e.multipartFixture(data)
		parts := e.putParts(data, hdr)
		b.StartTimer()
		if r := e.do("POST", href, "", completeBody(oid, parts), "Content-Type", lfsMediaType); r.StatusCode != 200 {
			b.Fatal(r.StatusCode, string(r.body))
		}
	}
}

// BenchmarkCommit measures small commits (one regular file) on a repository with 200 files.
func BenchmarkCommit(b *testing.B) {
	e := newEnv(b, testOptions())
	e.createRepo(aliceTok, "alice", "m", false)
	lines := []any{header("seed", "")}
	for i := range 200 {
		lines = append(lines, fileLine(fmt.Sprintf("dir%d/f%d.txt", i%10, i), []byte{byte(i)}))
	}
	e.commitLines(aliceTok, "alice/m", "main", "", lines...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := e.commitLines(aliceTok, "alice/m", "main", "", header(fmt.Sprint(i), ""), fileLine("x.txt", []byte(fmt.Sprint(i)))); r.StatusCode != 200 {
			b.Fatal(r.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
