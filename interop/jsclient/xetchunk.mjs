// Reference chunking and hashing with @huggingface/xetchunk-wasm for xetchunk_test.go.
// Usage: node xetchunk.mjs FILE...  → one JSON object on stdout: {results: [{chunks, xorbHash, fileHash,
// verificationHash, hmac}]}, hashes in Xet hex. verificationHash covers all chunks; hmac keys chunk 0's hash
// with the file hash.
import { readFileSync } from "node:fs";
import { getChunks, xorbHash, fileHash, verificationHash, hmac, hashToHex } from "@huggingface/xetchunk-wasm";

const results = [];
for (const path of process.argv.slice(2)) {
	const data = new Uint8Array(readFileSync(path));
	const chunks = getChunks(data);
	const fh = fileHash(chunks);
	results.push({
		chunks: chunks.map((c) => ({ len: c.length, hash: hashToHex(c.hash) })),
		xorbHash: hashToHex(xorbHash(chunks)),
		fileHash: hashToHex(fh),
		verificationHash: hashToHex(verificationHash(chunks.map((c) => c.hash))),
		hmac: chunks.length ? hashToHex(hmac(chunks[0].hash, fh)) : "",
	});
}
process.stdout.write(JSON.stringify({ results }));
