package ggml

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubsync/hubsync/interop/llamacpp"
)

// allTypes are the types Quantize supports.
var allTypes = []Type{F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K}

// oracleWidths are the row widths checked; 32 and 96 only for the 32-element and float types.
var oracleWidths = []int{32, 96, 256, 512, 4096}

// oracleRows is the number of rows of a case: at least 8, about 32Ki values.
func oracleRows(ncols int) int { return max(8, 32768/ncols) }

func f32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// TestQuantizeOracle compares Quantize with llama.cpp v0.5.0's ggml_quantize_chunk (through
// testdata/quantize_ref.py and ctypes) byte for byte, for every type, input family and row width. It also
// passes when built with GOAMD64=v3 (FMA available), which checks that no product was fused:
// GOAMD64=v3 go test -run Oracle ./internal/ggml.
func TestQuantizeOracle(t *testing.T) {
	o := llamacpp.Find(t)
	dir := t.TempDir()
	type job struct {
		name  string
		t     Type
		ncols int
		src   []float32
		out   string
	}
	var jobs []job
	var manifest strings.Builder
	add := func(name string, src []float32, ncols int, types []Type) {
		in := filepath.Join(dir, name+".f32")
		if err := os.WriteFile(in, f32Bytes(src), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, ty := range types {
			if ncols%ty.BlockElems() != 0 {
				continue
			}
			out := filepath.Join(dir, fmt.Sprintf("%s.%s", name, ty))
			jobs = append(jobs, job{name, ty, ncols, src, out})
			fmt.Fprintf(&manifest, "q %d %d %s %s\n", ty, ncols, in, out)
			// Dequantize is checked on the oracle's own bytes, so a quantizer bug cannot hide a decoder one.
			fmt.Fprintf(&manifest, "d %d %d %s %s.f32\n", ty, ncols, out, out)
		}
	}
	for mi, m := range matrices {
		for _, nc := range oracleWidths {
			r := rand.New(rand.NewPCG(uint64(mi), uint64(nc)))
			add(fmt.Sprintf("%s-%d", m.name, nc), m.gen(r, oracleRows(nc)*nc, nc), nc, allTypes)
		}
	}
	for _, nc := range []int{32, 256} {
		r := rand.New(rand.NewPCG(99, uint64(nc)))
		add(fmt.Sprintf("specials-%d", nc), specials(r, 64*nc, nc), nc, []Type{F32, F16, BF16})
	}
	mf := filepath.Join(dir, "manifest")
	if err := os.WriteFile(mf, []byte(manifest.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), o.Python, filepath.Join("testdata", "quantize_ref.py"), o.LibDir, mf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("quantize_ref.py: %v\n%s", err, out)
	}
	for _, j := range jobs {
		t.Run(j.name+"/"+j.t.String(), func(t *testing.T) {
			want, err := os.ReadFile(j.out)
			if err != nil {
				t.Fatal(err)
			}
			rs, _ := j.t.RowSize(j.ncols)
			got := make([]byte, len(j.src)/j.ncols*rs)
			if err := Quantize(j.t, got, j.src, j.ncols); err != nil {
				t.Fatal(err)
			}
			checkDequantize(t, j.t, want, j.out+".f32", j.ncols)
			if bytes.Equal(got, want) {
				return
			}
			if len(got) != len(want) {
				t.Fatalf("%d bytes, ggml wrote %d", len(got), len(want))
			}
			bb, be := j.t.BlockBytes(), j.t.BlockElems()
			bad := 0
			for b := 0; b < len(got)/bb; b++ {
				g, w := got[b*bb:(b+1)*bb], want[b*bb:(b+1)*bb]
				if bytes.Equal(g, w) {
					continue
				}
				if bad++; bad <= 3 {
					t.Errorf("block %d differs:\n got %x\nwant %x\n   x %v", b, g, w, j.src[b*be:(b+1)*be])
				}
			}
			t.Errorf("%d of %d blocks differ from ggml_quantize_chunk", bad, len(got)/bb)
		})
	}
}

// checkDequantize compares Dequantize of ggml's bytes q with ggml's own to_float output in file (bit for bit;
// NaN payloads may differ only for F16/BF16 NaNs, which both sides keep as NaN).
func checkDequantize(t *testing.T, ty Type, q []byte, file string, ncols int) {
	t.Helper()
	wantB, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(wantB)/4)
	if err := Dequantize(ty, got, q, ncols); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, g := range got {
		w := math.Float32frombits(binary.LittleEndian.Uint32(wantB[4*i:]))
		if math.Float32bits(g) == math.Float32bits(w) || (g != g && w != w) {
			continue
		}
		if bad++; bad <= 3 {
			t.Errorf("Dequantize value %d = %v (%#08x), ggml's to_float gives %v (%#08x)", i, g, math.Float32bits(g), w, math.Float32bits(w))
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d dequantized values differ from ggml's", bad, len(got))
	}
}
