// drive.mjs runs the official JavaScript client (@huggingface/hub, version pinned in package.json) against a
// local Hub. interop_test.go starts the server, prepares the files and reads the JSON this prints last.
//
// Environment: HF_ENDPOINT, HF_TOKEN, JS_REPO (repository the script creates and fills from FILES_DIR),
// GO_REPO (repository hubsync pushed, with tag GO_TAG), FILES_DIR (files to upload; sub folders allowed).
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import * as hub from "@huggingface/hub";
import { common, filesDir, jsRepo, out, sha256, step, walk } from "./common.mjs";

const goRepo = { type: "model", name: process.env.GO_REPO };

async function download(repo, path, revision) {
  const blob = await hub.downloadFile({ ...common, repo, path, revision });
  if (!blob) throw new Error(`downloadFile ${path}@${revision}: not found`);
  return sha256(Buffer.from(await blob.arrayBuffer()));
}

out.whoami = await step("whoAmI", async () => (await hub.whoAmI(common)).name);

await step("createRepo", () => hub.createRepo({ ...common, repo: jsRepo }));

const local = await walk(filesDir);
await step("uploadFiles", async () => {
  const files = [];
  for (const p of local) {
    const path = relative(filesDir, p).split("\\").join("/");
    files.push({ path, content: new Blob([await readFile(p)]) });
  }
  return hub.uploadFiles({ ...common, repo: jsRepo, files, commitTitle: "upload from @huggingface/hub" });
});

await step("createBranch", () => hub.createBranch({ ...common, repo: jsRepo, branch: "dev" }));
await step("uploadFile to dev", () =>
  hub.uploadFile({
    ...common,
    repo: jsRepo,
    branch: "dev",
    file: { path: "dev.txt", content: new Blob(["only on dev\n"]) },
    commitTitle: "dev only",
  }),
);

out.commits = await step("listCommits", async () => {
  const titles = [];
  for await (const c of hub.listCommits({ ...common, repo: jsRepo, revision: "dev" })) titles.push(c.title);
  return titles;
});

out.jsFiles = await step("listFiles", async () => {
  const m = {};
  for await (const f of hub.listFiles({ ...common, repo: jsRepo, recursive: true })) {
    if (f.type === "file") m[f.path] = { size: f.size, lfs: f.lfs ? f.lfs.oid : null };
  }
  return m;
});

out.devHasFile = await step("fileExists on dev", () => hub.fileExists({ ...common, repo: jsRepo, path: "dev.txt", revision: "dev" }));
out.mainHasDevFile = await step("fileExists on main", () => hub.fileExists({ ...common, repo: jsRepo, path: "dev.txt" }));

out.jsDownloads = await step("downloadFile (own repo)", async () => {
  const m = {};
  for (const p of local) {
    const path = relative(filesDir, p).split("\\").join("/");
    m[path] = await download(jsRepo, path, "main");
  }
  return m;
});

out.info = await step("modelInfo", async () => {
  const i = await hub.modelInfo({ ...common, name: jsRepo.name });
  return { id: i.name, private: i.private };
});

out.listed = await step("listModels", async () => {
  const names = [];
  for await (const m of hub.listModels({ ...common, search: { owner: "alice" } })) names.push(m.name);
  return names.sort();
});

out.prUrl = await step("commit with isPullRequest", async () => {
  const res = await hub.commit({
    ...common,
    repo: jsRepo,
    title: "Proposed change",
    isPullRequest: true,
    operations: [{ operation: "addOrUpdate", path: "proposal.txt", content: new Blob(["proposed\n"]) }],
  });
  return res.pullRequestUrl;
});

// The repository hubsync pushed: every file at the branch and at the tag.
out.goFiles = await step("download hubsync's repo", async () => {
  const m = {};
  for await (const f of hub.listFiles({ ...common, repo: goRepo, recursive: true })) {
    if (f.type === "file") m[f.path] = await download(goRepo, f.path, "main");
  }
  return m;
});
out.goTagFiles = await step("download hubsync's tag", async () => {
  const m = {};
  for await (const f of hub.listFiles({ ...common, repo: goRepo, recursive: true, revision: process.env.GO_TAG })) {
    if (f.type === "file") m[f.path] = await download(goRepo, f.path, process.env.GO_TAG);
  }
  return m;
});

console.log(JSON.stringify(out));
