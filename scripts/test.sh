#!/usr/bin/env bash
# The full test suite, from a fresh clone: installs what the tests need, then
# runs vet, staticcheck, every test (real MCP peers, a real kube-apiserver),
# each fuzz target for a short bounded time, and the demo.
# This is the README's test command; .ci/run calls exactly this.
#
#   FUZZTIME=30s scripts/test.sh    fuzz longer (default 10s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { echo; echo "== $* ($((SECONDS - start))s)"; }

step "installing test peers: npm MCP servers, inspector, conformance suite, Node 22, Go reference servers"
scripts/test-deps.sh >/dev/null

step "installing Chromium (trace page test) and shellcheck (scripts test) from Debian"
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
    echo "could not install ${missing[*]}; the tests that need them will say so" >&2
fi

step "building kube-apiserver and etcd from the Go module proxy (cached per machine)"
KUBEBUILDER_ASSETS=$(scripts/kube-test-bins.sh)
export KUBEBUILDER_ASSETS

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "go test"
go test -count=1 -timeout 30m ./...

step "fuzzing each target for ${FUZZTIME:=10s}"
# go test -fuzz takes one target in one package at a time.
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done

step "demo"
go run ./cmd/mcpguard demo

step "done"
