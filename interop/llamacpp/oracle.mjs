// oracle.mjs runs one batch of checks against the real consumers and prints one JSON object on stdout.
// Usage: node oracle.mjs JOB.json. The job (written by the Go tests, see oracle_test.go) is
//   {"threads": 2,
//    "models": [{"path": "m.gguf", "logits": [[1, 2, 3]], "tokenize": [{"text": "hi", "special": true}]}],
//    "tokenizers": [{"json": "tokenizer.json", "config": "tokenizer_config.json", "texts": [{"text": "hi"}]}],
//    "gguf": ["m.gguf"]}
// models go through llama.cpp v0.5.0 (node-llama-cpp 3.22.1, CPU, never downloading or building): the file is
// loaded, each token list is evaluated in a fresh sequence and the raw logits after its last token are returned
// (all vocabulary entries, by token id); each text is tokenized with model.tokenize(text, special).
// tokenizers go through @huggingface/tokenizers (encode without adding special tokens).
// gguf files are parsed with @huggingface/gguf (tensor infos and metadata).
// A failing item reports {"error": "..."} in its place; the process itself exits 0 unless the job is unreadable.
import { readFileSync } from "node:fs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = { models: [], tokenizers: [], gguf: [] };

const errText = (e) => String(e && e.message ? e.message : e);

if ((job.models || []).length > 0) {
	const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
	// llama.cpp's warnings and errors go to the current item's "log" (why a load failed).
	let logBuf = [];
	const llama = await getLlama({
		gpu: false, build: "never", skipDownload: true, progressLogs: false,
		logLevel: LlamaLogLevel.warn, logger: (level, message) => { logBuf.push(String(message).trim()); },
	});
	for (const m of job.models) {
		const r = { path: m.path, logits: [], tokens: [] };
		logBuf = [];
		let model;
		try {
			model = await llama.loadModel({ modelPath: m.path, gpuLayers: 0, useMmap: false });
			for (const t of m.tokenize || []) {
				r.tokens.push(Array.from(model.tokenize(t.text, !!t.special)));
			}
			if ((m.logits || []).length > 0) {
				const ctx = await model.createContext({
					contextSize: 128, batchSize: 128, sequences: 1, threads: job.threads || 2,
					flashAttention: false,
					// F32 K/V: the default F16 cache would round keys and values before attention.
					experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
				});
				try {
					const seq = ctx.getSequence();
					for (const toks of m.logits) {
						await seq.clearHistory();
						const input = toks.map((t, i) => i === toks.length - 1 ? [t, { generateNext: { logits: true } }] : t);
						const res = await seq.controlledEvaluate(input);
						const lg = res[toks.length - 1].next.logits;
						const arr = new Array(lg.size);
						for (const [tok, v] of lg) arr[tok] = v;
						r.logits.push(arr);
					}
				} finally {
					await ctx.dispose();
				}
			}
		} catch (e) {
			r.error = errText(e);
		} finally {
			if (model) await model.dispose();
			r.log = logBuf.join("\n");
		}
		out.models.push(r);
	}
	await llama.dispose();
}

if ((job.tokenizers || []).length > 0) {
	const { Tokenizer } = await import("@huggingface/tokenizers");
	for (const t of job.tokenizers) {
		const r = { tokens: [] };
		try {
			const tok = new Tokenizer(JSON.parse(readFileSync(t.json, "utf8")),
				t.config ? JSON.parse(readFileSync(t.config, "utf8")) : {});
			for (const x of t.texts) {
				r.tokens.push(tok.encode(x.text, { add_special_tokens: false }).ids);
			}
		} catch (e) {
			r.error = errText(e);
		}
		out.tokenizers.push(r);
	}
}

if ((job.gguf || []).length > 0) {
	const { gguf } = await import("@huggingface/gguf");
	for (const p of job.gguf) {
		const r = { path: p };
		try {
			const { metadata, tensorInfos, tensorDataOffset } = await gguf(p, { allowLocalFile: true });
			r.tensorDataOffset = Number(tensorDataOffset);
			r.tensors = tensorInfos.map((ti) => ({
				name: ti.name, shape: ti.shape.map(Number), dtype: ti.dtype, offset: Number(ti.offset),
			}));
			r.metadata = {};
			for (const [k, v] of Object.entries(metadata)) {
				if (Array.isArray(v)) r.metadata[k] = { length: v.length };
				else r.metadata[k] = typeof v === "bigint" ? Number(v) : v;
			}
		} catch (e) {
			r.error = errText(e);
		}
		out.gguf.push(r);
	}
}

process.stdout.write(JSON.stringify(out));
