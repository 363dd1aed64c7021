package hubtest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateYAML(t *testing.T) {
	e := newEnv(t, testOptions())
	for _, tc := range []struct {
		name, content string
		status        int
		errs, warns   int
		errHas        string
	}{
		{"valid card", "---\nlicense: mit\ntags:\n- lora\nlibrary_name: peft\n---\n# Model\n", 200, 0, 0, ""},
		{"no front matter", "# Model\n", 200, 0, 1, ""},
		{"empty front matter", "---\n---\n# Model\n", 200, 0, 1, ""},
		{"CRLF", "---\r\nlicense: mit\r\n---\r\ntext", 200, 0, 0, ""},
		{"bad yaml", "---\nlicense: [mit\n---\n", 400, 1, 0, "Invalid YAML"},
		{"not a mapping", "---\n- a\n- b\n---\n", 400, 1, 0, "mapping"},
		{"tags of the wrong type", "---\ntags:\n  a: b\n---\n", 400, 1, 0, `"tags"`},
		{"license not a string", "---\nlicense:\n- mit\n---\n", 400, 1, 0, `"license"`},
		{"bad model-index", "---\nmodel-index: 3\n---\n", 400, 1, 0, "model-index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.api("POST", "/api/validate-yaml", aliceTok, map[string]any{"content": tc.content, "repoType": "model"}, tc.status)
			var got struct {
				Errors   []cardMessage `json:"errors"`
				Warnings []cardMessage `json:"warnings"`
			}
			r.json(t, &got)
			if len(got.Errors) != tc.errs || len(got.Warnings) != tc.warns {
				t.Fatalf("errors %v warnings %v; want %d and %d", got.Errors, got.Warnings, tc.errs, tc.warns)
			}
			if tc.errHas != "" && !strings.Contains(got.Errors[0].Message, tc.errHas) {
				t.Errorf("error %q does not mention %q", got.Errors[0].Message, tc.errHas)
			}
		})
	}
	e.api("POST", "/api/validate-yaml", "", map[string]any{"repoType": "model"}, 400)
	e.api("POST", "/api/validate-yaml", "", map[string]any{"content": "", "repoType": "bucket"}, 400)
}

// safetensorsFile builds a safetensors file with the given tensors (name → dtype, shape), zero data.
func safetensorsFile(t testing.TB, tensors map[string][2]any) []byte {
	t.Helper()
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for name, v := range tensors {
		shape := v[1].([]int)
		n := 1
		for _, d := range shape {
			n *= d
		}
		size := n * map[string]int{"F32": 4, "BF16": 2, "U8": 1}[v[0].(string)]
		hdr[name] = map[string]any{"dtype": v[0], "shape": shape, "data_offsets": []int{off, off + size}}
		off += size
	}
	j, _ := json.Marshal(hdr)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(j)))
	b.Write(j)
	b.Write(make([]byte, off))
	return b.Bytes()
}

func TestModelInfoCardAndSafetensors(t *testing.T) {
	e := newEnv(t, testOptions())
	e.createRepo(aliceTok, "", "m", false)
	card := []byte("---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n- merged\nbase_model: org/base\ndatasets: [d1]\n---\n# m\n")
	shard1 := safetensorsFile(t, map[string][2]any{"a.weight": {"BF16", []int{4, 8}}, "b.weight": {"F32", []int{3}}})
	shard2 := safetensorsFile(t, map[string][2]any{"c.weight": {"BF16", []int{10}}, "q.weight": {"U8", []int{16, 2}}})
	big := append(shard2, make([]byte, 300<<10)...) // an LFS file too
	oid := e.upload(aliceTok, "alice/m", big)
	r := e.commitLines(aliceTok, "alice/m", "main", "", header("add", ""), fileLine("README.md", card),
		fileLine("model-00001-of-00002.safetensors", shard1), lfsLine("model-00002-of-00002.safetensors", oid, int64(len(big))),
		fileLine("notes.safetensors", []byte("not a safetensors file")))
	if r.StatusCode != 200 {
		t.Fatalf("commit: %d %s", r.StatusCode, r.body)
	}
	var info struct {
		CardData    map[string]any `json:"cardData"`
		Tags        []string       `json:"tags"`
		LibraryName string         `json:"library_name"`
		PipelineTag string         `json:"pipeline_tag"`
		Safetensors struct {
			Parameters map[string]int64 `json:"parameters"`
			Total      int64            `json:"total"`
		} `json:"safetensors"`
	}
	e.api("GET", "/api/models/alice/m", aliceTok, nil, 200).json(t, &info)
	if info.CardData["license"] != "apache-2.0" || info.LibraryName != "transformers" || info.PipelineTag != "text-generation" {
		t.Errorf("card fields: %+v", info)
	}
	want := map[string]bool{"merged": true, "transformers": true, "text-generation": true, "license:apache-2.0": true,
		"base_model:org/base": true, "dataset:d1": true, "safetensors": true, "region:us": true}
	for _, tag := range info.Tags {
		delete(want, tag)
	}
	if len(want) > 0 {
		t.Errorf("tags %v lack %v", info.Tags, want)
	}
	if p := info.Safetensors.Parameters; p["BF16"] != 42 || p["F32"] != 3 || p["U8"] != 32 || info.Safetensors.Total != 77 {
		t.Errorf("safetensors = %+v; want BF16 42, F32 3, U8 32, total 77", info.Safetensors)
	}

	// Tree entries with expand carry securityFileStatus; directories and plain listings do not.
	var tree []map[string]any
	e.api("GET", "/api/models/alice/m/tree/main?expand=true", aliceTok, nil, 200).json(t, &tree)
	sec, _ := tree[0]["securityFileStatus"].(map[string]any)
	if sec["status"] != "safe" || sec["avScan"] == nil || sec["pickleImportScan"] == nil {
		t.Errorf("securityFileStatus = %v", tree[0]["securityFileStatus"])
	}
	var plain []map[string]any
	e.api("GET", "/api/models/alice/m/tree/main", aliceTok, nil, 200).json(t, &plain)
	if _, ok := plain[0]["securityFileStatus"]; ok {
		t.Error("securityFileStatus without expand")
	}

	// Commits with expand[]=formatted carry formatted title and message.
	r = e.commitLines(aliceTok, "alice/m", "main", "", header("<b>x</b> & y", ""), fileLine("z.txt", []byte("z")))
	if r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	var commits []struct {
		Title     string            `json:"title"`
		Formatted map[string]string `json:"formatted"`
	}
	e.api("GET", "/api/models/alice/m/commits/main?expand%5B%5D=formatted", aliceTok, nil, 200).json(t, &commits)
	if commits[0].Formatted["title"] != "&lt;b&gt;x&lt;/b&gt; &amp; y" {
		t.Errorf("formatted = %v", commits[0].Formatted)
	}
	var plainCommits []map[string]any
	e.api("GET", "/api/models/alice/m/commits/main", aliceTok, nil, 200).json(t, &plainCommits)
	if _, ok := plainCommits[0]["formatted"]; ok {
		t.Error("formatted without expand")
	}
}

func FuzzParseCard(f *testing.F) {
	f.Add("---\nlicense: mit\n---\n")
	f.Add("---\n- a\n---\n")
	f.Add("---\r\na: {b: [1, 2]}\r\n---")
	f.Add("---\n1: 2\n? [a]\n: b\n---\n")
	f.Fuzz(func(t *testing.T, s string) {
		meta, errs, _ := parseCard(s)
		if meta != nil {
			if _, err := json.Marshal(meta); err != nil {
				t.Fatalf("card data not JSON-encodable: %v", err)
			}
		}
		_ = errs
	})
}

func FuzzParseSafetensorsHeader(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{}}`))
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[4611686018427387904,4]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		counts, err := parseSafetensorsHeader(b)
		if err == nil {
			for _, n := range counts {
				if n < 0 {
					t.Fatalf("negative count %d", n)
				}
			}
		}
	})
}
