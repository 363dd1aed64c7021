// Package llamacpp locates the test oracles installed in this folder by npm (package.json pins them):
// llama.cpp v0.5.0 prebuilt for linux-x64 through node-llama-cpp (its libggml-base.so and libllama.v0.5.0.so are
// called from Debian's python3 with ctypes), @huggingface/gguf and @huggingface/tokenizers. Install them once
// with `NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts` here (.ci/run does). Tests
// that need them skip when they are missing, except under CI=true, where they fail.
package llamacpp

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Oracles are the paths of the installed consumers.
type Oracles struct {
	// Node and Python are the node and python3 binaries.
	Node, Python string
	// Modules is this folder's node_modules (for NODE_PATH or as a working directory's parent).
	Modules string
	// LibDir holds libggml-base.so, libggml.v0.5.0.so, libllama.v0.5.0.so (with libllama-common.so) and the CPU
	// backends (libggml-cpu-*.so) of llama.cpp v0.5.0.
	LibDir string
}

// Dir is this package's folder (where package.json and node_modules are).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Find returns the oracles, or skips t (fails it under CI=true) naming what is missing.
func Find(t testing.TB) *Oracles {
	t.Helper()
	o, missing := find()
	if missing == "" {
		return o
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s", missing)
	}
	t.Skip(missing)
	return nil
}

func find() (*Oracles, string) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil, "the llama.cpp prebuilt oracle is linux-x64 only"
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "node is not installed"
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil, "python3 is not installed"
	}
	mods := filepath.Join(Dir(), "node_modules")
	lib := filepath.Join(mods, "@node-llama-cpp", "linux-x64", "bins", "linux-x64")
	for _, p := range []string{
		filepath.Join(lib, "libggml-base.so"),
		filepath.Join(lib, "libllama.v0.5.0.so"),
		filepath.Join(mods, "node-llama-cpp", "package.json"),
		filepath.Join(mods, "@huggingface", "gguf", "package.json"),
		filepath.Join(mods, "@huggingface", "tokenizers", "package.json"),
	} {
		if _, err := os.Stat(p); err != nil {
			return nil, "llama.cpp oracles are not installed (run NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install " +
				"--omit=optional --ignore-scripts in interop/llamacpp): " + err.Error()
		}
	}
	return &Oracles{Node: node, Python: py, Modules: mods, LibDir: lib}, ""
}
