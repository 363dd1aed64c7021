package watcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/safetensors"
)

// DefaultMarker is the file name a cooperating trainer writes into a checkpoint directory once it is complete.
const DefaultMarker = ".hubsync-complete"

// CheckpointPrefix is the name prefix of the checkpoint directories the watcher looks for: checkpoint-N, N being
// the integer step.
const CheckpointPrefix = "checkpoint-"

// Adapter file names PEFT writes.
const (
	adapterConfigFile      = "adapter_config.json"
	adapterSafetensorsFile = "adapter_model.safetensors"
	adapterBinFile         = "adapter_model.bin"
)

// ParseStep returns N for a directory named checkpoint-N (N a non-negative decimal integer). Any other name,
// tmp-checkpoint-N included, is not a checkpoint.
func ParseStep(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, CheckpointPrefix)
	if !ok || digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// CheckOptions configures Check.
type CheckOptions struct {
	// Marker is the completion marker's file name (default DefaultMarker).
	Marker string
}

// Completeness is what Check found in a checkpoint directory.
type Completeness struct {
	// Step is N of checkpoint-N.
	Step int64
	// Complete reports that the directory passes every content check (or holds the marker). Without the marker
	// the watcher also requires Files to stay unchanged for the settle period before it calls the checkpoint
	// complete; Check cannot know that from one look.
	Complete bool
	// ByMarker reports that the completion marker is present (the content checks were then skipped).
	ByMarker bool
	// Reason says why the directory is not complete ("" when Complete): every problem found, joined by "; ".
	Reason string
	// Files is the directory's content (recursively), taken before the checks and confirmed unchanged after
	// them. Pin verifies the pinned files against it.
	Files []FileInfo
	// Weights lists the weight files whose safetensors header was validated (relative paths, sorted).
	Weights []string
	// Adapter reports that the checkpoint holds a PEFT adapter (adapter_model.safetensors or .bin).
	Adapter bool
	// TrainerState is the parsed trainer_state.json (zero when it did not parse or the marker was used).
	TrainerState TrainerState
}

// Check inspects the checkpoint directory dir (named checkpoint-N) without changing anything and says whether its
// content is complete, following prior-art.md §2.5:
//
//   - the marker file is present: complete, no further checks; otherwise
//   - trainer_state.json parses and its global_step equals N;
//   - every top-level *.safetensors file (adapter_model.safetensors, model*.safetensors, shards) has a valid
//     header whose declared size equals the file's size;
//   - every file that a top-level *.index.json names in its weight_map exists in the directory;
//   - adapter_config.json parses as a JSON object when adapter weights are present (and adapter weights are
//     present when adapter_config.json is);
//   - nothing changed between the listing taken before the checks and the one taken after them.
//
// An incomplete directory is not an error: Complete is false and Reason says why. Errors are reserved for a
// directory that cannot be read at all (for example one removed by the trainer's rotation: errors.Is(err,
// fs.ErrNotExist)) or whose name is not checkpoint-N.
func Check(dir string, opts CheckOptions) (Completeness, error) {
	step, ok := ParseStep(filepath.Base(dir))
	if !ok {
		return Completeness{}, fmt.Errorf("%s: not a %sN checkpoint directory", dir, CheckpointPrefix)
	}
	marker := opts.Marker
	if marker == "" {
		marker = DefaultMarker
	}
	st, err := os.Stat(dir)
	if err != nil {
		return Completeness{}, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if !st.IsDir() {
		return Completeness{}, fmt.Errorf("checkpoint %s: not a directory", dir)
	}
	before, err := snapshot(dir)
	if err != nil {
		return Completeness{}, err
	}
	c := Completeness{Step: step, Files: before}
	top := map[string]FileInfo{}
	for _, f := range before {
		if !strings.Contains(f.Rel, "/") {
			top[f.Rel] = f
		}
	}
	if _, ok := top[marker]; ok {
		c.Complete, c.ByMarker = true, true
		return c, nil
	}

	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// trainer_state.json: written last by the Trainer.
	if _, ok := top[TrainerStateFile]; !ok {
		problem("%s missing", TrainerStateFile)
	} else if data, err := os.ReadFile(filepath.Join(dir, TrainerStateFile)); err != nil {
		problem("%s: %v", TrainerStateFile, err)
	} else if ts, err := ParseTrainerState(data); err != nil {
		problem("%s: %v (still being written?)", TrainerStateFile, err)
	} else if ts.GlobalStep != step {
		problem("%s: global_step is %d, want %d", TrainerStateFile, ts.GlobalStep, step)
	} else {
		c.TrainerState = ts
	}

	// Index files: every shard they name must exist; safetensors shards are validated below.
	weights := map[string]bool{}
	for name := range top {
		if strings.HasSuffix(name, ".safetensors") {
			weights[name] = true
		}
	}
	for _, name := range sortedKeys(top) {
		if !strings.HasSuffix(name, ".index.json") {
			continue
		}
		shards, err := readIndex(filepath.Join(dir, name))
		if err != nil {
			problem("%s: %v", name, err)
			continue
		}
		for _, s := range shards {
			if !path.IsAbs(s) && !strings.Contains(s, "\\") && path.Clean(s) == s && s != ".." && !strings.HasPrefix(s, "../") {
				if _, ok := top[s]; !ok && !nestedFile(before, s) {
					problem("%s names shard %s, which does not exist", name, s)
					continue
				}
				if strings.HasSuffix(s, ".safetensors") {
					weights[s] = true
				}
			} else {
				problem("%s names shard %q outside the checkpoint directory", name, s)
			}
		}
	}

	// Weight files: header parses and declares exactly the file's size.
	for _, name := range sortedKeys(weights) {
		if err := safetensors.CheckFile(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			problem("%s: %v", name, trimPath(err, dir))
			continue
		}
		c.Weights = append(c.Weights, name)
	}

	// PEFT adapter: weights and config come together.
	_, hasST := top[adapterSafetensorsFile]
	_, hasBin := top[adapterBinFile]
	_, hasCfg := top[adapterConfigFile]
	c.Adapter = hasST || hasBin
	switch {
	case c.Adapter && !hasCfg:
		problem("%s missing next to the adapter weights", adapterConfigFile)
	case c.Adapter:
		if err := checkJSONObject(filepath.Join(dir, adapterConfigFile)); err != nil {
			problem("%s: %v", adapterConfigFile, err)
		}
	case hasCfg:
		problem("%s present but no %s or %s yet", adapterConfigFile, adapterSafetensorsFile, adapterBinFile)
	}

	after, err := snapshot(dir)
	if err != nil {
		return Completeness{}, err
	}
	if !sameFiles(before, after) {
		problem("files changed while being checked")
		c.Files = after
	}
	if len(problems) > 0 {
		c.Reason = strings.Join(problems, "; ")
		return c, nil
	}
	c.Complete = true
	return c, nil
}

// readIndex returns the distinct file names of an index's weight_map, sorted.
func readIndex(p string) ([]string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("not a complete JSON index: %w", err)
	}
	if idx.WeightMap == nil {
		return nil, errors.New("no weight_map")
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range idx.WeightMap {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

// checkJSONObject reports whether the file holds one complete JSON object.
func checkJSONObject(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("not a complete JSON object (still being written?): %w", err)
	}
	if obj == nil {
		return errors.New("not a JSON object")
	}
	return nil
}

// nestedFile reports whether the snapshot holds rel (a slash path below the top level).
func nestedFile(files []FileInfo, rel string) bool {
	i := sort.Search(len(files), func(i int) bool { return files[i].Rel >= rel })
	return i < len(files) && files[i].Rel == rel
}

// trimPath drops the checkpoint directory from an error that names a file in it, so reasons stay short.
func trimPath(err error, dir string) string {
	return strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// isNotExist reports whether err means a path does not exist.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
