#!/usr/bin/env bash
# Prepares namespaces for guarded agents: the namespace itself (in the mesh),
# the sidecar's policy ConfigMap, the REGISTRY_ONLY Sidecar and the egress
# NetworkPolicy (manifests/istio/agents), and on OpenShift the OVN
# EgressFirewall. Idempotent: everything is applied. Uses oc when it is on
# PATH, else kubectl ($KUBECTL overrides).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup-namespaces.sh [options] NAMESPACE...

Options:
  --policy FILE       the sidecar's policy (a ToolPolicy YAML file) for these
                      namespaces (default: manifests/policies/approved-apis.yaml)
  --inject-all        label the namespaces mcpguard.dev/inject=enabled: every
                      new pod gets the sidecar unless annotated "false"
                      (default: pods opt in with mcpguard.dev/inject: "true")
  --ambient           put the namespaces in Istio ambient mode
                      (istio.io/dataplane-mode=ambient) instead of sidecar mode
  --no-egress-firewall
                      skip the OVN EgressFirewall even on OpenShift
  --dry-run           send everything with --dry-run=server
  -h, --help          this help

Environment: KUBECTL (the CLI to use), MCPGUARD_MANIFESTS (the manifests
directory; default: the one beside this script).
EOF
}

# relto DIR FROM prints DIR relative to FROM (both absolute and physical):
# kustomize refuses absolute paths to other kustomizations.
relto() { local up="" from=$2; while [ "$from" != / ]; do up+=../; from=$(dirname "$from"); done; printf '%s%s' "$up" "${1#/}"; }
die() { echo "setup-namespaces.sh: $*" >&2; exit 2; }
say() { echo "==> $*" >&2; }

policy="" inject_all=false ambient=false egress_firewall=true dry_run=false
namespaces=()
while [ $# -gt 0 ]; do
  case "$1" in
    --policy) [ $# -ge 2 ] || die "--policy needs a file"; policy=$2; shift 2 ;;
    --policy=*) policy=${1#*=}; shift ;;
    --inject-all) inject_all=true; shift ;;
    --ambient) ambient=true; shift ;;
    --no-egress-firewall) egress_firewall=false; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; namespaces+=("$@"); break ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) namespaces+=("$1"); shift ;;
  esac
done
[ ${#namespaces[@]} -gt 0 ] || { usage >&2; die "no namespace given"; }
for ns in "${namespaces[@]}"; do
  # RFC 1123 label, as Kubernetes requires of a namespace name.
  [[ "$ns" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "$ns is not a valid namespace name"
  case "$ns" in
    mcpguard-system|kube-*|openshift|openshift-*|default)
      die "$ns is a system namespace: the webhook never injects there" ;;
  esac
done

root=$(cd "${MCPGUARD_MANIFESTS:-$(dirname "$0")/../manifests}" && pwd -P) || die "no manifests directory"
[ -f "$root/istio/agents/kustomization.yaml" ] || die "no manifests at $root"
policy=${policy:-$root/policies/approved-apis.yaml}
[ -f "$policy" ] || die "policy file $policy not found"
policy=$(cd "$(dirname "$policy")" && pwd)/$(basename "$policy")

if [ -n "${KUBECTL:-}" ]; then k=$KUBECTL
elif command -v oc >/dev/null 2>&1; then k=oc
elif command -v kubectl >/dev/null 2>&1; then k=kubectl
else die "neither oc nor kubectl is on PATH (or set KUBECTL)"
fi
dry=()
$dry_run && dry=(--dry-run=server)

# OVN-Kubernetes' EgressFirewall exists on OpenShift (and OVN clusters).
if $egress_firewall && [ -z "$("$k" api-resources --api-group=k8s.ovn.org -o name 2>/dev/null | grep '^egressfirewalls' || true)" ]; then
  say "no EgressFirewall API (not OVN-Kubernetes): the NetworkPolicy is the only egress backstop"
  egress_firewall=false
fi

tmp=$(cd "$(mktemp -d)" && pwd -P)
trap 'rm -rf "$tmp"' EXIT

for ns in "${namespaces[@]}"; do
  say "namespace $ns"
  # One kustomization per namespace: the shipped pieces by relative path
  # (kustomize allows directories outside its root, not absolute ones), the
  # namespace set on all of them, and the policy from --policy.
  dir=$tmp/$ns
  mkdir -p "$dir"
  cp "$policy" "$dir/policy.yaml"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "namespace: $ns"
    echo "resources:"
    echo "  - namespace.yaml"
    echo "  - $(relto "$root/istio/agents" "$dir")"
    $egress_firewall && echo "  - $(relto "$root/istio/egressfirewall" "$dir")"
    echo "configMapGenerator:"
    echo "  - name: mcpguard-policy"
    echo "    files:"
    echo "      - policy.yaml"
    echo "    options:"
    echo "      disableNameSuffixHash: true"
    echo "      labels:"
    echo "        app.kubernetes.io/part-of: mcpguard"
    echo "        app.kubernetes.io/component: policy"
  } > "$dir/kustomization.yaml"
  {
    echo "apiVersion: v1"
    echo "kind: Namespace"
    echo "metadata:"
    echo "  name: $ns"
    echo "  labels:"
    if $ambient; then
      echo "    istio.io/dataplane-mode: ambient"
    else
      echo "    istio-injection: enabled"
    fi
    echo "    pod-security.kubernetes.io/enforce: restricted"
    echo "    pod-security.kubernetes.io/warn: restricted"
    $inject_all && echo "    mcpguard.dev/inject: enabled"
  } > "$dir/namespace.yaml"
  "$k" apply "${dry[@]}" -k "$dir"
done
say "done. Opt a pod in with the annotation mcpguard.dev/inject: \"true\" (and mcpguard.dev/runtime-class: kata for a Kata VM)"
