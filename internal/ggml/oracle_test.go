package ggml

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
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

// job is one (case, type) pair of the oracle test; out is where the oracle wrote ggml's bytes.
type job struct {
	name  string
	t     Type
	ncols int
	src   []float32
	out   string
}

// oracleCase is one input matrix of the oracle and golden tests, quantized as each of types.
type oracleCase struct {
	name  string
	src   []float32
	ncols int
	types []Type
}

// oracleCases are every input family at every width, plus the float specials. Each has at least 8 rows and
// about 32Ki values; small (the oracle test under -race) cuts that to 2 rows and 1Ki values.
func oracleCases(small bool) []oracleCase {
	rows := func(ncols int) int { return max(8, 32768/ncols) }
	if small {
		rows = func(ncols int) int { return max(2, 1024/ncols) }
	}
	var cs []oracleCase
	for mi, m := range matrices {
		for _, nc := range oracleWidths {
			r := rand.New(rand.NewPCG(uint64(mi), uint64(nc)))
			var types []Type
			for _, ty := range allTypes {
				if nc%ty.BlockElems() == 0 {
					types = append(types, ty)
				}
			}
			cs = append(cs, oracleCase{fmt.Sprintf("%s-%d", m.name, nc), m.gen(r, rows(nc)*nc, nc), nc, types})
		}
	}
	for _, nc := range []int{32, 256} {
		r := rand.New(rand.NewPCG(99, uint64(nc)))
		cs = append(cs, oracleCase{fmt.Sprintf("specials-%d", nc), specials(r, 64*nc, nc), nc, []Type{F32, F16, BF16}})
	}
	return cs
}

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
	var jobs []job
	var manifest strings.Builder
	for _, c := range oracleCases(raceEnabled && !*updateGolden) {
		in := filepath.Join(dir, c.name+".f32")
		if err := os.WriteFile(in, f32Bytes(c.src), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, ty := range c.types {
			out := filepath.Join(dir, fmt.Sprintf("%s.%s", c.name, ty))
			jobs = append(jobs, job{c.name, ty, c.ncols, c.src, out})
			fmt.Fprintf(&manifest, "q %d %d %s %s\n", ty, c.ncols, in, out)
			// Dequantize is checked on the oracle's own bytes, so a quantizer bug cannot hide a decoder one.
			fmt.Fprintf(&manifest, "d %d %d %s %s.f32\n", ty, c.ncols, out, out)
		}
	}
	mf := filepath.Join(dir, "manifest")
	if err := os.WriteFile(mf, []byte(manifest.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), o.Python, filepath.Join("testdata", "quantize_ref.py"), o.LibDir, mf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("quantize_ref.py: %v\n%s", err, out)
	}
	if *updateGolden {
		writeGolden(t, jobs)
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

// goldenFile holds, for every oracle case and type, the SHA-256 of the input and of ggml's quantized bytes and
// dequantized values, so that TestQuantizeOracleGolden checks byte identity where the llama.cpp prebuilt cannot
// run (arm64, macOS, no npm). Regenerate with: go test ./internal/ggml -run 'Oracle$' -update-golden
const goldenFile = "testdata/ggml-v0.5.0.sha256"

var updateGolden = flag.Bool("update-golden", false, "rewrite "+goldenFile+" from the llama.cpp oracle")

// sha is the first 128 bits of b's SHA-256 in hex (plenty to tell byte-different outputs apart).
func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:16]) }

// canonicalNaN returns the float32 bytes with every NaN as 0x7FC00000: the bit pattern of a NaN produced by
// arithmetic is the hardware's (x86 0xFFC00000, arm64 0x7FC00000), not the algorithm's.
func canonicalNaN(b []byte) []byte {
	c := bytes.Clone(b)
	for i := 0; i+4 <= len(c); i += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(c[i:])); v != v {
			binary.LittleEndian.PutUint32(c[i:], 0x7FC00000)
		}
	}
	return c
}

func writeGolden(t *testing.T, jobs []job) {
	if raceEnabled {
		t.Fatal("-update-golden needs a build without -race")
	}
	var b strings.Builder
	b.WriteString("# case type, then the first 128 bits of the SHA-256 of: the float32 input, ggml_quantize_chunk's bytes, to_float's values (NaN canonical)\n")
	b.WriteString("# llama.cpp v0.5.0 (npm @node-llama-cpp/linux-x64@3.22.1); written by TestQuantizeOracle -update-golden\n")
	for _, j := range jobs {
		q, err := os.ReadFile(j.out)
		if err != nil {
			t.Fatal(err)
		}
		d, err := os.ReadFile(j.out + ".f32")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %s %s %s\n", j.name, j.t, sha(f32Bytes(j.src)), sha(q), sha(canonicalNaN(d)))
	}
	if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQuantizeOracleGolden checks Quantize and Dequantize against the recorded hashes of ggml's output for
// every oracle case, with no oracle installed: this is the byte-identity check on platforms the npm prebuilt
// does not cover (it passed under qemu-aarch64, where Go fuses multiply-adds by default). Under -race it checks
// the 256-wide cases only.
func TestQuantizeOracleGolden(t *testing.T) {
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type hashes struct{ in, q, d string }
	golden := map[string]hashes{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		if len(fs) != 5 {
			t.Fatalf("%s: bad line %q", goldenFile, sc.Text())
		}
		golden[fs[0]+"/"+fs[1]] = hashes{fs[2], fs[3], fs[4]}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range oracleCases(false) {
		if raceEnabled && c.ncols != 256 {
			continue
		}
		in := sha(f32Bytes(c.src))
		for _, ty := range c.types {
			key := c.name + "/" + ty.String()
			g, ok := golden[key]
			if !ok {
				t.Errorf("%s: not in %s (regenerate it)", key, goldenFile)
				continue
			}
			if g.in != in {
				// The generators use math/rand/v2's PCG and math's functions; if a Go release changed their
				// values, the recorded hashes no longer describe these inputs.
				t.Logf("%s: input differs from the recorded one; not checked", key)
				continue
			}
			q := quantizeAll(t, ty, c.src, c.ncols)
			y := make([]float32, len(c.src))
			if err := Dequantize(ty, y, q, c.ncols); err != nil {
				t.Fatal(err)
			}
			if sha(q) != g.q {
				t.Errorf("%s: quantized bytes differ from ggml's", key)
			}
			if sha(canonicalNaN(f32Bytes(y))) != g.d {
				t.Errorf("%s: dequantized values differ from ggml's", key)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no case could be checked: the inputs all differ from the recorded ones")
	}
}
