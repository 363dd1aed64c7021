package hubtest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
)

// Op names one kind of request the server handles. Stats count requests per Op and fault rules select by Op.
type Op string

// The operations.
const (
	OpWhoami         Op = "whoami"
	OpCreateRepo     Op = "repo_create"
	OpDeleteRepo     Op = "repo_delete"
	OpBranch         Op = "branch"
	OpTag            Op = "tag"
	OpRefs           Op = "refs"
	OpPreupload      Op = "preupload"
	OpBatch          Op = "lfs_batch"
	OpVerify         Op = "lfs_verify"
	OpBasicPut       Op = "storage_put"
	OpPartPut        Op = "storage_part"
	OpStorageGet     Op = "storage_get"
	OpComplete       Op = "complete_multipart"
	OpCommit         Op = "commit"
	OpResolve        Op = "resolve"
	OpTree           Op = "tree"
	OpPathsInfo      Op = "paths_info"
	OpRepoInfo       Op = "repo_info"
	OpCommits        Op = "commits"
	OpStats          Op = "stats"
	OpValidateYAML   Op = "validate_yaml"
	OpList           Op = "list"
	OpSettings       Op = "settings"
	OpMoveRepo       Op = "repo_move"
	OpSuperSquash    Op = "super_squash"
	OpDiscussion     Op = "discussion"
	OpXetToken       Op = "xet_token"
	OpXorbPut        Op = "xet_xorb"
	OpShardPut       Op = "xet_shard"
	OpXetChunk       Op = "xet_chunk"
	OpXetReconstruct Op = "xet_reconstruction"
	OpXetGet         Op = "xet_get"
	OpUnknown        Op = "unknown"
)

// FaultKind says what an injected fault does.
type FaultKind int

// The fault kinds.
const (
	// FaultStatus answers Status (default 500) without doing the work; a request body is read first.
	FaultStatus FaultKind = iota
	// FaultReset reads AfterBytes bytes of the request body, then cuts the connection (TCP reset).
	FaultReset
	// FaultLoseResponse does the work, then loses the answer: Status (e.g. 504) if set, else a cut connection.
	FaultLoseResponse
	// FaultRateLimit answers 429 with Retry-After: 1 and a RateLimit header with r=0.
	FaultRateLimit
	// FaultBatchError makes the LFS batch answer carry a per-object error (code Status, default 422)
	// for OID (or every object when OID is empty).
	FaultBatchError
	// FaultExpireURLs expires every signed URL and CAS token issued so far; InjectFault applies it at once.
	FaultExpireURLs
)

// String names the kind as it appears in Stats.
func (k FaultKind) String() string {
	switch k {
	case FaultStatus:
		return "status"
	case FaultReset:
		return "reset"
	case FaultLoseResponse:
		return "lose-response"
	case FaultRateLimit:
		return "rate-limit"
	case FaultBatchError:
		return "batch-error"
	case FaultExpireURLs:
		return "expire-urls"
	}
	return "kind" + strconv.Itoa(int(k))
}

// FaultRule is a deterministic fault for tests: it fires on the next Count requests matching Op (and OID
// and Part when set), then it is spent.
type FaultRule struct {
	Op   Op
	Kind FaultKind
	// Count is how many matching requests the rule fires on (0 means 1).
	Count int
	// Status: the answer's status for FaultStatus (default 500) and FaultLoseResponse (0 = cut connection),
	// or the per-object error code for FaultBatchError (default 422).
	Status int
	// OID restricts the rule to one object (storage PUTs, completion, batch, commit of any file).
	OID string
	// Part restricts a part PUT rule to one part number.
	Part int
	// AfterBytes is how much of the body FaultReset reads before it cuts the connection.
	AfterBytes int64
	// Message replaces the default error message.
	Message string
}

// Faults are probabilistic faults, each a probability in [0, 1] per matching request.
type Faults struct {
	PartError     float64 // part-5xx: a part PUT answers 500 or 503 without storing
	PartReset     float64 // part-reset: a part PUT reads some of the body, then cuts the connection
	PutError      float64 // put-5xx: a basic PUT answers 500 or 503 without storing
	RateLimit     float64 // rate-limit: an API request answers 429 with Retry-After: 1
	CommitLost    float64 // commit-lost: a commit is applied, then answered 504 or its connection is cut
	BatchError    float64 // batch-error: an object in an upload batch answer gets a per-object error
	CompleteError float64 // complete-5xx: a completion answers 500 without completing
	XetError      float64 // xet-5xx: a xorb or shard upload answers 500 or 503 without storing
	XorbReset     float64 // xorb-reset: a xorb upload reads some of the body, then cuts the connection
	Seed          uint64  // seed of the fault RNG (seed=N in the spec)
}

// faultNames maps the spec names to the field they set.
var faultNames = map[string]func(*Faults) *float64{
	"part-5xx":     func(f *Faults) *float64 { return &f.PartError },
	"part-reset":   func(f *Faults) *float64 { return &f.PartReset },
	"put-5xx":      func(f *Faults) *float64 { return &f.PutError },
	"rate-limit":   func(f *Faults) *float64 { return &f.RateLimit },
	"commit-lost":  func(f *Faults) *float64 { return &f.CommitLost },
	"batch-error":  func(f *Faults) *float64 { return &f.BatchError },
	"complete-5xx": func(f *Faults) *float64 { return &f.CompleteError },
	"xet-5xx":      func(f *Faults) *float64 { return &f.XetError },
	"xorb-reset":   func(f *Faults) *float64 { return &f.XorbReset },
}

// ParseFaults parses a comma-separated spec such as "part-5xx=0.1,part-reset=0.05,rate-limit=0.05,
// commit-lost=0.1,seed=7". Names: part-5xx, part-reset, put-5xx, rate-limit, commit-lost, batch-error,
// complete-5xx, xet-5xx, xorb-reset, seed. An empty spec means no faults.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		if !ok {
			return Faults{}, fmt.Errorf("faults %q: item %q: want NAME=VALUE", s, item)
		}
		name = strings.TrimSpace(name)
		val = strings.TrimSpace(val)
		if name == "seed" {
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return Faults{}, fmt.Errorf("faults %q: seed %q: %w", s, val, err)
			}
			f.Seed = n
			continue
		}
		field, ok := faultNames[name]
		if !ok {
			return Faults{}, fmt.Errorf("faults %q: unknown fault %q (known: part-5xx, part-reset, put-5xx, rate-limit, commit-lost, batch-error, complete-5xx, xet-5xx, xorb-reset, seed)", s, name)
		}
		p, err := strconv.ParseFloat(val, 64)
		if err != nil || !(p >= 0 && p <= 1) {
			return Faults{}, fmt.Errorf("faults %q: %s=%q: want a probability between 0 and 1", s, name, val)
		}
		*field(&f) = p
	}
	return f, nil
}

// String formats the faults in ParseFaults' syntax.
func (f Faults) String() string {
	var parts []string
	for _, name := range []string{"part-5xx", "part-reset", "put-5xx", "rate-limit", "commit-lost", "batch-error", "complete-5xx", "xet-5xx", "xorb-reset"} {
		if p := *faultNames[name](&f); p > 0 {
			parts = append(parts, name+"="+strconv.FormatFloat(p, 'g', -1, 64))
		}
	}
	if f.Seed != 0 {
		parts = append(parts, "seed="+strconv.FormatUint(f.Seed, 10))
	}
	return strings.Join(parts, ",")
}

// faultEngine holds the deterministic rules and the seeded RNG of the probabilistic faults.
type faultEngine struct {
	mu    sync.Mutex
	rules []FaultRule
	rng   *rand.Rand
	prob  Faults
}

func newFaultEngine(f Faults) *faultEngine {
	e := &faultEngine{}
	e.setProb(f)
	return e
}

func (e *faultEngine) add(r FaultRule) {
	if r.Count <= 0 {
		r.Count = 1
	}
	e.mu.Lock()
	e.rules = append(e.rules, r)
	e.mu.Unlock()
}

// take returns the first rule matching (op, oid, part) whose kind is one of kinds, spending one use of it.
func (e *faultEngine) take(op Op, oid string, part int, kinds ...FaultKind) (FaultRule, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.rules {
		r := &e.rules[i]
		if r.Op != op || (r.OID != "" && r.OID != oid) || (r.Part != 0 && r.Part != part) {
			continue
		}
		match := false
		for _, k := range kinds {
			match = match || r.Kind == k
		}
		if !match {
			continue
		}
		rule := *r
		r.Count--
		if r.Count == 0 {
			e.rules = append(e.rules[:i], e.rules[i+1:]...)
		}
		return rule, true
	}
	return FaultRule{}, false
}

// roll reports whether the probabilistic fault of that name (a ParseFaults name) fires.
func (e *faultEngine) roll(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := *faultNames[name](&e.prob)
	return p > 0 && e.rng.Float64() < p
}

func (e *faultEngine) setProb(f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.prob = f
	e.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
}

// intn draws from [0, n) with the fault RNG.
func (e *faultEngine) intn(n int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rng.IntN(n)
}

// pending returns the number of unspent rules.
func (e *faultEngine) pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rules)
}
