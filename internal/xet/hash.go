package xet

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/zeebo/blake3"
)

// Hash is a 32-byte Xet hash (chunk, xorb, file, verification or HMAC hash), in its raw byte order.
type Hash [32]byte

// String returns the Xet hex form of h: each 8-byte group is read as a little-endian uint64 and printed as 16
// hex digits, so the bytes of each group appear reversed relative to plain hex.
func (h Hash) String() string {
	var b [64]byte
	for g := range 4 {
		v := binary.LittleEndian.Uint64(h[g*8:])
		s := strconv.AppendUint(b[g*16:g*16], v, 16)
		n := len(s)
		// Left-pad the group to 16 digits.
		copy(b[g*16+16-n:], s)
		for i := g * 16; i < g*16+16-n; i++ {
			b[i] = '0'
		}
	}
	return string(b[:])
}

// IsZero reports whether h is the all-zero hash (the file hash of an empty file).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the 64-digit Xet hex form that String produces.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("xet: hash %q: want 64 hex digits, got %d", s, len(s))
	}
	var raw [32]byte
	if _, err := hex.Decode(raw[:], []byte(s)); err != nil {
		return h, fmt.Errorf("xet: hash %q: %w", s, err)
	}
	for g := range 4 {
		binary.LittleEndian.PutUint64(h[g*8:], binary.BigEndian.Uint64(raw[g*8:]))
	}
	return h, nil
}

// MarshalText implements encoding.TextMarshaler with the Xet hex form.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the Xet hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// The BLAKE3 keys of the Xet hashing spec.
var (
	dataKey = [32]byte{
		102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
		157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
	}
	internalNodeKey = [32]byte{
		1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
		93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
	}
	verificationKey = [32]byte{
		127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
		164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195,
	}
	zeroKey [32]byte
)

// keyedHash returns BLAKE3 keyed with key over the concatenation of parts.
func keyedHash(key *[32]byte, parts ...[]byte) Hash {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err) // unreachable: the key is always 32 bytes
	}
	for _, p := range parts {
		_, _ = h.Write(p)
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// ChunkHash returns the Xet hash of one chunk's bytes: BLAKE3 keyed with the spec's DATA_KEY.
func ChunkHash(data []byte) Hash { return keyedHash(&dataKey, data) }

// HMAC returns BLAKE3 keyed with key over h, the form in which a global-dedup answer carries chunk hashes.
func HMAC(key, h Hash) Hash { k := [32]byte(key); return keyedHash(&k, h[:]) }

// VerificationHash returns the verification hash of a term: BLAKE3 keyed with VERIFICATION_KEY over the
// concatenated raw hashes of the term's chunks.
func VerificationHash(chunks []Hash) Hash {
	buf := make([]byte, 0, 32*len(chunks))
	for i := range chunks {
		buf = append(buf, chunks[i][:]...)
	}
	return keyedHash(&verificationKey, buf)
}

// GlobalDedupEligible reports whether a chunk hash may be looked up in the global dedup index: its last
// little-endian uint64 is a multiple of 1024. The first chunk of a file is eligible too, whatever its hash.
func GlobalDedupEligible(h Hash) bool { return binary.LittleEndian.Uint64(h[24:])%1024 == 0 }
