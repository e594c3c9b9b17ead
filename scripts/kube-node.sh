#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, inside its own network
# namespace (internal/kubenode says how, and what keeps it from reaching
# anything off the machine). Needs root.
#
#   scripts/kube-node.sh up          build the binaries (once per machine), start the node
#   scripts/kube-node.sh kubectl ... kubectl inside the node's namespace
#   scripts/kube-node.sh exec CMD... any command inside it (KUBECONFIG and the binaries on PATH)
#   scripts/kube-node.sh down        stop everything by PID, remove the namespace, routes,
#                                    mounts and cgroups, restore sysctls; safe to run twice
#
# MCPGUARD_NODE_DIR (default /tmp/mcpguard-node) holds its state and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${MCPGUARD_NODE_DIR:-/tmp/mcpguard-node}
ns=mcpguard-node
case "${1:-}" in
  up)
    pkgs=(containerd runc containernetworking-plugins iptables)
    if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    fi
    bin=$(scripts/kube-test-bins.sh)
    go run ./internal/kubenode/cmd/kube-node up "$bin"
    echo "scripts/kube-node.sh kubectl get nodes   # or: scripts/kube-node.sh exec SHELL" >&2 ;;
  down)
    bin=$(scripts/kube-test-bins.sh)
    go run ./internal/kubenode/cmd/kube-node down "$bin" ;;
  kubectl|exec)
    what=$1; shift
    bin=$(scripts/kube-test-bins.sh)
    [ "$what" = kubectl ] && set -- "$bin/kubectl" "$@"
    KUBECONFIG=$dir/pki/admin.kubeconfig PATH=$bin:$PATH exec nsenter --net=/run/netns/$ns -- "$@" ;;
  *) echo "usage: scripts/kube-node.sh up|down|kubectl ARGS|exec CMD" >&2; exit 2 ;;
esac
