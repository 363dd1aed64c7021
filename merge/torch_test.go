package merge

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/internal/tensor"
	"github.com/hubsync/hubsync/internal/testmodel"
)

// TestMergeTorchZipMatchesSafetensors: an adapter_model.bin, a pytorch_model.bin base and a sharded
// pytorch_model-*.bin base (with pytorch_model.bin.index.json), written in torch.save's zip layout, merge to the
// same bytes as the same tensors in safetensors.
func TestMergeTorchZipMatchesSafetensors(t *testing.T) {
	sharded := testmodel.Tiny(testmodel.ArchLlama)
	sharded.ShardSize = 20000
	cases := []struct {
		name                  string
		c                     mergeCase
		convBase, convAdapter bool
	}{
		{"adapter-bin", mergeCase{base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{UseDoRA: true, TargetModules: testmodel.AllLinear(), Seed: 51}}, false, true},
		{"adapter-bin-modules-to-save-resized", mergeCase{base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{ModulesToSave: []string{"lm_head", "embed_tokens"}, ResizeVocab: 3, Seed: 52}}, false, true},
		{"base-bin-16bit", mergeCase{base: tiny16(testmodel.ArchQwen2, tensor.BF16), adapter: testmodel.AdapterSpec{LoRABias: true, TargetModules: []string{"q_proj"}, Seed: 53}}, true, false},
		{"base-bin-nf4-and-adapter-bin", mergeCase{base: tinyNF4(testmodel.ArchMistral), adapter: testmodel.AdapterSpec{Seed: 54}}, true, true},
		{"base-bin-sharded", mergeCase{base: sharded, adapter: testmodel.AdapterSpec{TargetModules: testmodel.AllLinear(), Seed: 55}}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			base, adapter := tc.c.generate(t, dir)
			wantDir := runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "want")}).Dir
			for _, conv := range []struct {
				dir string
				do  bool
			}{{base, tc.convBase}, {adapter, tc.convAdapter}} {
				if !conv.do {
					continue
				}
				if err := testmodel.ConvertToTorch(conv.dir); err != nil {
					t.Fatal(err)
				}
				if st, _ := filepath.Glob(filepath.Join(conv.dir, "*.safetensors*")); len(st) > 0 {
					t.Fatalf("safetensors files left: %v", st)
				}
				if bins, _ := filepath.Glob(filepath.Join(conv.dir, "*.bin")); len(bins) == 0 {
					t.Fatal("no .bin written")
				}
			}
			gotDir := runMergeT(t, Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "got")}).Dir
			want, got := readOutput(t, wantDir), readOutput(t, gotDir)
			if len(got) != len(want) {
				t.Errorf("%d tensors, want %d", len(got), len(want))
			}
			for n, w := range want {
				if g, ok := got[n]; !ok || g.DType != w.DType || !bytes.Equal(g.Raw, w.Raw) {
					t.Errorf("%s differs from the safetensors merge", n)
				}
			}
			for _, f := range []string{"config.json", "model.safetensors.index.json"} {
				a, errA := os.ReadFile(filepath.Join(wantDir, f))
				b, errB := os.ReadFile(filepath.Join(gotDir, f))
				if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
					t.Errorf("%s differs", f)
				}
			}
		})
	}
}

// writeTorchZipRaw writes a torch-layout zip whose data.pkl is pkl (and no storages).
func writeTorchZipRaw(t *testing.T, path string, pkl []byte) {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, data := range map[string][]byte{"adapter_model/data.pkl": pkl, "adapter_model/version": []byte("3\n")} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTorchZipRefusesCode: pickles that would run code (os.system through GLOBAL + REDUCE, builtins.eval via
// STACK_GLOBAL, an object built with NEWOBJ) are refused naming the global, before anything is called; a
// pre-1.6 (non-zip) torch file is refused with a clear message.
func TestTorchZipRefusesCode(t *testing.T) {
	cases := []struct {
		name string
		pkl  []byte
		want string
	}{
		{"os.system", []byte("\x80\x02cos\nsystem\nq\x00X\x08\x00\x00\x00touch /xq\x01\x85q\x02Rq\x03."), "os.system"},
		{"posix.system", []byte("cposix\nsystem\n(S'id'\ntR."), "posix.system"},
		{"builtins.eval stack global", []byte("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94."), "builtins.eval"},
		{"torch.load nested", []byte("\x80\x02ctorch\nload\nq\x00."), "torch.load"},
		{"newobj", []byte("\x80\x02ccollections\nOrderedDict\n)\x81."), "unsupported pickle opcode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mergeCase{base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 56}}
			dir := t.TempDir()
			base, adapter := c.generate(t, dir)
			os.Remove(filepath.Join(adapter, adapterWeightsFile))
			writeTorchZipRaw(t, filepath.Join(adapter, adapterPickleFile), tc.pkl)
			_, err := NewPlan(t.Context(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "out")})
			if err == nil || !IsBadInput(err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), adapterPickleFile) {
				t.Fatalf("want a bad-input error naming %s and %q, got %v", adapterPickleFile, tc.want, err)
			}
		})
	}
	t.Run("legacy format", func(t *testing.T) {
		c := mergeCase{base: tinyNF4(testmodel.ArchLlama), adapter: testmodel.AdapterSpec{Seed: 57}}
		dir := t.TempDir()
		base, adapter := c.generate(t, dir)
		os.Remove(filepath.Join(adapter, adapterWeightsFile))
		os.WriteFile(filepath.Join(adapter, adapterPickleFile), []byte("\x80\x02\x8a\x0all\xfc\x9cF\xf9 j\xa8P\x19."), 0o644)
		_, err := NewPlan(t.Context(), Options{Base: base, Adapter: adapter, Out: filepath.Join(dir, "out")})
		if err == nil || !IsBadInput(err) || !strings.Contains(err.Error(), "not a torch zip file") {
			t.Fatalf("got %v", err)
		}
	})
}
