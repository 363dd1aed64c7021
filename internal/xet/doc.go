// Package xet implements the content-addressed storage formats of Hugging Face Xet: content-defined chunking
// (gearhash), the chunk, xorb, file and verification hashes (keyed BLAKE3 and the variable fan-out Merkle tree),
// xorb serialization (chunk headers, none/LZ4/byte-grouping-4+LZ4 compression) and shard serialization (file
// reconstructions plus CAS info).
//
// The package does no I/O beyond an optional io.Reader in Split; the upload and download adapters in hub and the
// CAS of hub/hubtest build on it. docs/xet.md describes the formats and the library choices.
package xet
