package e2e

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge"
)

// suite is what every test shares: the binary and the base model, made once by TestMain.
type suite struct {
	// bin is the hubsync binary under test.
	bin string
	// baseDir is the 4-bit base model every checkpoint belongs to; base describes it.
	baseDir string
	base    *testmodel.BaseInfo
	// work holds the shared files (base, reference checkpoints and merges).
	work string

	mu       sync.Mutex
	expected map[int]*expectedOnce // by step
}

// expectedOnce makes one step's expected checkpoint once; tests wanting other steps do not wait for it.
type expectedOnce struct {
	once sync.Once
	e    *expectedCheckpoint
	err  error
}

// shared is set once by TestMain (the test binary's main) and read by the tests.
var shared *suite

// Shapes and settings shared by the tests.
const (
	// maxShard splits the merged model into 4 shards (~1.9 MB each), each a multipart upload of ~30 parts.
	maxShard = "2MB"
	// maxShardBytes is maxShard in bytes.
	maxShardBytes = 2_000_000
	// settle is the watch settle period: the trainer's chunked writes pause for far less than this.
	settle = "400ms"
	// repoOwner is the namespace the test token owns.
	repoOwner = "e2e"
)

// baseSpec is the tests' base: Llama-shaped, stored bitsandbytes NF4 with double quantization, large enough
// that the merged model (7 MB in bf16) takes a few hundred milliseconds to merge and ~120 parts to upload.
func baseSpec() testmodel.BaseSpec {
	return testmodel.BaseSpec{
		Arch: testmodel.ArchLlama, Hidden: 256, Intermediate: 688, Layers: 4, Heads: 4, KVHeads: 2, Vocab: 1000,
		DType: tensor.BF16, Quant: testmodel.QuantNF4, DoubleQuant: true, Blocksize: 64, Seed: 99,
	}
}

// adapterSpec is the LoRA every checkpoint holds (its seed is offset by the step, so checkpoints differ).
func adapterSpec() testmodel.AdapterSpec {
	return testmodel.AdapterSpec{R: 8, Alpha: 16, TargetModules: testmodel.AllLinear(), Seed: 5}
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	work, err := os.MkdirTemp("", "hubsync-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(work)
	s := &suite{work: work, expected: map[int]*expectedOnce{}}
	start := time.Now()
	if s.bin = os.Getenv("HUBSYNC_E2E_BIN"); s.bin == "" {
		s.bin = filepath.Join(work, "bin", "hubsync")
		args := []string{"build"}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "-o", s.bin, "github.com/hubsync/hubsync/cmd/hubsync")
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go %v: %v\n", args, err)
			return 1
		}
	}
	built := time.Since(start)
	s.baseDir = filepath.Join(work, "base")
	if s.base, err = testmodel.GenerateBase(context.Background(), s.baseDir, baseSpec()); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: generating the base:", err)
		return 1
	}
	fmt.Printf("e2e: binary %s (built in %s, race=%v), base generated in %s\n", s.bin, built.Round(time.Millisecond),
		raceEnabled, (time.Since(start) - built).Round(time.Millisecond))
	shared = s
	return m.Run()
}

// expectedCheckpoint is what publishing checkpoint-<Step> must put on the Hub: the files of a local merge of
// the same checkpoint.
type expectedCheckpoint struct {
	Step int
	// Dir is the local merge's output directory.
	Dir string
	// Files maps the path in the repo to the file's digest (size, sha256) as the merge wrote it.
	Files map[string]export.FileDigest
	// Card is what the local merge's model card was rendered from (it names no repo).
	Card export.CardInfo
	// readme, when set, is README.md's expected content (the card naming the repo it is published in).
	readme []byte
}

// read returns the expected content of the regular file p.
func (e *expectedCheckpoint) read(p string) ([]byte, error) {
	if p == "README.md" && e.readme != nil {
		return e.readme, nil
	}
	return os.ReadFile(filepath.Join(e.Dir, filepath.FromSlash(p)))
}

// expectedIn is the expected publication of checkpoint step in repo: the local merge's files, with the model
// card rendered (by the same export.ModelCard) for that repo, whose id its title and loading snippet name.
func (s *suite) expectedIn(t testing.TB, step int, repo string) *expectedCheckpoint {
	t.Helper()
	e := *s.expectedFor(t, step)
	ci := e.Card
	ci.RepoID = repo
	e.readme = export.ModelCard(ci)
	e.Files = make(map[string]export.FileDigest, len(e.Files))
	for p, f := range s.expectedFor(t, step).Files {
		e.Files[p] = f
	}
	e.Files["README.md"] = export.FileDigest{Path: "README.md", Size: int64(len(e.readme)), SHA256: sha256.Sum256(e.readme)}
	return &e
}

// expectedFor returns the expected publication of checkpoint step (deterministic: the trainer's checkpoints
// depend only on the adapter spec and the step). The first call writes a reference checkpoint and merges it.
func (s *suite) expectedFor(t testing.TB, step int) *expectedCheckpoint {
	t.Helper()
	s.mu.Lock()
	eo := s.expected[step]
	if eo == nil {
		eo = &expectedOnce{}
		s.expected[step] = eo
	}
	s.mu.Unlock()
	eo.once.Do(func() { eo.e, eo.err = s.makeExpected(step) })
	if eo.err != nil {
		t.Fatal(eo.err)
	}
	return eo.e
}

// makeExpected writes the reference checkpoint of step and merges it.
func (s *suite) makeExpected(step int) (*expectedCheckpoint, error) {
	ctx := context.Background()
	ref := filepath.Join(s.work, "reference", strconv.Itoa(step))
	ckpt, err := testmodel.WriteCheckpoint(ctx, filepath.Join(ref, "outputs"), step, adapterSpec(),
		testmodel.CheckpointOptions{Base: s.base})
	if err != nil {
		return nil, fmt.Errorf("reference checkpoint %d: %w", step, err)
	}
	res, err := merge.Run(ctx, merge.Options{Base: s.baseDir, Adapter: ckpt, Out: filepath.Join(ref, "merged"),
		MaxShardSize: maxShardBytes, Device: "cpu"})
	if err != nil {
		return nil, fmt.Errorf("reference merge of checkpoint %d: %w", step, err)
	}
	e := &expectedCheckpoint{Step: step, Dir: res.Dir, Files: map[string]export.FileDigest{}, Card: res.Card}
	for _, f := range res.Files {
		e.Files[f.Path] = f
	}
	if res.Shards < 2 {
		return nil, fmt.Errorf("the reference merge has %d shard(s); the tests want several (multipart, index)", res.Shards)
	}
	return e, nil
}

// sameCheckpoint reports whether the checkpoint directory dir holds exactly what the reference checkpoint of
// step holds (the trainer simulation is deterministic; this guards the expected merges against a change).
func (s *suite) sameCheckpoint(t testing.TB, dir string, step int) {
	t.Helper()
	ref := filepath.Join(s.work, "reference", strconv.Itoa(step), "outputs", "checkpoint-"+strconv.Itoa(step))
	for _, name := range []string{"adapter_model.safetensors", "adapter_config.json"} {
		a, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(ref, name))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(a) != sha256.Sum256(b) {
			t.Fatalf("%s differs from the reference checkpoint's: the trainer simulation is not deterministic", filepath.Join(dir, name))
		}
	}
}
