// Reference chunking, hashing and xorb coding for xetchunk_test.go.
//
//   node xetchunk.mjs FILE...              → {results: [{chunks, xorbHash, fileHash, verificationHash, hmac}]}
//       with @huggingface/xetchunk-wasm; hashes in Xet hex; verificationHash covers all chunks; hmac keys
//       chunk 0's hash with the file hash.
//   node xetchunk.mjs --xorb-encode IN OUT → chunks IN and writes the xorb of all its chunks, in order, to OUT
//       with @huggingface/hub's own writeChunk (scheme choice, vendored lz4js frames, BG4); prints
//       {xorbHash, chunks: [{len, hash, scheme}]}.
//   node xetchunk.mjs --xorb-decode IN     → parses the footerless xorb IN with @huggingface/hub's own
//       parseChunkHeader and decompressChunk; prints {chunks: [{len, scheme}], sha256} of the decoded bytes.
//
// @huggingface/hub does not export its xorb coder, so the xorb modes take those functions from its pinned
// dist/index.js by name (and fail loudly if a later version renames them).
import { readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { getChunks, xorbHash, fileHash, verificationHash, hmac, hashToHex } from "@huggingface/xetchunk-wasm";

function hubXorbCoder() {
	const src = readFileSync(new URL("./node_modules/@huggingface/hub/dist/index.js", import.meta.url), "utf8");
	const section = (from, to) => {
		const a = src.indexOf(from);
		const b = src.indexOf(to, a);
		if (a < 0 || b < 0) throw new Error(`@huggingface/hub dist: section ${from} not found`);
		return src.slice(a, b);
	};
	const fn = (name) => {
		const a = src.indexOf(`\nfunction ${name}(`);
		const b = src.indexOf("\n}\n", a);
		if (a < 0 || b < 0) throw new Error(`@huggingface/hub dist: function ${name} not found`);
		return src.slice(a, b + 3);
	};
	const code =
		section("// src/vendor/lz4js/util.ts", "// src/utils/RangeList.ts") +
		["bg4_regroup_bytes", "bg4_split_bytes", "writeChunk", "parseChunkHeader", "decompressChunk"].map(fn).join("") +
		"\nvar XORB_SIZE = 64 * 1024 * 1024, XET_CHUNK_HEADER_BYTES = 8, compressionSchemeLabels = {};" +
		"\nreturn { writeChunk, parseChunkHeader, decompressChunk };";
	return new Function(code)();
}

const args = process.argv.slice(2);
if (args[0] === "--xorb-encode") {
	const coder = hubXorbCoder();
	const data = new Uint8Array(readFileSync(args[1]));
	const chunks = getChunks(data);
	const xorb = { data: new Uint8Array(64 * 1024 * 1024), offset: 0, chunks: [] };
	const out = [];
	let pos = 0;
	for (const c of chunks) {
		const at = xorb.offset;
		if (!coder.writeChunk(xorb, data.subarray(pos, pos + c.length), hashToHex(c.hash))) throw new Error("xorb full");
		out.push({ len: c.length, hash: hashToHex(c.hash), scheme: xorb.data[at + 4] });
		pos += c.length;
	}
	writeFileSync(args[2], xorb.data.subarray(0, xorb.offset));
	process.stdout.write(JSON.stringify({ xorbHash: hashToHex(xorbHash(chunks)), chunks: out }));
} else if (args[0] === "--xorb-decode") {
	const coder = hubXorbCoder();
	const b = new Uint8Array(readFileSync(args[1]));
	const sha = createHash("sha256");
	const chunks = [];
	for (let off = 0; off < b.length; ) {
		const h = coder.parseChunkHeader(new DataView(b.buffer, b.byteOffset + off, 8));
		const raw = coder.decompressChunk(h, b.subarray(off + 8, off + 8 + h.compressed_length));
		if (raw.length !== h.uncompressed_length) throw new Error(`chunk at ${off}: ${raw.length} bytes, header says ${h.uncompressed_length}`);
		sha.update(raw);
		chunks.push({ len: raw.length, scheme: h.compression_scheme });
		off += 8 + h.compressed_length;
	}
	process.stdout.write(JSON.stringify({ chunks, sha256: sha.digest("hex") }));
} else {
	const results = [];
	for (const path of args) {
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
}
