#!/usr/bin/env bash
# The full test suite, from a fresh clone: installs what the tests need, then
# runs vet, staticcheck, every test (real MCP peers, a real kube-apiserver),
# the end-to-end suite (e2e/: the image built from the Dockerfile with podman,
# run on a real single-node Kubernetes inside a network namespace; needs root),
# each fuzz target for a short bounded time (scripts/fuzz.sh), a short soak
# (bench/soak -short), and the demo.
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

step "installing the e2e node's runtime and image tools from Debian (containerd, runc, CNI plugins, iptables, podman, buildah)"
node_pkgs=(containerd runc containernetworking-plugins iptables curl busybox-static podman buildah ca-certificates)
if ! dpkg -s "${node_pkgs[@]}" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${node_pkgs[@]}" >/dev/null) ||
    echo "could not install ${node_pkgs[*]}; e2e will say what is missing" >&2
fi

step "building the Kubernetes binaries (kube-apiserver, etcd, and the e2e node's, with CoreDNS) from the Go module proxy (cached per machine)"
KUBEBUILDER_ASSETS=$(scripts/kube-test-bins.sh)
export KUBEBUILDER_ASSETS

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "go test"
# e2e/ runs alone below: it builds an image (and drives a whole node) and
# must not share the two cores with the other packages' timing-sensitive tests.
mapfile -t pkgs < <(go list ./... | grep -v '/e2e$')
go test -count=1 -timeout 30m "${pkgs[@]}"

step "e2e: the image built from the Dockerfile (podman), a real node in a network namespace, the shipped overlay installed on it"
e2e_log=$(mktemp)
if ! go test -count=1 -timeout 30m -v ./e2e/ >"$e2e_log" 2>&1; then
  tail -n 300 "$e2e_log"
  echo "e2e failed; the whole log is $e2e_log" >&2
  exit 1
fi
grep -E '^(--- |ok |e2e figure|kubenode: )' "$e2e_log"

step "fuzzing each target for ${FUZZTIME:=10s}"
FUZZTIME=$FUZZTIME scripts/fuzz.sh

step "soak, short form: sessions and stateless load through the proxy process, policy reloaded every second"
go run ./bench/soak -short

step "demo"
go run ./cmd/mcpguard demo

step "done"
