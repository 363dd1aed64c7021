package export

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/safetensors"
	"github.com/hubsync/hubsync/internal/tensor"
)

const gb = 1_000_000_000

// u8 is a U8 tensor of n bytes (so sizes are easy to state).
func u8(name string, n int64) TensorSpec {
	return TensorSpec{Name: name, DType: tensor.U8, Shape: []int64{n}}
}

// groupsOf lists each shard's tensor names, in state-dict order.
func groupsOf(p *ShardPlan) [][]string {
	var out [][]string
	for _, s := range p.Shards {
		var names []string
		for _, t := range s.Tensors {
			names = append(names, t.Name)
		}
		out = append(out, names)
	}
	return out
}

func TestPlanShardsMatchesHub(t *testing.T) {
	tests := []struct {
		name    string
		tensors []TensorSpec
		max     int64
		want    [][]string
		files   []string
	}{
		{
			name:    "oversized tensor shards first (model-formats §2.5)",
			tensors: []TensorSpec{u8("a", 1*gb), u8("BIG", 6*gb), u8("b", 1*gb)},
			max:     5 * gb,
			want:    [][]string{{"BIG"}, {"a", "b"}},
			files:   []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"},
		},
		{
			name:    "exact fit stays in one shard (strict >)",
			tensors: []TensorSpec{u8("a", 3), u8("b", 2), u8("c", 5), u8("d", 1)},
			max:     5,
			want:    [][]string{{"a", "b"}, {"c"}, {"d"}},
		},
		{
			name:    "one byte over closes the shard",
			tensors: []TensorSpec{u8("a", 3), u8("b", 3)},
			max:     5,
			want:    [][]string{{"a"}, {"b"}},
		},
		{
			name:    "single oversized tensor is model.safetensors",
			tensors: []TensorSpec{u8("w", 10)},
			max:     5,
			want:    [][]string{{"w"}},
			files:   []string{"model.safetensors"},
		},
		{
			name:    "all tiny: one shard",
			tensors: []TensorSpec{u8("a", 1), u8("b", 1), u8("c", 1)},
			max:     5 * gb,
			want:    [][]string{{"a", "b", "c"}},
			files:   []string{"model.safetensors"},
		},
		{
			name: "zero-size tensors ride along and never split",
			tensors: []TensorSpec{u8("a", 5), {Name: "empty", DType: tensor.BF16, Shape: []int64{0, 7}},
				u8("b", 5), u8("z", 0)},
			max:  5,
			want: [][]string{{"a", "empty"}, {"b", "z"}},
		},
		{
			name: "oversized tensors interleaved with a filling shard",
			tensors: []TensorSpec{u8("a", 2), u8("B1", 9), u8("b", 2), u8("B2", 9), u8("c", 2),
				u8("d", 1)},
			max:  5,
			want: [][]string{{"B1"}, {"B2"}, {"a", "b"}, {"c", "d"}},
		},
		{
			name: "dtype sizes: bf16 [2,3] = 12 bytes, f32 scalar = 4 bytes, f4 [6] = 3 bytes",
			tensors: []TensorSpec{{Name: "x", DType: tensor.BF16, Shape: []int64{2, 3}},
				{Name: "s", DType: tensor.F32, Shape: []int64{}}, {Name: "q", DType: tensor.F4, Shape: []int64{6}}},
			max:  15,
			want: [][]string{{"x"}, {"s", "q"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PlanShards(tt.tensors, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if got := groupsOf(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("groups = %v, want %v", got, tt.want)
			}
			if tt.files != nil {
				var files []string
				for _, s := range p.Shards {
					files = append(files, s.FileName)
				}
				if !reflect.DeepEqual(files, tt.files) {
					t.Errorf("files = %v, want %v", files, tt.files)
				}
			}
			var total int64
			for _, ts := range tt.tensors {
				total += ts.Size()
			}
			if p.TotalSize != total {
				t.Errorf("TotalSize = %d, want %d", p.TotalSize, total)
			}
			checkLayouts(t, p)
		})
	}
}

// checkLayouts verifies that every shard's planned header parses as a valid safetensors header describing
// exactly the shard's tensors with {"format":"pt"}.
func checkLayouts(t *testing.T, p *ShardPlan) {
	t.Helper()
	for _, s := range p.Shards {
		h, err := safetensors.ParseHeader(s.Layout.Header[8:], s.Layout.Size)
		if err != nil {
			t.Fatalf("%s: planned header does not parse: %v", s.FileName, err)
		}
		if h.Metadata["format"] != "pt" || len(h.Metadata) != 1 {
			t.Errorf("%s: metadata = %v", s.FileName, h.Metadata)
		}
		if len(h.Tensors) != len(s.Tensors) {
			t.Fatalf("%s: header has %d tensors, shard %d", s.FileName, len(h.Tensors), len(s.Tensors))
		}
		for _, ts := range s.Tensors {
			ti, ok := h.Lookup(ts.Name)
			if !ok || ti.DType != ts.DType || !tensor.EqualShapes(ti.Shape, ts.Shape) || ti.Size() != ts.Size() {
				t.Errorf("%s: tensor %q planned as %+v", s.FileName, ts.Name, ti)
			}
		}
	}
}

// hubSplit is an independent statement of huggingface_hub's rule used to cross-check PlanShards on random
// inputs: it builds the list of shards by simulation, tracking the shard being filled separately.
func hubSplit(sizes []int64, max int64) [][]int {
	var shards [][]int
	var cur []int
	var curSize int64
	for i, s := range sizes {
		switch {
		case s > max:
			shards = append(shards, []int{i})
		case curSize+s > max:
			shards = append(shards, cur)
			cur, curSize = []int{i}, s
		default:
			cur = append(cur, i)
			curSize += s
		}
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards
}

func TestPlanShardsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 500 {
		n := 1 + rng.IntN(40)
		max := int64(1 + rng.IntN(100))
		specs := make([]TensorSpec, n)
		sizes := make([]int64, n)
		for i := range specs {
			sizes[i] = int64(rng.IntN(int(max) * 3 / 2))
			if rng.IntN(10) == 0 {
				sizes[i] = 0
			}
			specs[i] = u8(fmt.Sprintf("t%03d", i), sizes[i])
		}
		p, err := PlanShards(specs, max)
		if err != nil {
			t.Fatal(err)
		}
		want := hubSplit(sizes, max)
		got := groupsOf(p)
		if len(got) != len(want) {
			t.Fatalf("iter %d: %d shards, want %d (sizes %v, max %d)", iter, len(got), len(want), sizes, max)
		}
		for i := range want {
			var w []string
			for _, j := range want[i] {
				w = append(w, specs[j].Name)
			}
			if !reflect.DeepEqual(got[i], w) {
				t.Fatalf("iter %d shard %d = %v, want %v", iter, i, got[i], w)
			}
			var sz int64
			for _, ts := range p.Shards[i].Tensors {
				sz += ts.Size()
			}
			if sz > max && len(p.Shards[i].Tensors) != 1 {
				t.Fatalf("iter %d: multi-tensor shard of %d bytes exceeds %d", iter, sz, max)
			}
			if p.Shards[i].FileName != ShardFileName(i, len(want)) {
				t.Fatalf("iter %d: shard %d named %s", iter, i, p.Shards[i].FileName)
			}
		}
	}
}

func TestShardFileNames(t *testing.T) {
	var specs []TensorSpec
	for i := range 12 {
		specs = append(specs, u8(fmt.Sprintf("w%d", i), 10))
	}
	p, err := PlanShards(specs, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Shards) != 12 {
		t.Fatalf("%d shards", len(p.Shards))
	}
	for i, s := range p.Shards {
		want := fmt.Sprintf("model-%05d-of-00012.safetensors", i+1)
		if s.FileName != want {
			t.Errorf("shard %d = %s, want %s", i, s.FileName, want)
		}
	}
	if got := ShardFileName(99998, 100000); got != "model-99999-of-100000.safetensors" {
		t.Errorf("wide name = %s", got)
	}
}

func TestPlanShardsErrors(t *testing.T) {
	tests := []struct {
		name    string
		tensors []TensorSpec
		max     int64
		want    string
	}{
		{"no tensors", nil, 10, "no tensors"},
		{"zero max", []TensorSpec{u8("a", 1)}, 0, "positive"},
		{"duplicate", []TensorSpec{u8("a", 1), u8("a", 1)}, 10, `duplicate tensor name "a"`},
		{"empty name", []TensorSpec{u8("", 1)}, 10, "invalid tensor name"},
		{"metadata name", []TensorSpec{u8("__metadata__", 1)}, 10, "invalid tensor name"},
		{"negative dim", []TensorSpec{{Name: "a", DType: tensor.F32, Shape: []int64{-1}}}, 10, `tensor "a"`},
		{"invalid dtype", []TensorSpec{{Name: "a", Shape: []int64{1}}}, 10, `tensor "a"`},
		{"overflow", []TensorSpec{{Name: "a", DType: tensor.F64, Shape: []int64{1 << 31, 1 << 31}}}, 10, `tensor "a"`},
		{"odd f4", []TensorSpec{{Name: "a", DType: tensor.F4, Shape: []int64{3}}}, 10, `"a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PlanShards(tt.tensors, tt.max)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestTensorSpecSize(t *testing.T) {
	tests := []struct {
		spec TensorSpec
		want int64
	}{
		{TensorSpec{DType: tensor.BF16, Shape: []int64{4096, 4096}}, 4096 * 4096 * 2},
		{TensorSpec{DType: tensor.F32, Shape: nil}, 4},
		{TensorSpec{DType: tensor.U8, Shape: []int64{3, 0}}, 0},
		{TensorSpec{DType: tensor.F4, Shape: []int64{5}}, 3},
		{TensorSpec{DType: tensor.Invalid, Shape: []int64{5}}, -1},
		{TensorSpec{DType: tensor.U8, Shape: []int64{-5}}, -1},
		{TensorSpec{DType: tensor.F64, Shape: []int64{1 << 60}}, -1},
	}
	for _, tt := range tests {
		if got := tt.spec.Size(); got != tt.want {
			t.Errorf("%s %v: Size = %d, want %d", tt.spec.DType, tt.spec.Shape, got, tt.want)
		}
	}
}

func TestIndexJSONGolden(t *testing.T) {
	specs := []TensorSpec{
		{Name: "model.embed_tokens.weight", DType: tensor.BF16, Shape: []int64{8, 4}},         // 64 bytes
		{Name: "model.layers.0.mlp.up_proj.weight", DType: tensor.BF16, Shape: []int64{4, 4}}, // 32
		{Name: "model.norm.weight", DType: tensor.F32, Shape: []int64{4}},                     // 16
		{Name: "lm_head.weight", DType: tensor.BF16, Shape: []int64{8, 4}},                    // 64
		{Name: "odd\"name\u00e9\U0001F600<&>", DType: tensor.U8, Shape: []int64{3}},           // 3
	}
	p, err := PlanShards(specs, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.IndexJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Produced by Python: json.dumps(index, indent=2, sort_keys=True) + "\n" (transformers' save_pretrained).
	want := `{
  "metadata": {
    "total_parameters": 87,
    "total_size": 179
  },
  "weight_map": {
    "lm_head.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
    "model.norm.weight": "model-00002-of-00002.safetensors",
    "odd\"name\u00e9\ud83d\ude00<&>": "model-00002-of-00002.safetensors"
  }
}
`
	if string(got) != want {
		t.Errorf("IndexJSON =\n%s\nwant\n%s", got, want)
	}
	p.TotalParameters = 0
	got, _ = p.IndexJSON()
	if strings.Contains(string(got), "total_parameters") || !strings.Contains(string(got), "\"metadata\": {\n    \"total_size\": 179\n  },") {
		t.Errorf("without parameters:\n%s", got)
	}

	single, err := PlanShards(specs[:2], 5*gb)
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := single.IndexJSON(); idx != nil || err != nil {
		t.Errorf("single shard index = %q, %v; want nil", idx, err)
	}
}
