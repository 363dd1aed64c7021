// drive_xet.mjs runs the official JavaScript client (@huggingface/hub, pinned in package.json) against a devhub
// started with Xet storage. interop_test.go (TestJSClientXetInterop) starts the server, prepares the files and
// reads the JSON this prints last.
//
// Environment: HF_ENDPOINT, HF_TOKEN, JS_REPO (repository the script creates and fills from FILES_DIR through
// Xet: uploadFiles with useXet), FILES_DIR, GO_REPO (optional: a repository whose files hubsync stored in Xet;
// the script downloads them).
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import * as hub from "@huggingface/hub";
import { common, filesDir, jsRepo, out, sha256, step, walk } from "./common.mjs";

// download reads a file through downloadFile; for a Xet file it reports whether the client saw the Xet info.
async function download(repo, path) {
  const info = await hub.fileDownloadInfo({ ...common, repo, path });
  const blob = await hub.downloadFile({ ...common, repo, path });
  if (!blob) throw new Error(`downloadFile ${path}: not found`);
  return { sha256: sha256(Buffer.from(await blob.arrayBuffer())), xet: Boolean(info && info.xet) };
}

await step("createRepo", () => hub.createRepo({ ...common, repo: jsRepo }));

const local = await walk(filesDir);
await step("uploadFiles (useXet)", async () => {
  const files = [];
  for (const p of local) {
    const path = relative(filesDir, p).split("\\").join("/");
    files.push({ path, content: new Blob([await readFile(p)]) });
  }
  return hub.uploadFiles({ ...common, repo: jsRepo, files, useXet: true, commitTitle: "xet upload from @huggingface/hub" });
});

out.jsDownloads = await step("downloadFile (own repo)", async () => {
  const m = {};
  for (const p of local) {
    const path = relative(filesDir, p).split("\\").join("/");
    m[path] = await download(jsRepo, path);
  }
  return m;
});

if (process.env.GO_REPO) {
  const goRepo = { type: "model", name: process.env.GO_REPO };
  out.goFiles = await step("download hubsync's Xet files", async () => {
    const m = {};
    for await (const f of hub.listFiles({ ...common, repo: goRepo, recursive: true })) {
      if (f.type === "file") m[f.path] = await download(goRepo, f.path);
    }
    return m;
  });
}

console.log(JSON.stringify(out));
