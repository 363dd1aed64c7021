// Package hubtest is a local Hugging Face Hub-compatible HTTP server for tests, CI and offline use
// (`hubsync devhub`; clients point HF_ENDPOINT at it). It is an independent implementation of the Hub
// protocol (docs/devhub.md lists the routes) and imports nothing of the hub client.
//
// What it serves (see Server and docs/devhub.md): whoami-v2; repo create/delete/move and settings (private,
// gated) (models, datasets, spaces); listings with search, author, filter, sort and Link pagination; branches,
// tags and refs; super-squash; preupload; the git-lfs batch API (Bearer or Basic auth) with basic and multipart
// transfers and an optional verify action; signed storage URLs on a second listener; the multipart completion
// URL; NDJSON commits (also as pull requests, refs/pr/N); discussions and pull requests (list, details,
// comment, status, title, merge); validate-yaml; resolve/raw downloads with Range; tree, paths-info, repo info
// (cardData, tags, safetensors parameter counts) and commit listings with Link pagination; GET /_devhub/stats.
//
// Choices where the real Hub is undocumented:
//
//   - Storage (presigned basic PUTs, multipart parts, LFS downloads) listens on its own host:port; every
//     request carrying an Authorization header there, or to the completion URL, is refused with 400
//     ("Authorization header sent to a storage URL (token leak)") and counted in Stats.TokenLeaks.
//   - Signed URLs carry an HMAC-SHA256 over method, path and query (expiry included) with a key kept in the
//     data directory, so URLs issued before a restart stay valid (fix Options.StorageAddr, or rewrite the
//     host, to use them). An expired, revoked or forged URL gets 403 with an S3-style XML body.
//   - Every batch answer for an object that is not stored opens a fresh multipart upload id, even when an
//     upload of the same object is in flight (S3 semantics); every open upload keeps its parts on disk and
//     can be finished until its URLs expire. A completion of an upload that is already complete answers 200
//     when the object is stored (a client retrying after a lost answer succeeds).
//   - Part size: max(ChunkSize, ceil(size/10000)) with ChunkSize defaulting to MinPartSize. The completion
//     checks the full ascending part list, the ETags (quoted or not), the minimum part size and, after a
//     streamed reassembly, the sha256 and size.
//   - A token's Name is its user and namespace. Writing (commit, branch, tag, repo create/delete) needs a
//     write token owning the namespace (Name, or one of Orgs, "*" = all); opening a pull request
//     (create_pr=1) and uploading LFS objects need a write token and a visible repository. Private
//     repositories are 404 RepoNotFound to everyone else.
//   - A new repository has an "initial commit" holding the Hub's default .gitattributes. emptyBranch creates
//     a root commit with no files. Commit, tree and blob ids are real git object ids.
//   - Preupload: size 0 ⇒ regular; a .gitattributes filter=lfs match (the body's gitAttributes, else the
//     revision's file), > 10 MiB or a NUL byte in the sample ⇒ lfs. shouldIgnore follows the body's
//     gitIgnore, else the revision's .gitignore.
//   - Commit errors: 412 for a stale parentCommit, 404 RevisionNotFound/RepoNotFound, 404 EntryNotFound for a
//     missing deletedFile/deletedFolder, 400 for an LFS object that was never uploaded (or has another size),
//     422 for an invalid path or a file/folder clash, 413 for an oversized line or body.
//   - Resolve: regular files are served with ETag = git blob id; LFS files answer 302 to the storage host
//     with ETag = the pointer's blob id, X-Linked-Etag = sha256 and X-Linked-Size.
//   - Listings are sorted by path; tree pages use an opaque cursor that pins the commit of the first page;
//     commit pages use ?p=N and X-Total-Count.
//   - RateLimit and RateLimit-Policy headers are sent on every API response, counted per user and bucket
//     ("api", "resolvers") in fixed 5-minute windows of Options.RateLimitQuota requests.
//   - LFS objects are stored once but granted per repository: to the one whose batch URL received the bytes,
//     and to those whose commits already reach them (data from before grants). Batch, verify and commit answers
//     consult only the repository's own grants, so one repository never learns of another's objects.
//   - Pull requests merge with a merge commit (parents: base head, PR head) after a file-level three-way merge
//     from the commit the PR started at; a file changed differently on both sides is a conflict (409).
//   - Everything under the data directory is 0600 (files) and 0700 (folders).
//
// Files are written to a temporary name and renamed (atomic against a crash of the process; no fsync, so
// not against a power loss). Fault injection: Options.Faults / SetFaults (probabilistic, seeded) and
// InjectFault (deterministic rules).
package hubtest
