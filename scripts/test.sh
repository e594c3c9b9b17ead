#!/usr/bin/env bash
# The full test suite: installs what the tests need (npm peers, a kube-apiserver
# and etcd built from the Go module proxy), then runs every test, the fuzz
# targets briefly, and the demo. This is the README's test command; .ci/run
# calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test peers"
KUBEBUILDER_ASSETS=$(scripts/kube-test-bins.sh)
export KUBEBUILDER_ASSETS

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 30m ./...

echo "== demo"
go run ./cmd/mcpguard demo
