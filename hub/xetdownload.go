package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/hubsync/hubsync/internal/xet"
)

// Xet downloads. For a file stored in Xet the Hub's /resolve/ answer carries X-Xet-Hash (the Xet file hash) and
// a Link header whose rel="xet-auth" URL hands out a CAS read token ({accessToken, exp, casUrl}). The client then
// asks the CAS for the file's reconstruction (GET {casUrl}/v1/reconstructions/{hash}, with a Range when resuming),
// fetches the listed byte ranges of xorbs from the signed URLs (no token), decodes the chunks (each chunk's hash
// is recomputed) and writes the file in order. A fresh download is checked against the Xet file hash as well as
// the sha256 that fetchVerified checks for every LFS file. Any failure falls back to the plain /resolve/ path,
// resuming after the bytes already written.

// XetDisabledFromEnv reports whether huggingface_hub's HF_HUB_DISABLE_XET is set to a true value (XetModeFromEnv).
func XetDisabledFromEnv(getenv Getenv) bool { return XetModeFromEnv(getenv, XetAuto) == XetOff }

// xetFileRef is what /resolve/ says about a file stored in Xet.
type xetFileRef struct {
	hash    xet.Hash
	authURL string // rel="xet-auth": the read-token route
}

// xetConn is a CAS read token.
type xetConn struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CASURL      string `json:"casUrl"`
}

var linkRel = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?([^";,]+)"?`)

// parseXetHeaders reads X-Xet-Hash and the xet-auth Link of a /resolve/ answer; nil when absent or invalid.
func parseXetHeaders(h http.Header) *xetFileRef {
	hs := h.Get("X-Xet-Hash")
	if hs == "" {
		return nil
	}
	fh, err := xet.ParseHash(hs)
	if err != nil {
		return nil
	}
	for _, v := range h.Values("Link") {
		for _, m := range linkRel.FindAllStringSubmatch(v, -1) {
			if m[2] == "xet-auth" {
				return &xetFileRef{hash: fh, authURL: m[1]}
			}
		}
	}
	return nil
}

// xetProbe asks /resolve/ (HEAD, no redirect) whether the file is stored in Xet.
func (c *Client) xetProbe(ctx context.Context, u string) (*xetFileRef, error) {
	r, err := c.send(ctx, call{method: http.MethodHead, url: u, auth: true,
		ok: []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}})
	if err != nil {
		return nil, err
	}
	return parseXetHeaders(r.header), nil
}

// xetReadToken fetches a CAS read token from the xet-auth URL. The Hub token goes along only when that URL is
// on the Hub's origin (the client's rule for every request).
func (c *Client) xetReadToken(ctx context.Context, authURL string) (*xetConn, error) {
	r, err := c.send(ctx, call{method: http.MethodGet, url: authURL, auth: true})
	if err != nil {
		return nil, err
	}
	var conn xetConn
	if err := json.Unmarshal(r.body, &conn); err != nil {
		return nil, fmt.Errorf("xet read token: %w", err)
	}
	cu, err := url.Parse(conn.CASURL)
	if err != nil || (cu.Scheme != "http" && cu.Scheme != "https") || cu.Host == "" || conn.AccessToken == "" {
		return nil, fmt.Errorf("xet read token: invalid answer (casUrl %q)", redactURL(conn.CASURL))
	}
	conn.CASURL = strings.TrimRight(conn.CASURL, "/")
	return &conn, nil
}

// xetReconstruction is the CAS's v1 reconstruction answer.
type xetReconstruction struct {
	OffsetIntoFirstRange int64 `json:"offset_into_first_range"`
	Terms                []struct {
		Hash           string   `json:"hash"`
		UnpackedLength uint32   `json:"unpacked_length"`
		Range          xetRange `json:"range"`
	} `json:"terms"`
	FetchInfo map[string][]struct {
		Range    xetRange `json:"range"`
		URL      string   `json:"url"`
		URLRange xetRange `json:"url_range"` // end inclusive
	} `json:"fetch_info"`
}

type xetRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// xetFetch writes bytes [have, size) of the file into w (the file, its hash and the progress) through Xet and
// returns how many it wrote. It verifies the chunk hashes (decoding recomputes them) and, for a download from
// byte 0, the Xet file hash.
func (c *Client) xetFetch(ctx context.Context, ref *xetFileRef, have, size int64, w io.Writer) (int64, error) {
	conn, err := c.xetReadToken(ctx, ref.authURL)
	if err != nil {
		return 0, err
	}
	headers := map[string]string{}
	if have > 0 {
		headers["Range"] = "bytes=" + strconv.FormatInt(have, 10) + "-" + strconv.FormatInt(size-1, 10)
	}
	r, err := c.send(ctx, call{method: http.MethodGet, url: conn.CASURL + "/v1/reconstructions/" + ref.hash.String(), headers: headers,
		bearer: func() (string, error) { return conn.AccessToken, nil }})
	if err != nil {
		return 0, err
	}
	var rec xetReconstruction
	if err := json.Unmarshal(r.body, &rec); err != nil {
		return 0, fmt.Errorf("xet reconstruction: %w", err)
	}
	skip := rec.OffsetIntoFirstRange
	left := size - have
	var written int64
	var refs []xet.ChunkRef
	// Plan: the fetch entry of every term, and the last term that needs each entry, so that decoded chunks are
	// kept only while a later term still refers to them. An entry is its URL, byte range and chunk range: a CAS
	// listing one byte range under two chunk ranges gets each checked on its own, never one's chunks sliced by
	// the other's range.
	type key struct {
		url                  string
		start, end           uint32
		chunkStart, chunkEnd uint32
	}
	type use struct {
		k    key
		base uint32
		n    int // chunks in the entry
	}
	plan := make([]use, len(rec.Terms))
	last := map[key]int{}
	for i, t := range rec.Terms {
		if t.Range.Start >= t.Range.End {
			return 0, fmt.Errorf("xet: term %d (xorb %s) has an empty chunk range %d-%d", i, t.Hash, t.Range.Start, t.Range.End)
		}
		found := false
		for _, fi := range rec.FetchInfo[t.Hash] {
			if fi.Range.Start <= t.Range.Start && fi.Range.End >= t.Range.End {
				plan[i] = use{key{fi.URL, fi.URLRange.Start, fi.URLRange.End, fi.Range.Start, fi.Range.End}, fi.Range.Start, int(fi.Range.End - fi.Range.Start)}
				last[plan[i].k], found = i, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("xet: no fetch info for term %d (xorb %s chunks %d-%d)", i, t.Hash, t.Range.Start, t.Range.End)
		}
	}
	fetched := map[key][]xet.XorbChunk{}
	for i, t := range rec.Terms {
		u := plan[i]
		chunks := fetched[u.k]
		if chunks == nil {
			if chunks, err = c.xetFetchRange(ctx, u.k.url, xetRange{u.k.start, u.k.end}); err != nil {
				return written, err
			}
			if len(chunks) != u.n {
				return written, fmt.Errorf("xet: xorb %s range %d-%d decoded to %d chunks, want %d", t.Hash, u.k.start, u.k.end, len(chunks), u.n)
			}
			fetched[u.k] = chunks
		}
		if last[u.k] == i {
			delete(fetched, u.k)
		}
		base := u.base
		var n uint32
		for _, ch := range chunks[t.Range.Start-base : t.Range.End-base] {
			refs = append(refs, ch.Ref)
			n += ch.Ref.Len
			data := ch.Data
			if skip > 0 {
				d := min(skip, int64(len(data)))
				data, skip = data[d:], skip-d
			}
			if int64(len(data)) > left-written {
				data = data[:left-written]
			}
			if len(data) == 0 {
				continue
			}
			if _, err := w.Write(data); err != nil {
				return written, err
			}
			written += int64(len(data))
		}
		if n != t.UnpackedLength {
			return written, fmt.Errorf("xet: term %d (xorb %s) decoded to %d bytes, the reconstruction says %d", i, t.Hash, n, t.UnpackedLength)
		}
	}
	if written != left {
		return written, fmt.Errorf("xet: the reconstruction gave %d bytes, want %d", written, left)
	}
	if have == 0 {
		if got := xet.FileHash(refs); got != ref.hash {
			return written, fmt.Errorf("xet: the chunks hash to file hash %s, the Hub says %s", got, ref.hash)
		}
	}
	return written, nil
}

// xetFetchRange GETs one byte range (end inclusive) of a xorb from a signed URL (no token) and decodes it.
func (c *Client) xetFetchRange(ctx context.Context, u string, rg xetRange) ([]xet.XorbChunk, error) {
	if rg.End < rg.Start {
		return nil, fmt.Errorf("xet: invalid url_range %d-%d", rg.Start, rg.End)
	}
	want := int64(rg.End) - int64(rg.Start) + 1
	r, err := c.send(ctx, call{method: http.MethodGet, url: u, stream: true, headers: map[string]string{
		"Range": fmt.Sprintf("bytes=%d-%d", rg.Start, rg.End), "Accept-Encoding": "identity"}})
	if err != nil {
		return nil, err
	}
	defer r.raw.Close()
	if r.status != http.StatusPartialContent {
		if start, ok := contentRangeStart(r.header.Get("Content-Range")); r.status != http.StatusOK || ok && start != int64(rg.Start) {
			return nil, fmt.Errorf("xet: xorb fetch answered %d", r.status)
		}
		if _, err := io.CopyN(io.Discard, r.raw, int64(rg.Start)); err != nil { // a server ignoring Range
			return nil, &networkError{fmt.Errorf("reading %s: %w", redactURL(u), err)}
		}
	}
	b, err := io.ReadAll(io.LimitReader(r.raw, want))
	if err != nil {
		return nil, &networkError{fmt.Errorf("reading %s: %w", redactURL(u), err)}
	}
	if int64(len(b)) != want {
		return nil, &networkError{fmt.Errorf("reading %s: %w", redactURL(u), io.ErrUnexpectedEOF)}
	}
	chunks, err := xet.DecodeChunks(b)
	if err != nil {
		return nil, fmt.Errorf("xet: xorb range from %s: %w", redactURL(u), err)
	}
	return chunks, nil
}

// fetchXet tries the Xet path for an LFS file: it returns the bytes written to f (and h, prog) from offset have.
// used is false when the Hub did not offer Xet for the file. On error the caller continues over plain HTTP.
func (c *Client) fetchXet(ctx context.Context, u string, have, size int64, f *os.File, h hash.Hash, prog *fileProgress) (n int64, used bool, err error) {
	ref, err := c.xetProbe(ctx, u)
	if err != nil || ref == nil {
		return 0, false, err
	}
	n, err = c.xetFetch(ctx, ref, have, size, io.MultiWriter(f, h, progressWriter{prog}))
	return n, true, err
}
