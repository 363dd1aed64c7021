package hubtest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// httpError is an error with the status and X-Error-Code to answer.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errf(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// maxCommitLine bounds one NDJSON line (a base64 regular file of up to 10 MiB plus its JSON).
const maxCommitLine = 16 << 20

// commitRequest is a parsed NDJSON commit payload.
type commitRequest struct {
	Summary      string
	Description  string
	ParentCommit string
	Ops          []commitOp
}

// commitOp is one file operation of a commit.
type commitOp struct {
	Kind    string // "file", "lfsFile", "deletedFile", "deletedFolder"
	Path    string
	BlobOID string // file: git blob id of the stored content
	Size    int64  // file: content size; lfsFile: object size when HasSize
	HasSize bool   // lfsFile: false for an intra-repo copy ("size" omitted)
	LFSOID  string // lfsFile: sha256
}

// validateRepoPath checks a path in a repository; the Hub answers 422 for a bad one.
func validateRepoPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > 1024:
		return errors.New("path longer than 1024 bytes")
	case strings.HasPrefix(p, "/"):
		return errors.New("path starts with /")
	case strings.HasSuffix(p, "/"):
		return errors.New("path ends with /")
	case strings.ContainsAny(p, "\x00\r\n"):
		return errors.New("path contains a control character")
	}
	for _, comp := range strings.Split(p, "/") {
		switch comp {
		case "":
			return errors.New("path has an empty component (//)")
		case ".", "..":
			return fmt.Errorf("path has a %q component", comp)
		case ".git":
			return errors.New("path has a .git component")
		}
		for _, sub := range strings.Split(comp, `\`) {
			if sub == ".." {
				return errors.New(`path has a ".." component (with \)`)
			}
		}
	}
	return nil
}

// readLine reads one line (without its newline) of at most max bytes; io.EOF only when nothing is left.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, errf(http.StatusRequestEntityTooLarge, "", "commit payload: a line is longer than %d bytes", max)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// parseCommit parses an NDJSON commit payload. The content of regular files is handed to putBlob as soon as
// its line is decoded (so only one line is held in memory); putBlob returns the content's git blob id.
// Errors are *httpError values carrying the status to answer.
func parseCommit(r io.Reader, putBlob func([]byte) (string, error)) (*commitRequest, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var req *commitRequest
	for n := 1; ; n++ {
		line, err := readLine(br, maxCommitLine)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				return nil, he
			}
			return nil, errf(http.StatusBadRequest, "", "commit payload: read: %v", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var item struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(line, &item); err != nil {
			return nil, errf(http.StatusBadRequest, "", "commit payload: line %d: invalid JSON: %v", n, err)
		}
		if len(item.Value) == 0 || bytes.Equal(item.Value, []byte("null")) {
			return nil, errf(http.StatusBadRequest, "", "commit payload: line %d: missing \"value\"", n)
		}
		if item.Key == "header" {
			if req != nil {
				return nil, errf(http.StatusBadRequest, "", "commit payload: line %d: a second header", n)
			}
			req, err = parseHeader(item.Value, n)
			if err != nil {
				return nil, err
			}
			continue
		}
		if req == nil {
			return nil, errf(http.StatusBadRequest, "", "commit payload: line %d: the first line must be the header, got %q", n, item.Key)
		}
		op, err := parseOp(item.Key, item.Value, n, putBlob)
		if err != nil {
			return nil, err
		}
		req.Ops = append(req.Ops, op)
	}
	if req == nil {
		return nil, errf(http.StatusBadRequest, "", "commit payload: no header line")
	}
	return req, nil
}

func parseHeader(raw json.RawMessage, n int) (*commitRequest, error) {
	var h struct {
		Summary      *string `json:"summary"`
		Description  *string `json:"description"`
		ParentCommit *string `json:"parentCommit"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, errf(http.StatusBadRequest, "", "commit payload: line %d: header: %v", n, err)
	}
	if h.Summary == nil || strings.TrimSpace(*h.Summary) == "" {
		return nil, errf(http.StatusBadRequest, "", "commit payload: the header needs a non-empty \"summary\"")
	}
	req := &commitRequest{Summary: *h.Summary}
	if h.Description != nil {
		req.Description = *h.Description
	}
	if h.ParentCommit != nil && *h.ParentCommit != "" {
		pc := strings.ToLower(*h.ParentCommit)
		if !isHex(pc, 5, 40) {
			return nil, errf(http.StatusBadRequest, "", "commit payload: parentCommit %q is not 5 to 40 hex digits", *h.ParentCommit)
		}
		req.ParentCommit = pc
	}
	return req, nil
}

func parseOp(key string, raw json.RawMessage, n int, putBlob func([]byte) (string, error)) (commitOp, error) {
	var v struct {
		Path     *string `json:"path"`
		Content  *string `json:"content"`
		Encoding string  `json:"encoding"`
		Algo     string  `json:"algo"`
		OID      string  `json:"oid"`
		Size     *int64  `json:"size"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: %s: %v", n, key, err)
	}
	if v.Path == nil {
		return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: %s without \"path\"", n, key)
	}
	op := commitOp{Kind: key, Path: *v.Path}
	check := op.Path
	if key == "deletedFolder" {
		check = strings.TrimSuffix(check, "/")
		op.Path = check
	}
	if key == "file" || key == "lfsFile" || key == "deletedFile" || key == "deletedFolder" {
		if err := validateRepoPath(check); err != nil {
			return commitOp{}, errf(http.StatusUnprocessableEntity, "", "Invalid path %q: %v", *v.Path, err)
		}
	}
	switch key {
	case "file":
		if v.Content == nil {
			return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: file %q without \"content\"", n, op.Path)
		}
		var content []byte
		switch v.Encoding {
		case "base64", "":
			b, err := base64.StdEncoding.DecodeString(*v.Content)
			if err != nil {
				return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: file %q: invalid base64: %v", n, op.Path, err)
			}
			content = b
		case "utf-8", "utf8":
			content = []byte(*v.Content)
		default:
			return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: file %q: unknown encoding %q", n, op.Path, v.Encoding)
		}
		if len(content) > MaxRegularFileSize {
			return commitOp{}, errf(http.StatusBadRequest, "", "Your push was rejected because it contains files larger than 10 MiB. Please use https://git-lfs.github.com/ to store large files. Offending file: %s", op.Path)
		}
		oid, err := putBlob(content)
		if err != nil {
			return commitOp{}, errf(http.StatusInternalServerError, "", "storing %s: %v", op.Path, err)
		}
		op.BlobOID, op.Size = oid, int64(len(content))
	case "lfsFile":
		if v.Algo != "" && v.Algo != "sha256" {
			return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: lfsFile %q: unsupported algo %q", n, op.Path, v.Algo)
		}
		op.LFSOID = strings.ToLower(v.OID)
		if !isHex(op.LFSOID, 64, 64) {
			return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: lfsFile %q: oid %q is not a sha256", n, op.Path, v.OID)
		}
		if v.Size != nil {
			if *v.Size < 0 {
				return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: lfsFile %q: negative size", n, op.Path)
			}
			op.Size, op.HasSize = *v.Size, true
		}
	case "deletedFile", "deletedFolder":
	default:
		return commitOp{}, errf(http.StatusBadRequest, "", "commit payload: line %d: unknown key %q", n, key)
	}
	return op, nil
}
