// Package jsclient holds the interoperability test with the official JavaScript client, @huggingface/hub
// (version pinned in package.json and package-lock.json): interop_test.go starts the local Hub (hub/hubtest,
// what `hubsync devhub` serves) in-process and runs drive.mjs with node against it, then checks the result with
// hubsync's own client both ways. Install the client once with `npm ci` in this folder (.ci/run does); without
// it the test is skipped, except under CI=true, where it fails. xetchunk_test.go checks internal/xet's chunking
// and hashes against @huggingface/xetchunk-wasm (xetchunk.mjs), likewise.
package jsclient
