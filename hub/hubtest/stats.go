package hubtest

import (
	"maps"
	"strconv"
	"sync"
)

// Stats are the server's counters since it started (GET /_devhub/stats returns the same JSON).
type Stats struct {
	// BytesReceived is the total of request body bytes received by storage (basic and part PUTs) and by
	// multipart completions, including attempts that failed or were cut.
	BytesReceived int64 `json:"bytes_received"`
	// Objects maps an LFS oid to the storage bytes received for it, over all attempts.
	Objects map[string]int64 `json:"objects"`
	// Parts maps "oid/partNumber" to the number of part PUTs that reached the server for that part
	// (across upload ids), including failed ones.
	Parts map[string]int64 `json:"parts"`
	// PartsStored maps "oid/partNumber" to the number of part PUTs that stored the part.
	PartsStored map[string]int64 `json:"parts_stored"`
	// Requests counts requests per operation.
	Requests map[Op]int64 `json:"requests"`
	// Statuses counts answers per operation and status, keyed "op status" (status 0: the connection was cut
	// without an answer).
	Statuses map[string]int64 `json:"statuses"`
	// Commits is the number of commits created through the commit endpoint.
	Commits int64 `json:"commits"`
	// UploadsStarted is the number of multipart uploads (upload ids) handed out.
	UploadsStarted int64 `json:"uploads_started"`
	// ObjectsStored is the number of LFS objects stored (a re-upload of a stored object counts again).
	ObjectsStored int64 `json:"objects_stored"`
	// TokenLeaks counts requests to storage, completion or signed xorb URLs that carried an Authorization
	// header, and requests that sent a Hub token to the Xet CAS.
	TokenLeaks int64 `json:"token_leaks"`
	// Xet counts the Xet CAS's work (Options.Xet).
	Xet XetStats `json:"xet"`
	// Faults counts injected faults by name ("part-5xx", "rule:storage_part:status", ...).
	Faults map[string]int64 `json:"faults"`
}

// XetStats are the Xet CAS's counters.
type XetStats struct {
	// TokensIssued counts CAS tokens handed out (token routes and batch answers).
	TokensIssued int64 `json:"tokens_issued"`
	// BytesReceived is the total of xorb and shard request body bytes, including refused and cut attempts.
	BytesReceived int64 `json:"bytes_received"`
	// XorbsReceived counts xorb uploads that were valid (stored or already present).
	XorbsReceived int64 `json:"xorbs_received"`
	// XorbsStored counts xorbs newly stored (was_inserted true).
	XorbsStored int64 `json:"xorbs_stored"`
	// ChunksStored is the number of chunks in the stored xorbs.
	ChunksStored int64 `json:"chunks_stored"`
	// ShardsStored counts accepted shards.
	ShardsStored int64 `json:"shards_stored"`
	// FilesStored counts files registered by shards (each becomes an LFS object).
	FilesStored int64 `json:"files_stored"`
	// ChunksDeduplicated counts the chunks of registered files that live in xorbs stored before the shard's
	// own xorbs (deduplicated across uploads); BytesDeduplicated is their unpacked size.
	ChunksDeduplicated int64 `json:"chunks_deduplicated"`
	BytesDeduplicated  int64 `json:"bytes_deduplicated"`
	// DedupQueries counts global-dedup chunk queries; DedupHits those answered with a shard.
	DedupQueries int64 `json:"dedup_queries"`
	DedupHits    int64 `json:"dedup_hits"`
	// Reconstructions counts reconstruction answers.
	Reconstructions int64 `json:"reconstructions"`
	// Rejected counts refused uploads (malformed, hash mismatch, missing xorb) by reason.
	Rejected map[string]int64 `json:"rejected"`
}

// counters is the mutable, locked form of Stats.
type counters struct {
	mu sync.Mutex
	s  Stats
}

func newCounters() *counters {
	return &counters{s: Stats{
		Objects:     map[string]int64{},
		Parts:       map[string]int64{},
		PartsStored: map[string]int64{},
		Requests:    map[Op]int64{},
		Statuses:    map[string]int64{},
		Faults:      map[string]int64{},
		Xet:         XetStats{Rejected: map[string]int64{}},
	}}
}

func (c *counters) update(f func(*Stats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *counters) received(oid string, n int64) {
	if n == 0 {
		return
	}
	c.update(func(s *Stats) {
		s.BytesReceived += n
		if oid != "" {
			s.Objects[oid] += n
		}
	})
}

func (c *counters) fault(name string) { c.update(func(s *Stats) { s.Faults[name]++ }) }

func (c *counters) status(op Op, code int) {
	c.update(func(s *Stats) { s.Statuses[string(op)+" "+strconv.Itoa(code)]++ })
}

func partKey(oid string, n int) string { return oid + "/" + strconv.Itoa(n) }

// snapshot returns a deep copy.
func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Objects = maps.Clone(c.s.Objects)
	s.Parts = maps.Clone(c.s.Parts)
	s.PartsStored = maps.Clone(c.s.PartsStored)
	s.Requests = maps.Clone(c.s.Requests)
	s.Statuses = maps.Clone(c.s.Statuses)
	s.Faults = maps.Clone(c.s.Faults)
	s.Xet.Rejected = maps.Clone(c.s.Xet.Rejected)
	return s
}
