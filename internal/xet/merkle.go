package xet

import (
	"strconv"

	"github.com/zeebo/blake3"
)

// ChunkRef names a chunk by hash and length; it is also a node of the Merkle tree, whose Len is the total
// length of the chunks under it.
type ChunkRef struct {
	Hash Hash
	Len  uint32
}

// isNaturalCut reports whether a Merkle node may end after h: the low byte of the last little-endian uint64 is
// a multiple of 4 (the spec's hash % 4 == 0 with a mean of 4 children per node).
func isNaturalCut(h *Hash) bool { return h[24]%4 == 0 }

// mergeNodes hashes one internal node over its children: BLAKE3 keyed with INTERNAL_NODE_KEY over the lines
// "{hex} : {len}\n". It returns the node and the total length (which may exceed uint32 for file hashes; the
// caller keeps it in a uint64).
func mergeNodes(h *blake3.Hasher, line []byte, nodes []node) node {
	h.Reset()
	var total uint64
	for i := range nodes {
		line = line[:0]
		line = append(line, nodes[i].hash.String()...)
		line = append(line, " : "...)
		line = strconv.AppendUint(line, nodes[i].len, 10)
		line = append(line, '\n')
		_, _ = h.Write(line)
		total += nodes[i].len
	}
	var out node
	h.Sum(out.hash[:0])
	out.len = total
	return out
}

type node struct {
	hash Hash
	len  uint64
}

// merkleRoot returns the root of the variable fan-out Merkle tree over chunks (the zero hash for none).
func merkleRoot(chunks []ChunkRef) Hash {
	if len(chunks) == 0 {
		return Hash{}
	}
	cur := make([]node, len(chunks))
	for i, c := range chunks {
		cur[i] = node{c.Hash, uint64(c.Len)}
	}
	h, err := blake3.NewKeyed(internalNodeKey[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	line := make([]byte, 0, 96)
	for len(cur) > 1 {
		next := cur[:0:0]
		start, children := 0, 0
		for i := range cur {
			if i == len(cur)-1 || children == 8 || (children >= 2 && isNaturalCut(&cur[i].hash)) {
				next = append(next, mergeNodes(h, line, cur[start:i+1]))
				start, children = i+1, 0
			} else {
				children++
			}
		}
		cur = next
	}
	return cur[0].hash
}

// XorbHash returns the hash of a xorb holding chunks in this order: the root of the variable fan-out Merkle tree
// (a node ends at a natural cut once it has at least 3 children, or at 9), or the zero hash for no chunks.
func XorbHash(chunks []ChunkRef) Hash { return merkleRoot(chunks) }

// FileHash returns the hash of a file made of chunks: BLAKE3 keyed with the zero key over the Merkle root. An
// empty file hashes to all zeros.
func FileHash(chunks []ChunkRef) Hash {
	if len(chunks) == 0 {
		return Hash{}
	}
	root := merkleRoot(chunks)
	return keyedHash(&zeroKey, root[:])
}
