package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
)

// expectedQuantKeys lists the §3.2 keys of a 4-bit weight with n elements, written independently of QuantTensors.
func expectedQuantKeys(s BaseSpec, w string, n int64) map[string]struct {
	dt    tensor.DType
	shape []int64
} {
	type ent = struct {
		dt    tensor.DType
		shape []int64
	}
	nb := (n + int64(s.Blocksize) - 1) / int64(s.Blocksize)
	item := int64(s.QuantStorage.Size())
	m := map[string]ent{
		w:                {s.QuantStorage, []int64{(n + 1) / (2 * item), 1}},
		w + ".quant_map": {tensor.F32, []int64{16}},
		w + ".quant_state.bitsandbytes__" + string(s.Quant): {tensor.U8, nil}, // length checked separately
	}
	if s.DoubleQuant {
		m[w+".absmax"] = ent{tensor.U8, []int64{nb}}
		m[w+".nested_absmax"] = ent{tensor.F32, []int64{(nb + 255) / 256}}
		m[w+".nested_quant_map"] = ent{tensor.F32, []int64{256}}
	} else {
		m[w+".absmax"] = ent{tensor.F32, []int64{nb}}
	}
	return m
}

func TestGenerateBase(t *testing.T) {
	with := func(s BaseSpec, f func(*BaseSpec)) BaseSpec { f(&s); return s }
	cases := []struct {
		name string
		spec BaseSpec
	}{
		{"tiny-llama", Tiny(ArchLlama)},
		{"tiny-qwen2-bias-tied", Tiny(ArchQwen2)},
		{"awkward-llama-odd", Awkward(ArchLlama)},
		{"awkward-qwen2-fp4-f16", with(Awkward(ArchQwen2), func(s *BaseSpec) {
			s.Quant, s.DoubleQuant, s.DType = QuantFP4, false, tensor.F16
		})},
		{"tiny-mistral-f32-bs32", with(Tiny(ArchMistral), func(s *BaseSpec) {
			s.DType, s.DoubleQuant, s.Blocksize = tensor.F32, false, 32
		})},
		{"tiny-llama-bs4096", with(Tiny(ArchLlama), func(s *BaseSpec) { s.Blocksize = 4096 })},
		{"tiny-llama-bias-fp4-dq", with(Tiny(ArchLlama), func(s *BaseSpec) { s.Bias, s.Quant = true, QuantFP4 })},
		{"storage-bf16", with(Tiny(ArchLlama), func(s *BaseSpec) { s.QuantStorage = tensor.BF16 })},
		{"storage-f32", with(Tiny(ArchLlama), func(s *BaseSpec) { s.QuantStorage = tensor.F32 })},
		{"skip-modules", with(Tiny(ArchLlama), func(s *BaseSpec) {
			s.SkipModules = []string{"down_proj", "layers.1.self_attn.q_proj"}
		})},
		{"16bit-fan-in-fan-out", with(Tiny(ArchLlama), func(s *BaseSpec) {
			s.Quant, s.DoubleQuant, s.FanInFanOut = QuantNone, false, true
		})},
		{"16bit-qwen2-f16", with(Awkward(ArchQwen2), func(s *BaseSpec) {
			s.Quant, s.DoubleQuant, s.DType = QuantNone, false, tensor.F16
		})},
		{"sharded", with(Tiny(ArchLlama), func(s *BaseSpec) { s.ShardSize = 3000 })},
		{"fast-dq", with(Awkward(ArchLlama), func(s *BaseSpec) { s.FastRandomCodes = true })},
		{"fast-nodq", with(Tiny(ArchQwen2), func(s *BaseSpec) { s.FastRandomCodes, s.DoubleQuant = true, false })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			info, err := GenerateBase(context.Background(), dir, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			checkBase(t, info)
			again, err := LoadBaseInfo(dir)
			if err != nil {
				t.Fatal(err)
			}
			again.Dir = info.Dir
			if a, b := mustJSON(t, again), mustJSON(t, info); a != b {
				t.Errorf("LoadBaseInfo differs from GenerateBase's info")
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkBase checks a generated base against its spec, independently of the planner where it can.
func checkBase(t *testing.T, info *BaseInfo) {
	t.Helper()
	s := info.Spec
	files := openAll(t, info)
	// Expected keys, derived from the architecture here.
	type ent = struct {
		dt    tensor.DType
		shape []int64
	}
	want := map[string]ent{}
	h, inter := int64(s.Hidden), int64(s.Intermediate)
	qd, kvd := int64(s.Heads*s.HeadDim), int64(s.KVHeads*s.HeadDim)
	add := func(name string, shape []int64, quantizable bool) {
		if quantizable && s.Quant != QuantNone && !skipped(strings.TrimSuffix(name, ".weight"), s.SkipModules) {
			n := shape[0] * shape[1]
			for k, v := range expectedQuantKeys(s, name, n) {
				want[k] = v
			}
			return
		}
		if s.FanInFanOut && len(shape) == 2 && quantizable {
			shape = []int64{shape[1], shape[0]}
		}
		want[name] = ent{s.DType, shape}
	}
	add("model.embed_tokens.weight", []int64{int64(s.Vocab), h}, false)
	for l := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"self_attn.q_proj.weight", []int64{qd, h}, true)
		add(p+"self_attn.k_proj.weight", []int64{kvd, h}, true)
		add(p+"self_attn.v_proj.weight", []int64{kvd, h}, true)
		add(p+"self_attn.o_proj.weight", []int64{h, qd}, true)
		add(p+"mlp.gate_proj.weight", []int64{inter, h}, true)
		add(p+"mlp.up_proj.weight", []int64{inter, h}, true)
		add(p+"mlp.down_proj.weight", []int64{h, inter}, true)
		add(p+"input_layernorm.weight", []int64{h}, false)
		add(p+"post_attention_layernorm.weight", []int64{h}, false)
		if s.Bias {
			add(p+"self_attn.q_proj.bias", []int64{qd}, false)
			add(p+"self_attn.k_proj.bias", []int64{kvd}, false)
			add(p+"self_attn.v_proj.bias", []int64{kvd}, false)
			if s.Arch == ArchLlama {
				add(p+"self_attn.o_proj.bias", []int64{h}, false)
			}
		}
	}
	add("model.norm.weight", []int64{h}, false)
	if !s.Tied {
		add("lm_head.weight", []int64{int64(s.Vocab), h}, false)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) != len(want) {
		t.Errorf("%d tensors written, want %d", len(names), len(want))
	}
	for name, w := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if got.ti.DType != w.dt || (w.shape != nil && !slices.Equal(got.ti.Shape, w.shape)) {
			t.Errorf("%s: %s %v, want %s %v", name, got.ti.DType, got.ti.Shape, w.dt, w.shape)
		}
	}
	// Values.
	for _, wt := range info.Weights {
		n, _ := tensor.NumElements(wt.Shape)
		if !wt.Quantized {
			e := files[wt.Name]
			got := floats(t, e.ti.DType, e.read(t))
			kind := valWeight
			switch {
			case strings.HasSuffix(wt.Name, ".bias"):
				kind = valBias
			case strings.Contains(wt.Name, "norm"):
				kind = valNorm
			}
			src := streamValues(s.weightStream(wt.Name, kind), n)
			for i := range got {
				if got[i] != tensor.RoundTo(s.DType, src[i]) || src[i] == 0 {
					t.Fatalf("%s[%d] = %v, source %v", wt.Name, i, got[i], src[i])
				}
			}
			if kind == valNorm && math.Abs(float64(got[0])-1) > 0.5 {
				t.Errorf("%s: norm weight %v is not near 1", wt.Name, got[0])
			}
			continue
		}
		checkQuantWeight(t, s, wt, n, files)
	}
	// config.json
	var cfg map[string]any
	data, err := os.ReadFile(filepath.Join(info.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"model_type": string(s.Arch), "hidden_size": float64(s.Hidden),
		"intermediate_size": float64(s.Intermediate), "num_hidden_layers": float64(s.Layers),
		"num_attention_heads": float64(s.Heads), "num_key_value_heads": float64(s.KVHeads),
		"vocab_size": float64(s.Vocab), "tie_word_embeddings": s.Tied, "torch_dtype": s.DType.TorchName()} {
		if cfg[k] != v {
			t.Errorf("config %s = %v, want %v", k, cfg[k], v)
		}
	}
	if hd, ok := cfg["head_dim"]; (s.HeadDim*s.Heads != s.Hidden) != ok || ok && hd != float64(s.HeadDim) {
		t.Errorf("config head_dim = %v (present %v)", hd, ok)
	}
	qc, hasQC := cfg["quantization_config"].(map[string]any)
	if hasQC != (s.Quant != QuantNone) {
		t.Errorf("quantization_config present = %v", hasQC)
	}
	if hasQC {
		if len(qc) != 13 || qc["bnb_4bit_quant_type"] != string(s.Quant) ||
			qc["bnb_4bit_use_double_quant"] != s.DoubleQuant || qc["quant_method"] != "bitsandbytes" ||
			qc["bnb_4bit_quant_storage"] != s.QuantStorage.TorchName() || qc["load_in_4bit"] != true ||
			qc["bnb_4bit_compute_dtype"] != s.DType.TorchName() {
			t.Errorf("quantization_config %v", qc)
		}
	}
	for _, f := range []string{"generation_config.json", "tokenizer.json", "tokenizer_config.json",
		"special_tokens_map.json"} {
		data, err := os.ReadFile(filepath.Join(info.Dir, f))
		if err != nil || !json.Valid(data) {
			t.Errorf("%s: %v, valid %v", f, err, json.Valid(data))
		}
	}
	checkShards(t, info)
}

// checkQuantWeight checks a 4-bit weight's components and that it dequantizes to its source data.
func checkQuantWeight(t *testing.T, s BaseSpec, wt Weight, n int64, files map[string]fileTensor) {
	t.Helper()
	blob := files[wt.Name+".quant_state.bitsandbytes__"+string(s.Quant)].read(t)
	prefix := fmt.Sprintf(`{"quant_type": "%s", "blocksize": %d, "dtype": "%s", "shape": [%d, %d]`, s.Quant,
		s.Blocksize, s.DType.TorchName(), wt.Shape[0], wt.Shape[1])
	if !strings.HasPrefix(string(blob), prefix) {
		t.Fatalf("%s: blob %s, want prefix %s", wt.Name, blob, prefix)
	}
	rest := strings.TrimPrefix(string(blob), prefix)
	qs, err := ParseQuantState(blob)
	if err != nil {
		t.Fatal(err)
	}
	if s.DoubleQuant {
		const mid = `, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": `
		if !strings.HasPrefix(rest, mid) || !strings.HasSuffix(rest, "}") || !qs.Nested {
			t.Fatalf("%s: blob %s", wt.Name, blob)
		}
	} else if rest != "}" {
		t.Fatalf("%s: blob %s", wt.Name, blob)
	}
	cb := Codebook(s.Quant)
	if got := f32s(files[wt.Name+".quant_map"].read(t)); !slices.Equal(got, cb[:]) {
		t.Errorf("%s: quant_map %v", wt.Name, got)
	}
	packed := files[wt.Name].read(t)
	if int64(len(packed)) != (n+1)/2 {
		t.Fatalf("%s: %d packed bytes for %d elements", wt.Name, len(packed), n)
	}
	if n%2 == 1 && packed[len(packed)-1]&0x0F != newQuantizer(s.Quant, s.Blocksize).code(0) {
		t.Errorf("%s: pad nibble %x is not the code of 0", wt.Name, packed[len(packed)-1]&0x0F)
	}
	var scales []float32
	if s.DoubleQuant {
		dm := DynamicMap()
		if got := f32s(files[wt.Name+".nested_quant_map"].read(t)); !slices.Equal(got, dm[:]) {
			t.Errorf("%s: nested_quant_map differs from the dynamic map", wt.Name)
		}
		nq := NestedQuant{Codes: files[wt.Name+".absmax"].read(t),
			Absmax: f32s(files[wt.Name+".nested_absmax"].read(t)), Offset: qs.NestedOffset}
		scales = nq.Scales()
	} else {
		scales = f32s(files[wt.Name+".absmax"].read(t))
	}
	deq := Dequantize4Bit(s.Quant, s.Blocksize, packed, scales, int(n))
	if s.FastRandomCodes {
		for b, sc := range scales {
			if !(sc > 0 && sc < 0.2) {
				t.Fatalf("%s: fast-mode scale %d = %v is not plausible", wt.Name, b, sc)
			}
		}
		for _, v := range deq {
			if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 0.2 {
				t.Fatalf("%s: fast-mode value %v", wt.Name, v)
			}
		}
		return
	}
	src := streamValues(s.weightStream(wt.Name, valWeight), n)
	bs := int64(s.Blocksize)
	trueMax := make([]float32, len(scales))
	var sum float64
	for b := range trueMax {
		for _, v := range src[int64(b)*bs : min(n, int64(b+1)*bs)] {
			if v == 0 {
				t.Fatalf("%s: zero in the source data", wt.Name)
			}
			trueMax[b] = max(trueMax[b], float32(math.Abs(float64(v))))
		}
		sum += float64(trueMax[b])
		if !s.DoubleQuant && scales[b] != trueMax[b] {
			t.Fatalf("%s: absmax[%d] = %v, block max %v", wt.Name, b, scales[b], trueMax[b])
		}
	}
	if s.DoubleQuant {
		mean := sum / float64(len(trueMax))
		if math.Abs(float64(qs.NestedOffset)-mean) > mean*1e-7 {
			t.Errorf("%s: nested_offset %v, mean absmax %v", wt.Name, qs.NestedOffset, mean)
		}
	}
	for k, x := range src {
		a := trueMax[int64(k)/bs]
		sc := scales[int64(k)/bs]
		bound := float64(a)*(nearestDist(cb[:], x/a)+2e-7) + math.Abs(float64(a-sc)) + 1e-9
		if d := math.Abs(float64(x) - float64(deq[k])); d > bound {
			t.Fatalf("%s[%d]: source %v dequantizes to %v (error %g > %g)", wt.Name, k, x, deq[k], d, bound)
		}
	}
}

// checkShards checks the shard files and the index.
func checkShards(t *testing.T, info *BaseInfo) {
	t.Helper()
	idxPath := filepath.Join(info.Dir, "model.safetensors.index.json")
	_, err := os.Stat(idxPath)
	if !info.Indexed {
		if !os.IsNotExist(err) || !slices.Equal(info.Files, []string{"model.safetensors"}) {
			t.Errorf("unsharded base: files %v, index stat %v", info.Files, err)
		}
		return
	}
	files := openAll(t, info)
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	data, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	var total int64
	perFile := map[string]int64{}
	modsPerFile := map[string]map[string]bool{}
	for name, ft := range files {
		total += ft.ti.Size()
		file := filepath.Base(ft.f.Path)
		perFile[file] += ft.ti.Size()
		if idx.WeightMap[name] != file {
			t.Errorf("index maps %s to %q, it is in %s", name, idx.WeightMap[name], file)
		}
		tt, _ := info.Tensor(name)
		w, _ := info.Weight(tt.Weight)
		if modsPerFile[file] == nil {
			modsPerFile[file] = map[string]bool{}
		}
		modsPerFile[file][w.Module] = true
	}
	if len(idx.WeightMap) != len(files) || idx.Metadata["total_size"] != total || total != info.TotalSize {
		t.Errorf("index: %d keys for %d tensors, total_size %d, data %d, planned %d", len(idx.WeightMap),
			len(files), idx.Metadata["total_size"], total, info.TotalSize)
	}
	for i, f := range info.Files {
		if want := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(info.Files)); f != want {
			t.Errorf("shard %d named %s", i, f)
		}
		if perFile[f] > info.Spec.ShardSize && len(modsPerFile[f]) != 1 {
			t.Errorf("%s holds %d bytes of %d modules, over the %d limit", f, perFile[f], len(modsPerFile[f]),
				info.Spec.ShardSize)
		}
	}
	// Every module's tensors are in one file.
	where := map[string]string{}
	for name, ft := range files {
		tt, _ := info.Tensor(name)
		w, _ := info.Weight(tt.Weight)
		if prev, ok := where[w.Module]; ok && prev != ft.f.Path {
			t.Errorf("module %s is split across %s and %s", w.Module, prev, ft.f.Path)
		}
		where[w.Module] = ft.f.Path
	}
}

func TestPlanLlama3_8B(t *testing.T) {
	s := Llama3_8B()
	s.FastRandomCodes = true // planning then draws offsets without a pass over 8 billion values
	info, err := PlanBase(s)
	if err != nil {
		t.Fatal(err)
	}
	// model-formats.md §3.2 / §7.2.
	want := map[string][]int64{
		"model.layers.0.self_attn.q_proj.weight":                  {8388608, 1},
		"model.layers.0.self_attn.q_proj.weight.absmax":           {262144},
		"model.layers.0.self_attn.q_proj.weight.nested_absmax":    {1024},
		"model.layers.0.self_attn.q_proj.weight.quant_map":        {16},
		"model.layers.0.self_attn.q_proj.weight.nested_quant_map": {256},
		"model.layers.5.self_attn.k_proj.weight":                  {2097152, 1},
		"model.layers.5.self_attn.v_proj.weight.absmax":           {65536},
		"model.layers.5.self_attn.v_proj.weight.nested_absmax":    {256},
		"model.layers.31.mlp.gate_proj.weight":                    {29360128, 1},
		"model.layers.31.mlp.up_proj.weight.absmax":               {917504},
		"model.layers.31.mlp.down_proj.weight.nested_absmax":      {3584},
		"model.embed_tokens.weight":                               {128256, 4096},
		"lm_head.weight":                                          {128256, 4096},
		"model.norm.weight":                                       {4096},
	}
	for name, shape := range want {
		tt, ok := info.Tensor(name)
		if !ok || !slices.Equal(tt.Shape, shape) {
			t.Errorf("%s: %v (present %v), want %v", name, tt.Shape, ok, shape)
		}
	}
	if tt, _ := info.Tensor("model.layers.0.self_attn.q_proj.weight.absmax"); tt.DType != tensor.U8 {
		t.Errorf("double-quant absmax dtype %s", tt.DType)
	}
	if len(info.Tensors) != 1411 {
		t.Errorf("%d keys, want 1411", len(info.Tensors))
	}
	var params int64
	for _, w := range info.Weights {
		n, _ := tensor.NumElements(w.Shape)
		params += n
	}
	if params != 8030261248 {
		t.Errorf("%d parameters, want 8030261248", params)
	}
	if q := info.QuantizedWeights(); len(q) != 32*7 {
		t.Errorf("%d 4-bit weights", len(q))
	}
}

func TestTinyLlamaPreset(t *testing.T) {
	s := TinyLlama()
	s.FastRandomCodes = true
	info, err := PlanBase(s)
	if err != nil {
		t.Fatal(err)
	}
	var params int64
	for _, w := range info.Weights {
		n, _ := tensor.NumElements(w.Shape)
		params += n
	}
	if params != 1100048384 { // TinyLlama-1.1B
		t.Errorf("%d parameters", params)
	}
	if tt, _ := info.Tensor("model.layers.21.self_attn.k_proj.weight"); !slices.Equal(tt.Shape, []int64{256 * 2048 / 2, 1}) {
		t.Errorf("k_proj packed shape %v", tt.Shape)
	}
}

func TestGenerateBaseDeterministic(t *testing.T) {
	dir := t.TempDir()
	gen := func(name string, s BaseSpec) []byte {
		info, err := GenerateBase(context.Background(), filepath.Join(dir, name), s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(info.Dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := gen("a", Awkward(ArchLlama)), gen("b", Awkward(ArchLlama))
	if !bytes.Equal(a, b) {
		t.Error("same spec, different files")
	}
	s := Awkward(ArchLlama)
	s.Seed++
	if bytes.Equal(a, gen("c", s)) {
		t.Error("different seeds, same files")
	}
}

func TestQuantStorageReinterpretsBytes(t *testing.T) {
	dir := t.TempDir()
	read := func(st tensor.DType) (fileTensor, []byte) {
		s := Tiny(ArchLlama)
		s.QuantStorage = st
		info, err := GenerateBase(context.Background(), filepath.Join(dir, st.String()), s)
		if err != nil {
			t.Fatal(err)
		}
		ft := openAll(t, info)["model.layers.1.mlp.up_proj.weight"]
		return ft, ft.read(t)
	}
	_, u8 := read(tensor.U8)
	for _, st := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		ft, b := read(st)
		n := int64(100 * 40)
		if ft.ti.DType != st || !slices.Equal(ft.ti.Shape, []int64{(n + 1) / (2 * int64(st.Size())), 1}) {
			t.Errorf("%s storage: %s %v", st, ft.ti.DType, ft.ti.Shape)
		}
		if !bytes.Equal(b, u8) {
			t.Errorf("%s storage: bytes differ from uint8 storage", st)
		}
	}
	// Awkward's 925-element weights pack into 463 bytes: not a whole number of 2-byte items.
	s := Awkward(ArchLlama)
	s.QuantStorage = tensor.BF16
	if _, err := GenerateBase(context.Background(), filepath.Join(dir, "bad"), s); err == nil ||
		!strings.Contains(err.Error(), "quant storage") {
		t.Errorf("error %v", err)
	}
}

func TestGenerateBaseErrors(t *testing.T) {
	with := func(f func(*BaseSpec)) BaseSpec { s := Tiny(ArchLlama); f(&s); return s }
	cases := []struct {
		name string
		spec BaseSpec
		msg  string
	}{
		{"arch", with(func(s *BaseSpec) { s.Arch = "gpt2" }), "architecture"},
		{"blocksize", with(func(s *BaseSpec) { s.Blocksize = 48 }), "block size"},
		{"blocksize small", with(func(s *BaseSpec) { s.Blocksize = 16 }), "block size"},
		{"dims", with(func(s *BaseSpec) { s.Hidden = 0 }), "positive"},
		{"kv heads", with(func(s *BaseSpec) { s.KVHeads = 3 }), "KV heads"},
		{"head dim", with(func(s *BaseSpec) { s.HeadDim, s.Hidden = 0, 41 }), "HeadDim"},
		{"dtype", with(func(s *BaseSpec) { s.DType = tensor.I32 }), "dtype"},
		{"quant", with(func(s *BaseSpec) { s.Quant = "int8" }), "quantization"},
		{"storage", with(func(s *BaseSpec) { s.QuantStorage = tensor.I64 }), "quant storage"},
		{"mistral bias", with(func(s *BaseSpec) { s.Arch, s.Bias = ArchMistral, true }), "bias"},
		{"fifo 4bit", with(func(s *BaseSpec) { s.FanInFanOut = true }), "16-bit"},
		{"dq 16bit", with(func(s *BaseSpec) { s.Quant = QuantNone }), "DoubleQuant"},
		{"shard", with(func(s *BaseSpec) { s.ShardSize = -1 }), "shard"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			_, err := GenerateBase(context.Background(), dir, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.msg)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a rejected spec created %s", dir)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := GenerateBase(ctx, dir, Tiny(ArchLlama)); err == nil {
			t.Fatal("no error")
		}
		if left := listFiles(t, dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

func TestLoadBaseInfoErrors(t *testing.T) {
	info := genBase(t, Tiny(ArchLlama))
	if _, err := LoadBaseInfo(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a generated base") {
		t.Errorf("empty dir: %v", err)
	}
	side := filepath.Join(info.Dir, SidecarFile)
	data, err := os.ReadFile(side)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, msg string }{
		{`"layers": 2`, `"layers": 3`, "no quant state"},
		{`"layers": 2`, `"layers": 1`, "files hold"},
		{`"blocksize": 64`, `"blocksize": 32`, "does not match"},
		{`"dtype": "BF16"`, `"dtype": "X"`, "dtype"},
		{`"arch": "llama"`, `"arch": "llama", "unknown": 1`, "unknown"},
	} {
		if err := os.WriteFile(side, bytes.Replace(data, []byte(tc.from), []byte(tc.to), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadBaseInfo(info.Dir); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s -> %s: %v", tc.from, tc.to, err)
		}
	}
}
