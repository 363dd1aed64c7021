#!/usr/bin/env bash
# Runs every check CI runs: formatting, vet (also for the portable, arm64, Windows and macOS builds), the whole
# test suite under the race detector, the ggml quantizers' oracle test again with FMA (GOAMD64=v3), the merge
# kernels and the Xet gearhash loop again with the assembly disabled, and, where nvcc is installed, the CUDA
# backend's build and host-side checks (-tags cuda; no GPU needed).
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

echo "== CUDA backend (-tags cuda, no GPU needed): PTX current, build, vet, host-side kernel tests, --device checks"
if command -v nvcc >/dev/null 2>&1; then
	# kernels.ptx is generated from kernels.cu (go generate ./merge/cuda) and committed: it must be current.
	cuda_ptx="$(mktemp)"
	nvcc -ptx -arch=compute_70 -fmad=false -ftz=false -prec-div=true -prec-sqrt=true -o "$cuda_ptx" merge/cuda/kernels.cu
	cmp -s "$cuda_ptx" merge/cuda/kernels.ptx || { echo "merge/cuda/kernels.ptx is stale: run go generate ./merge/cuda" >&2; exit 1; }
	rm -f "$cuda_ptx"
	go build -tags cuda ./...
	go vet -tags cuda ./merge/cuda ./cmd/hubsync
	go test -tags cuda ./merge/cuda
	go test -tags cuda -run 'TestCUDA' ./cmd/hubsync
	cuda_tmp="$(mktemp -d)"
	go build -tags cuda -o "$cuda_tmp/hubsync" ./cmd/hubsync
	if "$cuda_tmp/hubsync" merge --base "$cuda_tmp/nobase" --adapter "$cuda_tmp/noadapter" --out "$cuda_tmp/out" --device cuda 2>"$cuda_tmp/err"; then
		echo "hubsync -tags cuda: --device cuda succeeded without a GPU" >&2
		exit 1
	fi
	grep -q -- '--device cuda: ' "$cuda_tmp/err" || { cat "$cuda_tmp/err" >&2; exit 1; }
	rm -rf "$cuda_tmp"
elif [ "${CI:-}" = "true" ]; then
	echo "CI=true: nvcc is not installed (.ci/run installs Debian's nvidia-cuda-toolkit)" >&2
	exit 1
else
	echo "skipped: nvcc is not installed (Debian: nvidia-cuda-toolkit from non-free)"
fi

echo "all checks passed"
