package hub

import "testing"

func TestDecodePreuploadResponse(t *testing.T) {
	ok := `{"files":[{"path":"a","uploadMode":"regular","shouldIgnore":false},{"path":"b","uploadMode":"lfs","shouldIgnore":true,"oid":"x"}],"commitOid":"c"}`
	pr, err := DecodePreuploadResponse([]byte(ok))
	if err != nil || len(pr.Files) != 2 || !*pr.Files[1].ShouldIgnore || pr.Files[1].OID != "x" {
		t.Fatalf("%+v %v", pr, err)
	}
	for _, bad := range []string{
		`{"files":[{"path":"a","uploadMode":"xet","shouldIgnore":false}]}`,
		`{"files":[{"path":"a","uploadMode":"regular"}]}`,
		`{"files":[{"uploadMode":"regular","shouldIgnore":false}]}`,
		`[]`,
	} {
		if _, err := DecodePreuploadResponse([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func FuzzDecodePreuploadResponse(f *testing.F) {
	f.Add([]byte(`{"files":[{"path":"a","uploadMode":"regular","shouldIgnore":false}],"commitOid":"c"}`))
	f.Add([]byte(`{"files":[{"path":"b","uploadMode":"lfs","shouldIgnore":true,"oid":"x"}]}`))
	f.Add([]byte(`{"files":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pr, err := DecodePreuploadResponse(body)
		if err != nil {
			return
		}
		for _, f := range pr.Files {
			if f.Path == "" || f.ShouldIgnore == nil || (f.UploadMode != "lfs" && f.UploadMode != "regular") {
				t.Fatalf("accepted an invalid entry %+v", f)
			}
		}
	})
}
