#!/usr/bin/env bash
# Runs every check CI runs: formatting, vet (also for the portable, arm64, Windows and macOS builds), the whole
# test suite under the race detector, and the merge kernels again with the assembly disabled.
set -euo pipefail
cd "$(dirname "$0")/.."

# Go's defaults, whatever this machine's Go env file says (e.g. GOFLAGS=-buildvcs=false would hide the
# difference between a VCS-stamped binary, as users build it, and the tests' in-process code).
export GOENV=off
export GOFLAGS=
echo "== go env GOFLAGS: '$(go env GOFLAGS)'"

echo "== gofmt"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== generated assembly is up to date"
gen=$(mktemp -d)
(cd merge/kernels/_generate && go run . -out "$gen")
for f in "$gen"/*.s; do
	cmp -s "$f" "merge/kernels/$(basename "$f")" || { echo "merge/kernels/$(basename "$f") is stale: run go generate ./merge/kernels/" >&2; exit 1; }
done
rm -rf "$gen"

echo "== go vet"
go vet ./...
go vet -tags noasm ./merge/... ./internal/xet/...
GOARCH=arm64 go vet ./merge/... ./internal/... ./export/...
GOOS=windows go vet ./...
GOOS=darwin go vet ./...

echo "== go test -race"
go test -race -timeout 60m ./...

echo "== ggml quantizers with FMA in the instruction set (GOAMD64=v3): still byte-identical to llama.cpp"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
	GOAMD64=v3 go test -count=1 -run Oracle ./internal/ggml
fi

echo "== go test -tags noasm (portable kernels and gearhash loop)"
go test -tags noasm -timeout 20m ./merge/... ./internal/xet/...

echo "all checks passed"
