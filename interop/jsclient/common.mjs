// common.mjs: what drive.mjs and drive_xet.mjs share — the client options from the environment, the result
// object they print last as JSON, and small helpers.
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";

export const hubUrl = process.env.HF_ENDPOINT;
export const accessToken = process.env.HF_TOKEN;
export const jsRepo = { type: "model", name: process.env.JS_REPO };
export const filesDir = process.env.FILES_DIR;
export const common = { hubUrl, accessToken };
export const out = { steps: [] };

export function sha256(buf) {
  return createHash("sha256").update(buf).digest("hex");
}

// step runs fn, records whether it threw in out.steps, and returns its value (undefined when it threw).
export async function step(name, fn) {
  try {
    const v = await fn();
    out.steps.push({ name, ok: true });
    return v;
  } catch (e) {
    out.steps.push({ name, ok: false, error: String(e && e.stack ? e.stack : e) });
    return undefined;
  }
}

// walk lists the files under dir, recursively.
export async function walk(dir) {
  const found = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) found.push(...(await walk(p)));
    else found.push(p);
  }
  return found;
}
