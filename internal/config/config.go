// Package config is the daemon's configuration: a YAML file (strictly decoded: an unknown key is an error naming
// the key and its line), the environment (HF_ENDPOINT, HF_HOME, STATE_DIRECTORY, XDG_STATE_HOME), and the watch
// command's flags, which override keys by setting the exported fields before Validate.
//
// Typical use:
//
//	cfg, err := config.Load(path)     // or config.Default() without a file
//	cfg.Settle = flagSettle           // flags override keys
//	cfg.Watch = append(cfg.Watch, w)  // DIR arguments add watch entries (start from config.DefaultWatch())
//	err = cfg.Resolve(os.Getenv)      // environment defaults, absolute paths
//	err = cfg.Validate()
//
// The Hub token is never part of the configuration: it comes from the token sources (--token,
// $CREDENTIALS_DIRECTORY/hf_token, HF_TOKEN, the keyring, $HF_HOME/token) that the hub package resolves, so it
// cannot leak through the configuration's String or logs. A "token" key in the file is refused with that advice.
//
// config.example.yaml at the repository root documents every key with its default; a test keeps it equal to
// Default() plus its one watch entry.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Option values.
const (
	LogAuto    = "auto"
	LogConsole = "console"
	LogJSON    = "json"

	// PolicyLatest skips queued checkpoints older than the newest one (recorded as skipped); PolicyAll publishes
	// every checkpoint in order.
	PolicyLatest = "latest"
	PolicyAll    = "all"

	DeviceAuto = "auto"
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"

	PublishAdapter = "adapter"
	PublishMerged  = "merged"
	PublishBoth    = "both"
	// PublishGGUF publishes only the GGUF files of the merge (Watch.GGUF) and their model card.
	PublishGGUF = "gguf"

	// LayoutTags publishes at the revision's root and tags each step; LayoutBranches commits each step to its own
	// branch; LayoutSubfolders commits each step into its own folder of the revision.
	LayoutTags       = "tags"
	LayoutBranches   = "branches"
	LayoutSubfolders = "subfolders"
)

// Defaults.
const (
	DefaultEndpoint        = "https://huggingface.co"
	DefaultSettle          = 30 * time.Second
	DefaultMarker          = ".hubsync-complete"
	DefaultParallelFiles   = 4
	DefaultParallelParts   = 8
	DefaultStallTimeout    = 60 * time.Second
	DefaultXet             = "auto"
	DefaultRetries         = 8
	DefaultMaxBackoff      = 10 * time.Minute
	DefaultHeartbeat       = 10 * time.Second
	DefaultStaleAfter      = 2 * time.Minute
	DefaultRevision        = "main"
	DefaultTagFormat       = "step-{step}"
	DefaultBranchFormat    = "step-{step}"
	DefaultSubfolderFormat = "{checkpoint}"
	DefaultMaxShardSize    = ByteSize(5_000_000_000)
	// DefaultShardLayout groups unchanged tensors in their own shards (export.ShardLayoutDelta).
	DefaultShardLayout   = "delta"
	DefaultCommitMessage = "Upload {checkpoint} (step {step})"

	// Staging modes of merged outputs (watch[].staging).
	StagingDisk = "disk"
	StagingNone = "none"
	StagingAuto = "auto"
	// StagingDirName is the staging directory created inside each watched directory when staging_dir is unset
	// (same filesystem as the checkpoints, so pinning uses hard links).
	StagingDirName = ".hubsync-staging"
	// JournalFile is the journal's file name inside the state directory.
	JournalFile = "journal.db"
)

// Config is the daemon's configuration. Field comments give the YAML key and its default.
type Config struct {
	// Endpoint (endpoint, default "": $HF_ENDPOINT, else https://huggingface.co) is the Hub's base URL.
	Endpoint string `yaml:"endpoint"`
	// StateDir (state_dir, default "": $STATE_DIRECTORY, else $XDG_STATE_HOME/hubsync, else
	// ~/.local/state/hubsync) holds the journal.
	StateDir string `yaml:"state_dir"`
	// StagingDir (staging_dir, default "": <watched dir>/.hubsync-staging) holds pinned checkpoints and merged
	// output. Keep it on the checkpoints' filesystem so that pinning is hard links, not copies.
	StagingDir string `yaml:"staging_dir"`
	// LogFormat (log_format, default auto) is auto, console or json.
	LogFormat string `yaml:"log_format"`
	// MetricsAddr (metrics_addr, default "": off) serves Prometheus metrics, on a loopback address unless
	// MetricsAllowRemote.
	MetricsAddr string `yaml:"metrics_addr"`
	// MetricsAllowRemote (metrics_allow_remote, default false) permits a non-loopback MetricsAddr.
	MetricsAllowRemote bool `yaml:"metrics_allow_remote"`
	// Poll (poll, default 0s: fsnotify) > 0 rescans at this interval instead of using filesystem events.
	Poll time.Duration `yaml:"poll"`
	// Settle (settle, default 30s) is how long a checkpoint must stay unchanged to count as complete when it
	// has no marker file.
	Settle time.Duration `yaml:"settle"`
	// Marker (marker, default .hubsync-complete) is the file a cooperating trainer writes into a finished
	// checkpoint.
	Marker string `yaml:"marker"`
	// Policy (policy, default latest) is latest or all.
	Policy string `yaml:"policy"`
	// Device (device, default auto) is where merges run: auto, cpu or cuda.
	Device string `yaml:"device"`
	// Upload tunes transfers.
	Upload Upload `yaml:"upload"`
	// Lock tunes the per-directory daemon lock.
	Lock Lock `yaml:"lock"`
	// Watch lists the watched directories and where each publishes.
	Watch []Watch `yaml:"watch"`

	// HFHome is resolved by Resolve from $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
	// ~/.cache/huggingface (the same rule as huggingface_hub); not a file key.
	HFHome string `yaml:"-"`

	// baseDir is the directory of the file Load read; relative paths in it are relative to it.
	baseDir string
	// lines maps key paths ("watch[0].layout") to their line in the file, for error messages.
	lines map[string]int
}

// Upload tunes transfers.
type Upload struct {
	// ParallelFiles (upload.parallel_files, default 4) is how many files upload at once.
	ParallelFiles int `yaml:"parallel_files"`
	// ParallelParts (upload.parallel_parts, default 8) is how many parts of one multipart file upload at once.
	ParallelParts int `yaml:"parallel_parts"`
	// Retries (upload.retries, default 8) is how often a failed request is retried before the job records a
	// transient error.
	Retries int `yaml:"retries"`
	// MaxBackoff (upload.max_backoff, default 10m) is the longest wait between a job's tries after a fixable
	// error (the wait starts at 10s and doubles; the job retries indefinitely).
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// StallTimeout (upload.stall_timeout, default 60s) aborts and retries a request, a download range or an
	// upload part when no byte was read or written for that long. Slow transfers that keep moving are not cut.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// Xet (upload.xet, default auto) says whether uploads use the Xet transfer: auto (when the Hub chooses it,
	// else LFS), on (fail when the Hub does not offer it) or off. HF_HUB_DISABLE_XET=1 forces off.
	Xet string `yaml:"xet"`
}

// Lock tunes the lock that keeps one daemon per watched directory.
type Lock struct {
	// Heartbeat (lock.heartbeat, default 10s) is how often the lock file is refreshed.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// StaleAfter (lock.stale_after, default 2m) is how old another host's heartbeat must be before its lock is
	// taken over.
	StaleAfter time.Duration `yaml:"stale_after"`
}

// Watch is one watched directory and its publishing target. In a file, omitted keys take DefaultWatch's values.
type Watch struct {
	// Dir (dir, required) is the trainer's output directory (holding checkpoint-N); relative paths in a file are
	// relative to the file's directory.
	Dir string `yaml:"dir"`
	// Repo (repo, required) is the model repo, OWNER/NAME.
	Repo string `yaml:"repo"`
	// Private (private, default false) creates the repo private when it does not exist.
	Private bool `yaml:"private"`
	// Revision (revision, default main) is the branch published to (with layouts tags and subfolders).
	Revision string `yaml:"revision"`
	// Publish (publish, default merged) is adapter, merged, both, or gguf (only the GGUF files of GGUF and a
	// model card).
	Publish string `yaml:"publish"`
	// AdapterRepo (adapter_repo, default "": <repo>-adapter) receives the adapter when Publish is both.
	AdapterRepo string `yaml:"adapter_repo"`
	// Layout (layout, default tags) is tags, branches or subfolders.
	Layout string `yaml:"layout"`
	// TagFormat (tag_format, default step-{step}) names the tag of each step (layout tags).
	TagFormat string `yaml:"tag_format"`
	// BranchFormat (branch_format, default step-{step}) names the branch of each step (layout branches).
	BranchFormat string `yaml:"branch_format"`
	// SubfolderFormat (subfolder_format, default {checkpoint}) names the folder of each step (layout
	// subfolders).
	SubfolderFormat string `yaml:"subfolder_format"`
	// Base (base, default "": the adapter's base_model_name_or_path) is the base model: a local directory or a
	// Hub repo id.
	Base string `yaml:"base"`
	// DType (dtype, default "": the base model's dtype) is the merged output's dtype: bf16, fp16 or fp32, or
	// nf4 or fp4 for a merged bitsandbytes 4-bit model (configured by Quant). A pair of a float and a 4-bit
	// dtype ("bf16,nf4") publishes both outputs of each checkpoint: the 16/32-bit one to Repo, the 4-bit one to
	// QuantRepo (see SplitDType).
	DType string `yaml:"dtype"`
	// QuantRepo (quant_repo, default "": <repo>-bnb-4bit) receives the 4-bit output when DType names two
	// outputs ("bf16,nf4"); same layout, revision and formats as Repo.
	QuantRepo string `yaml:"quant_repo"`
	// Quant (quant) configures a 4-bit output (dtype nf4 or fp4); ignored for the other dtypes.
	Quant Quant4Bit `yaml:"quant"`
	// MaxShardSize (max_shard_size, default 5GB) caps each output shard.
	MaxShardSize ByteSize `yaml:"max_shard_size"`
	// ShardLayout (shard_layout, default delta) is how tensors fall into shards: delta puts the tensors the
	// adapter does not change in shards of their own, identical across checkpoints (uploaded once); hf is
	// huggingface_hub's exact layout.
	ShardLayout string `yaml:"shard_layout"`
	// KeepTied (keep_tied, default false) keeps a tied base's embeddings tied when the adapter has a LoRA on
	// embed_tokens (PEFT's merge_and_unload behaviour; lm_head changes too). By default they are untied.
	KeepTied bool `yaml:"keep_tied"`
	// GGUF (gguf, default none) lists GGUF types (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k) every
	// merged checkpoint is also published as, one <repo name>-<TYPE>.gguf file per type in the merged model's
	// commit (with publish gguf: alone).
	GGUF []string `yaml:"gguf,omitempty"`
	// GGUFPath (gguf_path, default "": beside the merged model) is the folder of the GGUF files, relative to
	// where the merged model goes.
	GGUFPath string `yaml:"gguf_path"`
	// GGUFPre (gguf_pre, default "": recognised from tokenizer.json) overrides the GGUF files' byte-level BPE
	// pre-tokenizer name (tokenizer.ggml.pre: llama-bpe, qwen2, gpt-2, …) when hubsync does not recognise the
	// tokenizer's split rules.
	GGUFPre string `yaml:"gguf_pre"`
	// Staging (staging, default auto) says whether the merged shards are written to the staging directory
	// before the upload (disk), never written (none: merged twice, once for the digests, once while sending),
	// or none when the staging file system has less than twice the output's size free (auto).
	Staging string `yaml:"staging"`
	// Prune keeps the Hub tidy.
	Prune Prune `yaml:"prune"`
	// CommitMessage (commit_message, default "Upload {checkpoint} (step {step})") is each commit's summary.
	CommitMessage string `yaml:"commit_message"`
}

// Quant4Bit configures a merged bitsandbytes 4-bit output (watch[].dtype nf4 or fp4).
type Quant4Bit struct {
	// DoubleQuant (quant.double_quant, default true) quantizes the absmax statistics too.
	DoubleQuant *bool `yaml:"double_quant"`
	// Blocksize (quant.blocksize, default 64) is the 4-bit block size, a power of two in 32..4096.
	Blocksize int `yaml:"blocksize"`
	// ComputeDType (quant.compute_dtype, default "": the base's) is bnb_4bit_compute_dtype and the dtype of the
	// tensors kept unquantized: bf16, fp16 or fp32.
	ComputeDType string `yaml:"compute_dtype"`
	// Storage (quant.storage, default uint8) is bnb_4bit_quant_storage: uint8 or bf16.
	Storage string `yaml:"storage"`
	// SkipModules (quant.skip_modules, default: lm_head) are kept unquantized (llm_int8_skip_modules).
	SkipModules []string `yaml:"skip_modules,omitempty"`
}

// Prune configures removal of old per-step refs or folders on the Hub.
type Prune struct {
	// Keep (prune.keep, default 0: never prune) keeps the N newest per-step tags, branches or subfolders.
	Keep int `yaml:"keep"`
}

// Default returns the configuration with every default and no watch entries.
func Default() *Config {
	return &Config{
		LogFormat: LogAuto,
		Settle:    DefaultSettle,
		Marker:    DefaultMarker,
		Policy:    PolicyLatest,
		Device:    DeviceAuto,
		Upload: Upload{ParallelFiles: DefaultParallelFiles, ParallelParts: DefaultParallelParts, Retries: DefaultRetries,
			MaxBackoff: DefaultMaxBackoff, StallTimeout: DefaultStallTimeout, Xet: DefaultXet},
		Lock: Lock{Heartbeat: DefaultHeartbeat, StaleAfter: DefaultStaleAfter},
	}
}

// DefaultWatch returns a watch entry with every default (Dir and Repo empty).
func DefaultWatch() Watch {
	var w Watch
	fillWatchDefaults(&w)
	return w
}

// fillWatchDefaults sets the defaults of keys a file omitted (their zero values).
func fillWatchDefaults(w *Watch) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&w.Revision, DefaultRevision)
	def(&w.Publish, PublishMerged)
	def(&w.Layout, LayoutTags)
	def(&w.TagFormat, DefaultTagFormat)
	def(&w.BranchFormat, DefaultBranchFormat)
	def(&w.SubfolderFormat, DefaultSubfolderFormat)
	def(&w.CommitMessage, DefaultCommitMessage)
	def(&w.Quant.Storage, "uint8")
	if w.Quant.DoubleQuant == nil {
		dq := true
		w.Quant.DoubleQuant = &dq
	}
	if w.Quant.Blocksize == 0 {
		w.Quant.Blocksize = 64
	}
	def(&w.ShardLayout, DefaultShardLayout)
	def(&w.Staging, StagingAuto)
	if w.MaxShardSize == 0 {
		w.MaxShardSize = DefaultMaxShardSize
	}
}

// String renders the configuration as YAML (it holds no secret).
func (c *Config) String() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("config: %v", err)
	}
	return string(b)
}

// JournalPath is the journal database's path (after Resolve).
func (c *Config) JournalPath() string { return filepath.Join(c.StateDir, JournalFile) }

// StagingFor is the staging directory for a watch entry (after Resolve): <dir>/.hubsync-staging, or, with
// staging_dir set, a subdirectory of it named after the watched directory.
func (c *Config) StagingFor(w Watch) string {
	if c.StagingDir == "" {
		return filepath.Join(w.Dir, StagingDirName)
	}
	sum := sha256.Sum256([]byte(w.Dir))
	return filepath.Join(c.StagingDir, filepath.Base(w.Dir)+"-"+hex.EncodeToString(sum[:4]))
}

// Expand substitutes {step} (N) and {checkpoint} (checkpoint-N) in a format.
func Expand(format string, step int64) string {
	n := strconv.FormatInt(step, 10)
	return strings.NewReplacer("{step}", n, "{checkpoint}", "checkpoint-"+n).Replace(format)
}

// TagName is the tag of step (layout tags).
func (w Watch) TagName(step int64) string { return Expand(w.TagFormat, step) }

// BranchName is the branch of step (layout branches).
func (w Watch) BranchName(step int64) string { return Expand(w.BranchFormat, step) }

// Subfolder is the repo folder of step (layout subfolders).
func (w Watch) Subfolder(step int64) string { return Expand(w.SubfolderFormat, step) }

// SplitDType splits a dtype value into its float dtype ("" = the base's, or none) and its 4-bit dtype (nf4, fp4
// or ""): "bf16" -> ("bf16", ""), "nf4" -> ("", "nf4"), "bf16,nf4" or "nf4,bf16" -> ("bf16", "nf4"). both is
// true when the value names two outputs; a pair must name one float and one 4-bit dtype. Single values are not
// checked here (Validate does).
func SplitDType(s string) (float, quant string, both bool, err error) {
	if !strings.Contains(s, ",") {
		s = strings.TrimSpace(s)
		if s == "nf4" || s == "fp4" {
			return "", s, false, nil
		}
		return s, "", false, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return "", "", false, fmt.Errorf("names %d outputs; at most two: a float dtype and a 4-bit one (bf16,nf4)", len(parts))
	}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		switch p {
		case "nf4", "fp4":
			if quant != "" {
				return "", "", false, fmt.Errorf("names two 4-bit dtypes; pair a float dtype with one (bf16,nf4)")
			}
			quant = p
		case "bf16", "fp16", "fp32":
			if float != "" {
				return "", "", false, fmt.Errorf("names two float dtypes; pair one with a 4-bit dtype (bf16,nf4)")
			}
			float = p
		default:
			return "", "", false, fmt.Errorf("%q is not one of bf16, fp16, fp32, nf4, fp4", p)
		}
	}
	return float, quant, true, nil
}

// Message is the commit summary of step.
func (w Watch) Message(step int64) string { return Expand(w.CommitMessage, step) }
