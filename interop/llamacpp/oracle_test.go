package llamacpp

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// job is the input of oracle.mjs (one node process per batch of files).
type job struct {
	Threads    int            `json:"threads"`
	Models     []modelJob     `json:"models,omitempty"`
	Tokenizers []tokenizerJob `json:"tokenizers,omitempty"`
	GGUF       []string       `json:"gguf,omitempty"`
}

type modelJob struct {
	Path     string    `json:"path"`
	Logits   [][]int   `json:"logits,omitempty"`
	Tokenize []textJob `json:"tokenize,omitempty"`
}

type textJob struct {
	Text    string `json:"text"`
	Special bool   `json:"special"`
}

type tokenizerJob struct {
	JSON   string    `json:"json"`
	Config string    `json:"config,omitempty"`
	Texts  []textJob `json:"texts"`
}

// result is oracle.mjs's output, item for item.
type result struct {
	Models []struct {
		Path   string      `json:"path"`
		Error  string      `json:"error"`
		Log    string      `json:"log"` // llama.cpp's warnings and errors
		Logits [][]float64 `json:"logits"`
		Tokens [][]int     `json:"tokens"`
	} `json:"models"`
	Tokenizers []struct {
		Error  string  `json:"error"`
		Tokens [][]int `json:"tokens"`
	} `json:"tokenizers"`
	GGUF []struct {
		Path             string         `json:"path"`
		Error            string         `json:"error"`
		TensorDataOffset int64          `json:"tensorDataOffset"`
		Tensors          []jsTensorInfo `json:"tensors"`
		Metadata         map[string]any `json:"metadata"`
	} `json:"gguf"`
}

type jsTensorInfo struct {
	Name   string   `json:"name"`
	Shape  []uint64 `json:"shape"`
	DType  uint32   `json:"dtype"`
	Offset int64    `json:"offset"`
}

// runOracle runs one batch through oracle.mjs and checks that every item came back.
func runOracle(t *testing.T, o *Oracles, j job) *result {
	t.Helper()
	if j.Threads == 0 {
		j.Threads = 2
	}
	data, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Node, filepath.Join(Dir(), "oracle.mjs"), p)
	cmd.Dir = Dir()
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node oracle.mjs: %v\n%s", err, stderr.String())
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("oracle.mjs output: %v\n%.2000s\n%s", err, out, stderr.String())
	}
	if len(r.Models) != len(j.Models) || len(r.Tokenizers) != len(j.Tokenizers) || len(r.GGUF) != len(j.GGUF) {
		t.Fatalf("oracle.mjs answered %d/%d/%d items for %d/%d/%d", len(r.Models), len(r.Tokenizers), len(r.GGUF),
			len(j.Models), len(j.Tokenizers), len(j.GGUF))
	}
	return &r
}

// limitedBuffer keeps the first 64 KiB written to it (a child's stderr).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// quantizeJob is one llama_model_quantize run: src to dst as llama_ftype ftype.
type quantizeJob struct {
	Src, Dst string
	FType    int
}

// runQuantize runs llama.cpp's llama_model_quantize (quantize.py, python3 ctypes) on every job, in one process.
func runQuantize(t *testing.T, o *Oracles, jobs []quantizeJob) {
	t.Helper()
	args := []string{filepath.Join(Dir(), "quantize.py"), o.LibDir, "2"}
	for _, j := range jobs {
		args = append(args, j.Src, j.Dst, strconv.Itoa(j.FType))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Python, args...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 quantize.py: %v\n%s\n%s", err, out, stderr.String())
	}
	for _, j := range jobs {
		if !strings.Contains(string(out), "ok "+j.Dst+"\n") {
			t.Fatalf("llama_model_quantize %s → %s (ftype %d) failed:\n%s\n%s", j.Src, j.Dst, j.FType, out,
				stderr.String())
		}
	}
}
