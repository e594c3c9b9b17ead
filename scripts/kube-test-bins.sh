#!/usr/bin/env bash
# Builds a real Kubernetes v1.37.2 from the Go module proxy into a cache
# directory keyed on the version: kube-apiserver and etcd (the webhook's envtest
# tests) and kubelet, kube-controller-manager, kube-scheduler, kube-proxy and
# kubectl (the real node of e2e/, scripts/kube-node.sh). One `go get` and one
# build cache serve all of them. Beside them, CoreDNS (the node's cluster DNS)
# with only the plugins it uses, from a throwaway module of its own. Idempotent:
# it does nothing when the binaries are already there. Prints the directory.
#
# k8s.io/kubernetes is built in a throwaway module outside mcpguard's go.mod,
# so it never enters the product's dependency graph.
set -euo pipefail
K=v1.37.2 S=v0.37.2 ETCD=v3.7.0 COREDNS=v1.15.0
out=${XDG_CACHE_HOME:-$HOME/.cache}/mcpguard/kube/$K
cmds="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"
complete() {
  kube_complete && [ -x "$out/coredns" ]
}
kube_complete() {
  for b in $cmds etcd; do [ -x "$out/$b" ] || return 1; done
}
if complete; then echo "$out"; exit 0; fi
# Several test runs may start at once on a shared machine: one builds, the
# others wait for it and then find the binaries.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
if command -v flock >/dev/null && ! flock -n 9; then
  echo "kube-test-bins: waiting for another build of $out" >&2
  flock 9
fi
if complete; then echo "$out"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! kube_complete; then
mkdir "$work/kube"
cd "$work/kube"
# k8s.io/kubernetes replaces its staging modules with ./staging paths; pin them
# to the published versions instead.
gomod=$(go mod download -json k8s.io/kubernetes@$K | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  printf 'module local/kubebins\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K"
  grep -oE 'k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk '{print $1}' |
    grep -vE 'sample-cli-plugin|sample-controller' |
    while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$S"; done
  printf ')\n'
} > go.mod
pkgs=""
for b in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$b@$K"; done
# shellcheck disable=SC2086 # word splitting of the package list is intended
go get $pkgs go.etcd.io/etcd/server/v3@$ETCD >&2
V=k8s.io/component-base/version
# Without the -X version stamps the apiserver reports v0.0.0-master, which confuses clients.
LD="-s -w -X $V.gitVersion=$K -X $V.gitMajor=1 -X $V.gitMinor=37 -X $V.gitTreeState=clean -X $V.buildDate=2026-01-01T00:00:00Z"
mkdir -p "$out.tmp"
for b in $cmds; do
  # A partial earlier build (the apiserver and etcd of an older version of this
  # script) is kept: only what is missing is built.
  if [ -x "$out/$b" ]; then cp "$out/$b" "$out.tmp/$b"; continue; fi
  CGO_ENABLED=0 go build -trimpath -ldflags "$LD" -o "$out.tmp/$b" "k8s.io/kubernetes/cmd/$b" >&2
done
if [ -x "$out/etcd" ]; then cp "$out/etcd" "$out.tmp/etcd"; else
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
fi
if [ -x "$out/coredns" ]; then cp "$out/coredns" "$out.tmp/coredns"; fi
rm -rf "$out" && mv "$out.tmp" "$out"
fi

# CoreDNS with the plugins the node's cluster DNS uses (kubernetes, cache,
# errors), not the cloud providers' of the full build.
if [ ! -x "$out/coredns" ]; then
  mkdir "$work/coredns"
  cd "$work/coredns"
  cat > main.go <<'GO'
// Command coredns is CoreDNS with only the plugins a test node uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

// The plugin chain, in CoreDNS's own order (its plugin.cfg).
func init() { dnsserver.Directives = []string{"errors", "cache", "kubernetes"} }

func main() { coremain.Run() }
GO
  printf 'module local/coredns\n\ngo 1.26.0\n' > go.mod
  go get "github.com/coredns/coredns@$COREDNS" >&2
  go mod tidy >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" . >&2
  mv "$out/coredns.tmp" "$out/coredns"
fi
echo "$out"
