package merge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
	"github.com/hubsync/hubsync/merge/kernels"
)

// rewriteSafetensors reads every tensor of path, lets edit change the list, and writes it back.
func rewriteSafetensors(t testing.TB, path string, edit func([]safetensors.Data) []safetensors.Data) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Data
	for _, ti := range f.Tensors {
		b, err := f.ReadTensor(ti)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, data(ti.Name, ti.DType, ti.Shape, b))
	}
	f.Close()
	if _, err := safetensors.WriteTensors(path, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
}

// editJSON rewrites a JSON object file.
func editJSON(t testing.TB, path string, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func renameTensor(from, to string) func([]safetensors.Data) []safetensors.Data {
	return func(ts []safetensors.Data) []safetensors.Data {
		for i := range ts {
			if ts[i].Name == from {
				ts[i].Name = to
			}
		}
		return ts
	}
}

const qA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
const qB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"

// setFloat sets element i of the named F32 tensor.
func setFloat(name string, i int, v float32) func([]safetensors.Data) []safetensors.Data {
	return func(ts []safetensors.Data) []safetensors.Data {
		for k := range ts {
			if ts[k].Name == name {
				b := append([]byte(nil), ts[k].Bytes...)
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				ts[k].Bytes = b
			}
		}
		return ts
	}
}

func TestBadInputs(t *testing.T) {
	type env struct{ base, adapter, out string }
	cases := []struct {
		name  string
		setup func(t *testing.T, e env)
		want  []string // substrings of the error
	}{
		{"missing adapter_config", func(t *testing.T, e env) {
			os.Remove(filepath.Join(e.adapter, "adapter_config.json"))
		}, []string{"adapter_config.json", "missing"}},
		{"invalid adapter_config", func(t *testing.T, e env) {
			os.WriteFile(filepath.Join(e.adapter, "adapter_config.json"), []byte(`{"r": 8,`), 0o644)
		}, []string{"adapter_config.json", "not valid JSON"}},
		{"adapter_config not an object", func(t *testing.T, e env) {
			os.WriteFile(filepath.Join(e.adapter, "adapter_config.json"), []byte(`[1]`), 0o644)
		}, []string{"adapter_config.json", "not a JSON object"}},
		{"missing adapter weights", func(t *testing.T, e env) {
			os.Remove(filepath.Join(e.adapter, "adapter_model.safetensors"))
		}, []string{"adapter_model.safetensors", "missing"}},
		{"module matches no base tensor", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				ts = renameTensor(qA, strings.Replace(qA, "layers.0", "layers.9", 1))(ts)
				return renameTensor(qB, strings.Replace(qB, "layers.0", "layers.9", 1))(ts)
			})
		}, []string{"model.layers.9.self_attn.q_proj", "matches no base tensor"}},
		{"replacement matches no base tensor", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				return append(ts, data("base_model.model.model.extra.weight", tensor.F32, []int64{2}, f32Bytes([]float32{1, 2})))
			})
		}, []string{"base_model.model.model.extra.weight", "matches no base tensor"}},
		{"shape mismatch", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				for i := range ts {
					if ts[i].Name == qB {
						ts[i].Shape = []int64{ts[i].Shape[0] + 2, ts[i].Shape[1]}
						ts[i].Bytes = make([]byte, 4*ts[i].Shape[0]*ts[i].Shape[1])
					}
				}
				return ts
			})
		}, []string{"adapter_model.safetensors", "q_proj", "[42, 8]", "[40, 40]"}},
		{"rank differs from r", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) { m["r"] = 4 })
		}, []string{"lora_A.weight", "rank 8", "r = 4"}},
		{"rank differs from rank_pattern", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) {
				m["rank_pattern"] = map[string]any{"v_proj": 5}
			})
		}, []string{"v_proj.lora_A.weight", "rank 8", `rank_pattern["v_proj"] = 5`}},
		{"NaN in adapter", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), setFloat(qA, 3, float32(math.NaN())))
		}, []string{"adapter_model.safetensors", qA, "non-finite", "NaN"}},
		{"Inf in adapter", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), setFloat(qB, 0, float32(math.Inf(-1))))
		}, []string{qB, "non-finite", "-Inf"}},
		{"truncated base", func(t *testing.T, e env) {
			p := filepath.Join(e.base, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, []string{"model.safetensors", "truncated"}},
		{"corrupt base header", func(t *testing.T, e env) {
			f, _ := os.OpenFile(filepath.Join(e.base, "model.safetensors"), os.O_WRONLY, 0)
			f.WriteAt([]byte("\x00\x01garbage"), 9)
			f.Close()
		}, []string{"model.safetensors", "invalid safetensors file", "header"}},
		{"truncated adapter", func(t *testing.T, e env) {
			p := filepath.Join(e.adapter, "adapter_model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-1)
		}, []string{"adapter_model.safetensors", "truncated"}},
		{"unsupported adapter dtype", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				for i := range ts {
					if ts[i].Name == qA {
						ts[i].DType = tensor.I32
					}
				}
				return ts
			})
		}, []string{qA, "unsupported dtype I32"}},
		{"unsupported variant use_qalora", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) { m["use_qalora"] = true })
		}, []string{"adapter_config.json", "use_qalora"}},
		{"unsupported variant target_parameters", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) {
				m["target_parameters"] = []string{"experts.gate_up_proj"}
			})
		}, []string{"adapter_config.json", "target_parameters"}},
		{"unsupported variant trainable tokens", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) {
				m["trainable_token_indices"] = []int{1, 2}
			})
		}, []string{"adapter_config.json", "trainable_token_indices"}},
		{"non-LoRA peft type", func(t *testing.T, e env) {
			editJSON(t, filepath.Join(e.adapter, "adapter_config.json"), func(m map[string]any) { m["peft_type"] = "LOHA" })
		}, []string{"adapter_config.json", "peft_type", "LOHA"}},
		{"missing 4-bit component", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.base, "model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				var out []safetensors.Data
				for _, d := range ts {
					if d.Name != "model.layers.1.mlp.up_proj.weight.absmax" {
						out = append(out, d)
					}
				}
				return out
			})
		}, []string{"model.layers.1.mlp.up_proj.weight.absmax", "missing"}},
		{"corrupt quant state", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.base, "model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				for i := range ts {
					if strings.HasSuffix(ts[i].Name, "o_proj.weight.quant_state.bitsandbytes__nf4") {
						ts[i].Bytes = []byte(`{"quant_type": "nf4", "blocksize": 48}`)
						ts[i].Shape = []int64{int64(len(ts[i].Bytes))}
					}
				}
				return ts
			})
		}, []string{"quant_state.bitsandbytes__nf4", "blocksize 48"}},
		{"missing base config", func(t *testing.T, e env) {
			os.Remove(filepath.Join(e.base, "config.json"))
		}, []string{"config.json", "missing"}},
		{"lora_magnitude without use_dora", func(t *testing.T, e env) {
			rewriteSafetensors(t, filepath.Join(e.adapter, "adapter_model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
				return append(ts, data("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", tensor.F32, []int64{40}, make([]byte, 160)))
			})
		}, []string{"q_proj", "use_dora is false"}},
	}
	dir := t.TempDir()
	base0, ad0 := mergeCase{base: testmodel.Tiny(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 40}}.generate(t, dir)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(dir, "case", string(rune('a'+i)))
			e := env{base: filepath.Join(root, "base"), adapter: filepath.Join(root, "adapter"), out: filepath.Join(root, "out", "merged")}
			copyDir(t, base0, e.base)
			copyDir(t, ad0, e.adapter)
			c.setup(t, e)
			_, err := Run(context.Background(), Options{Base: e.base, Adapter: e.adapter, Out: e.out, Threads: 2})
			if err == nil {
				t.Fatal("merge succeeded")
			}
			t.Logf("error: %v", err)
			if !IsBadInput(err) {
				t.Errorf("error is not marked as bad input: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if ents := noEntries(t, filepath.Join(root, "out")); len(ents) > 0 {
				t.Errorf("output parent not empty after a failed merge: %v", ents)
			}
		})
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fp16Overflow builds a bf16 base and an adapter whose merge exceeds the fp16 range.
func fp16Overflow(t *testing.T, dir string) (base, adapter string) {
	base, adapter = filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	w := "model.layers.0.self_attn.q_proj.weight"
	writeDir(t, base, "config.json", map[string]any{"torch_dtype": "bfloat16"}, "model.safetensors", []safetensors.Data{
		data(w, tensor.BF16, []int64{2, 2}, floatBytes(t, tensor.BF16, []float32{1, 60000, -2, 3})),
	})
	writeDir(t, adapter, "adapter_config.json", `{"peft_type": "LORA", "r": 1, "lora_alpha": 10000}`, "adapter_model.safetensors", []safetensors.Data{
		data("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", tensor.F32, []int64{1, 2}, f32Bytes([]float32{1, 1})),
		data("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", tensor.F32, []int64{2, 1}, f32Bytes([]float32{1, 0.5})),
	})
	return base, adapter
}

func TestFP16OverflowIsAnError(t *testing.T) {
	dir := t.TempDir()
	base, adapter := fp16Overflow(t, dir)
	out := filepath.Join(dir, "out", "m")
	_, err := Run(context.Background(), Options{Base: base, Adapter: adapter, Out: out, DType: tensor.F16})
	if err == nil || !IsBadInput(err) {
		t.Fatalf("want a bad-input error, got %v", err)
	}
	for _, w := range []string{"model.layers.0.self_attn.q_proj.weight", "[0, 1]", "overflows F16", "--dtype"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if ents := noEntries(t, filepath.Join(dir, "out")); len(ents) > 0 {
		t.Errorf("left behind: %v", ents)
	}
	// bf16 holds it: 70000 is representable.
	res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: out})
	got := readOutput(t, res.Dir)["model.layers.0.self_attn.q_proj.weight"].floats(t)
	want := []float32{10001, 70000, 4998, 5003}
	for i := range want {
		if got[i] != tensor.RoundTo(tensor.BF16, want[i]) {
			t.Errorf("element %d: %v, want %v", i, got[i], tensor.RoundTo(tensor.BF16, want[i]))
		}
	}
}

func TestBaseRepoIDResolution(t *testing.T) {
	dir := t.TempDir()
	base, adapter := fp16Overflow(t, dir)
	cache := filepath.Join(dir, "cache")
	t.Setenv("HF_HUB_CACHE", cache)
	out := filepath.Join(dir, "out")
	// Not cached, no fetcher: a clear error naming the cache.
	_, err := Run(context.Background(), Options{Base: "acme/tiny", Adapter: adapter, Out: out})
	if err == nil || !strings.Contains(err.Error(), "not in the HF cache") || !strings.Contains(err.Error(), cache) {
		t.Fatalf("want a not-in-cache error naming %s, got %v", cache, err)
	}
	// The fetcher is called with the repo id.
	fetched := ""
	res, err := Run(context.Background(), Options{Base: "acme/tiny", Adapter: adapter, Out: out,
		FetchBase: func(_ context.Context, id string) (string, error) { fetched = id; return base, nil }})
	if err != nil || fetched != "acme/tiny" {
		t.Fatalf("fetch: %q, %v", fetched, err)
	}
	os.RemoveAll(res.Dir)
	// A cached snapshot: refs/main → snapshots/<commit>.
	snap := filepath.Join(cache, "models--acme--tiny", "snapshots", "abc1230000000000000000000000000000000000")
	copyDir(t, base, snap)
	os.MkdirAll(filepath.Join(cache, "models--acme--tiny", "refs"), 0o755)
	os.WriteFile(filepath.Join(cache, "models--acme--tiny", "refs", "main"), []byte("abc1230000000000000000000000000000000000\n"), 0o644)
	res, err = Run(context.Background(), Options{Base: "acme/tiny", Adapter: adapter, Out: out,
		FetchBase: func(context.Context, string) (string, error) { return "", errors.New("must not be called") }})
	if err != nil {
		t.Fatal(err)
	}
	card, _ := os.ReadFile(filepath.Join(res.Dir, "README.md"))
	if !strings.Contains(string(card), "acme/tiny") {
		t.Errorf("model card does not name the base repo:\n%s", card)
	}
}

func TestHFCacheLocation(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", "/x/hf")
	if got := hfHubCache(); got != "/x/hf/hub" {
		t.Errorf("HF_HOME: %s", got)
	}
	t.Setenv("HF_HOME", "")
	t.Setenv("XDG_CACHE_HOME", "/y")
	if got := hfHubCache(); got != "/y/huggingface/hub" {
		t.Errorf("XDG_CACHE_HOME: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/z")
	if got := hfHubCache(); got != "/z" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
}

func TestDiskSpaceCheck(t *testing.T) {
	dir := t.TempDir()
	err := checkDiskSpace(filepath.Join(dir, "a", "b", "out"), math.MaxInt64)
	var dse *DiskSpaceError
	if !errors.As(err, &dse) || dse.Need != math.MaxInt64 || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want a DiskSpaceError naming %s, got %v", dir, err)
	}
	if err := checkDiskSpace(filepath.Join(dir, "out"), 1); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceSelection(t *testing.T) {
	if _, err := selectBackend("cuda", nil, nil); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("cuda without a provider: %v", err)
	}
	b, err := selectBackend("auto", nil, nil)
	if err != nil || !strings.HasPrefix(b.Name(), "cpu/") {
		t.Errorf("auto without providers: %v %v", b, err)
	}
	fake := BackendProvider{Name: "cuda", Available: func() bool { return true },
		New: func(*kernels.Impl) (Backend, error) {
			return tileSizeBackend{Backend: NewCPUBackend(nil), elems: 5}, nil
		}}
	b, err = selectBackend("auto", []BackendProvider{fake}, nil)
	if err != nil || b.TileElems() != 5 {
		t.Errorf("auto with an available provider: %v %v", b, err)
	}
	fake.Available = func() bool { return false }
	if b, _ = selectBackend("auto", []BackendProvider{fake}, nil); b.TileElems() == 5 {
		t.Error("auto picked an unavailable provider")
	}
	if _, err = selectBackend("cuda", []BackendProvider{fake}, nil); err == nil || !strings.Contains(err.Error(), "no cuda device") {
		t.Errorf("cuda unavailable: %v", err)
	}
	if _, err = selectBackend("tpu", nil, nil); err == nil {
		t.Error("unknown device accepted")
	}
}

func TestNonFiniteInUntouchedTensors(t *testing.T) {
	dir := t.TempDir()
	base, adapter := fp16Overflow(t, dir)
	rewriteSafetensors(t, filepath.Join(base, "model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
		return append(ts,
			data("model.norm.weight", tensor.BF16, []int64{3}, floatBytes(t, tensor.BF16, []float32{1, float32(math.Inf(-1)), 2})),
			data("model.big.weight", tensor.BF16, []int64{2}, floatBytes(t, tensor.BF16, []float32{1, 1e6})))
	})
	// bf16 → bf16: untouched tensors are byte copies, whatever they hold.
	res := runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "a")})
	if got := readOutput(t, res.Dir)["model.norm.weight"].floats(t); !math.IsInf(float64(got[1]), -1) {
		t.Errorf("norm: %v", got)
	}
	// → fp16: the stored -Inf is carried over, but 1e6 overflows and is refused. (lora_alpha 1 and small q_proj
	// values keep the merged tensor itself in range.)
	editJSON(t, filepath.Join(adapter, "adapter_config.json"), func(m map[string]any) { m["lora_alpha"] = 1 })
	rewriteSafetensors(t, filepath.Join(base, "model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
		for i := range ts {
			if ts[i].Name == "model.layers.0.self_attn.q_proj.weight" {
				ts[i].Bytes = floatBytes(t, tensor.BF16, []float32{1, 2, 3, 4})
			}
		}
		return ts
	})
	_, err := Run(context.Background(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "b"), DType: tensor.F16})
	if err == nil || !strings.Contains(err.Error(), "model.big.weight") || !strings.Contains(err.Error(), "overflows F16") {
		t.Fatalf("want an overflow error for model.big.weight, got %v", err)
	}
	rewriteSafetensors(t, filepath.Join(base, "model.safetensors"), func(ts []safetensors.Data) []safetensors.Data {
		var out []safetensors.Data
		for _, d := range ts {
			if d.Name != "model.big.weight" {
				out = append(out, d)
			}
		}
		return out
	})
	res = runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "c"), DType: tensor.F16})
	if got := readOutput(t, res.Dir)["model.norm.weight"].floats(t); !math.IsInf(float64(got[1]), -1) || got[2] != 2 {
		t.Errorf("norm in fp16: %v", got)
	}
}
