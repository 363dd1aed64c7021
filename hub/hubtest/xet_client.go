package hubtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/hubsync/hubsync/internal/xet"
)

// XetUpload is a minimal Xet uploader for tests of other packages (downloads, interop): it chunks data, packs
// its distinct chunks into xorbs of at most 8192 chunks / 64 MiB, POSTs them to casURL with the CAS token, then
// POSTs one shard (without footer) registering the file. It
// returns the file's sha256 (the LFS oid to commit) and Xet file hash. It is not hubsync's upload adapter
// (package hub) and does no global dedup; its purpose is to put Xet files into devhub without that adapter.
func XetUpload(ctx context.Context, hc *http.Client, casURL, casToken string, data []byte) (oid string, fileHash xet.Hash, err error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	refs := xet.Chunks(data)
	type loc struct {
		xorb int
		idx  uint32
	}
	seen := map[xet.Hash]loc{}
	var builders []*xet.XorbBuilder
	cur := xet.NewXorbBuilder()
	locs := make([]loc, len(refs))
	off := 0
	for i, r := range refs {
		chunk := data[off : off+int(r.Len)]
		off += int(r.Len)
		if l, ok := seen[r.Hash]; ok {
			locs[i] = l
			continue
		}
		if cur.Len() >= 8192 || cur.Size()+len(chunk)+16 > 64<<20 {
			builders = append(builders, cur)
			cur = xet.NewXorbBuilder()
		}
		idx, err := cur.AddChunk(chunk)
		if err != nil {
			return "", xet.Hash{}, err
		}
		l := loc{len(builders), uint32(idx)}
		seen[r.Hash], locs[i] = l, l
	}
	if cur.Len() > 0 {
		builders = append(builders, cur)
	}
	sh := &xet.Shard{}
	hashes := make([]xet.Hash, len(builders))
	for i, b := range builders {
		hashes[i] = b.Hash()
		body := b.Serialize()
		if err := casPost(ctx, hc, casURL+"/v1/xorbs/default/"+hashes[i].String(), casToken, body); err != nil {
			return "", xet.Hash{}, err
		}
		sh.CAS = append(sh.CAS, b.CASInfo())
	}
	sum := sha256.Sum256(data)
	placed := make([]xet.ChunkPlacement, len(refs))
	for i, r := range refs {
		placed[i] = xet.ChunkPlacement{Ref: r, Xorb: hashes[locs[i].xorb], Index: locs[i].idx}
	}
	fi := xet.BuildFileInfo(placed, shaField(sum))
	sh.Files = []xet.FileInfo{fi}
	if err := casPost(ctx, hc, casURL+"/v1/shards", casToken, sh.Marshal(false)); err != nil {
		return "", xet.Hash{}, err
	}
	return hex.EncodeToString(sum[:]), fi.Hash, nil
}

// casPost POSTs a body to the CAS and checks for 200.
func casPost(ctx context.Context, hc *http.Client, u, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		return fmt.Errorf("POST %s: %d %s", u, res.StatusCode, e.Error)
	}
	return nil
}

// shaField is a sha256 digest as a shard's metadata extension carries it (see shardSHA256).
func shaField(sum [32]byte) [32]byte {
	h, _ := xet.ParseHash(hex.EncodeToString(sum[:]))
	return h
}
