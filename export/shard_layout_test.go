package export

import (
	"reflect"
	"testing"
)

func TestParseShardLayout(t *testing.T) {
	tests := []struct {
		in      string
		want    ShardLayout
		wantErr bool
	}{
		{"", ShardLayoutDelta, false},
		{"delta", ShardLayoutDelta, false},
		{"hf", ShardLayoutHF, false},
		{"HF", "", true},
		{"huggingface", "", true},
	}
	for _, tc := range tests {
		got, err := ParseShardLayout(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseShardLayout(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPlanShardGroups(t *testing.T) {
	tests := []struct {
		name   string
		groups [][]TensorSpec
		max    int64
		want   [][]string
		files  []string
	}{
		{
			name:   "groups never share a shard, even when all would fit in one",
			groups: [][]TensorSpec{{u8("a", 1), u8("b", 1)}, {u8("q", 1)}},
			max:    5 * gb,
			want:   [][]string{{"a", "b"}, {"q"}},
			files:  []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"},
		},
		{
			name:   "each group packed by the hub rule on its own",
			groups: [][]TensorSpec{{u8("a", 3), u8("b", 2), u8("c", 3)}, {u8("q", 1), u8("v", 4), u8("q2", 1)}},
			max:    5,
			want:   [][]string{{"a", "b"}, {"c"}, {"q", "v"}, {"q2"}},
		},
		{
			name:   "oversized tensor stays inside its group",
			groups: [][]TensorSpec{{u8("a", 1), u8("BIG", 9), u8("b", 1)}, {u8("q", 1)}},
			max:    5,
			want:   [][]string{{"BIG"}, {"a", "b"}, {"q"}},
		},
		{
			name:   "empty groups are skipped",
			groups: [][]TensorSpec{nil, {u8("a", 1)}, {}},
			max:    5,
			want:   [][]string{{"a"}},
			files:  []string{"model.safetensors"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanShardGroups(tc.groups, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if got := groupsOf(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("shards %v, want %v", got, tc.want)
			}
			if tc.files != nil {
				var names []string
				for _, s := range p.Shards {
					names = append(names, s.FileName)
				}
				if !reflect.DeepEqual(names, tc.files) {
					t.Errorf("files %v, want %v", names, tc.files)
				}
			}
			var total int64
			for _, g := range tc.groups {
				for _, s := range g {
					total += s.Size()
				}
			}
			if p.TotalSize != total {
				t.Errorf("total size %d, want %d", p.TotalSize, total)
			}
		})
	}
}

// TestPlanShardGroupsStableFirstGroup: the first group's shards (names, headers, sizes) do not depend on the
// second group's tensors, only on how many shards it makes.
func TestPlanShardGroupsStableFirstGroup(t *testing.T) {
	same := []TensorSpec{u8("embed", 4), u8("k", 2), u8("o", 2), u8("norm", 1)}
	a, err := PlanShardGroups([][]TensorSpec{same, {u8("q", 3), u8("v", 3)}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := PlanShardGroups([][]TensorSpec{same, {u8("q_proj", 5), u8("v_proj", 1)}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Shards) != 4 || len(b.Shards) != 4 {
		t.Fatalf("shard counts %d and %d, want 4", len(a.Shards), len(b.Shards))
	}
	for i := range 2 {
		if a.Shards[i].FileName != b.Shards[i].FileName || !reflect.DeepEqual(a.Shards[i].Layout, b.Shards[i].Layout) {
			t.Errorf("shard %d differs: %s %+v vs %s %+v", i, a.Shards[i].FileName, a.Shards[i].Layout, b.Shards[i].FileName, b.Shards[i].Layout)
		}
	}
}

func TestPlanShardGroupsErrors(t *testing.T) {
	for name, groups := range map[string][][]TensorSpec{
		"no tensors":             {nil, nil},
		"duplicate across group": {{u8("a", 1)}, {u8("a", 1)}},
		"metadata name":          {{u8("__metadata__", 1)}},
	} {
		if _, err := PlanShardGroups(groups, 5); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := PlanShardGroups([][]TensorSpec{{u8("a", 1)}}, 0); err == nil {
		t.Error("max 0: no error")
	}
}
