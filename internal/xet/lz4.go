package xet

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pierrec/lz4/v4"
)

// Xorb chunks compressed with LZ4 hold one LZ4 *frame* (magic 0x184D2204), not a bare block: xet-core writes
// frames with lz4_flex's FrameEncoder and the JS client with lz4js's compressFrame. We write the smallest
// frame: FLG 0x60 (version 01, independent blocks, no checksums, no content size), BD 0x50 (256 KiB blocks, so
// a chunk is one block), the header checksum byte, one block and the end mark.
const (
	lz4Magic     = 0x184D2204
	lz4FLG       = 0x60
	lz4BD        = 0x50
	lz4HC        = 0xFB // (xxh32(FLG, BD) >> 8) & 0xFF
	lz4FrameOver = 4 + 3 + 4 + 4
	lz4Uncomp    = 1 << 31 // block size flag: the block is stored uncompressed
)

// lz4Compress appends the LZ4 frame of src to dst, or returns dst unchanged and false when LZ4 does not shrink
// src. c is reused across calls.
func lz4Compress(c *lz4.Compressor, dst, src []byte) ([]byte, bool) {
	start := len(dst)
	need := lz4FrameOver + lz4.CompressBlockBound(len(src))
	dst = grow(dst, need)
	frame := dst[start : start+need]
	binary.LittleEndian.PutUint32(frame, lz4Magic)
	frame[4], frame[5], frame[6] = lz4FLG, lz4BD, lz4HC
	n, err := c.CompressBlock(src, frame[11:])
	if err != nil || n == 0 || n >= len(src) {
		return dst[:start], false
	}
	binary.LittleEndian.PutUint32(frame[7:], uint32(n))
	binary.LittleEndian.PutUint32(frame[11+n:], 0) // end mark
	return dst[:start+11+n+4], true
}

// grow extends dst's capacity by at least n bytes and returns it with length len(dst)+n.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), 2*cap(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst[:len(dst)+n]
}

var errLZ4 = errors.New("malformed LZ4 frame")

// lz4Decompress decodes the LZ4 frame src into dst, which must come out exactly full. It accepts any standard
// frame (linked or independent blocks, stored blocks, block and content checksums, content size) except
// dictionaries; checksums are skipped, since the chunk hash verifies the content.
func lz4Decompress(dst, src []byte) error {
	if len(src) < 7 || binary.LittleEndian.Uint32(src) != lz4Magic {
		return fmt.Errorf("%w: bad magic", errLZ4)
	}
	flg, bd := src[4], src[5]
	if flg>>6 != 1 || flg&0x03 != 0 || bd&0x8F != 0 || bd>>4 < 4 {
		return fmt.Errorf("%w: unsupported frame descriptor %#02x %#02x", errLZ4, flg, bd)
	}
	blockChecksum, contentSize, contentChecksum := flg&0x10 != 0, flg&0x08 != 0, flg&0x04 != 0
	p := 6
	if contentSize {
		if len(src) < p+8 {
			return fmt.Errorf("%w: truncated header", errLZ4)
		}
		if binary.LittleEndian.Uint64(src[p:]) != uint64(len(dst)) {
			return fmt.Errorf("%w: content size %d, want %d", errLZ4, binary.LittleEndian.Uint64(src[p:]), len(dst))
		}
		p += 8
	}
	p++ // header checksum
	maxBlock := 1 << (8 + 2*int(bd>>4))
	out := 0
	for {
		if len(src) < p+4 {
			return fmt.Errorf("%w: truncated block header", errLZ4)
		}
		size := binary.LittleEndian.Uint32(src[p:])
		p += 4
		if size == 0 {
			break
		}
		stored := size&lz4Uncomp != 0
		n := int(size &^ lz4Uncomp)
		if n > maxBlock || n > len(src)-p {
			return fmt.Errorf("%w: block of %d bytes", errLZ4, n)
		}
		block := src[p : p+n]
		p += n
		if blockChecksum {
			p += 4
		}
		if stored {
			if n > len(dst)-out {
				return fmt.Errorf("%w: more data than the chunk header says", errLZ4)
			}
			out += copy(dst[out:], block)
			continue
		}
		// A linked block may refer back into earlier output; an independent one never does.
		m, err := lz4.UncompressBlockWithDict(block, dst[out:min(len(dst), out+maxBlock)], dst[max(0, out-64<<10):out])
		if err != nil {
			return fmt.Errorf("%w: %w", errLZ4, err)
		}
		out += m
	}
	if contentChecksum {
		p += 4
	}
	if p != len(src) {
		return fmt.Errorf("%w: %d bytes after the frame", errLZ4, len(src)-p)
	}
	if out != len(dst) {
		return fmt.Errorf("%w: %d bytes, the chunk header says %d", errLZ4, out, len(dst))
	}
	return nil
}
