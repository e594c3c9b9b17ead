#!/usr/bin/env bash
# Installs mcpguard's admission webhook and, on request, the other layers'
# manifests (docs/operations.md). Idempotent: every step is an apply, a merge
# patch or a guarded append, so running it twice changes nothing the second
# time. Uses oc when it is on PATH, else kubectl ($KUBECTL overrides).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [options]

Installs the mcpguard webhook into mcpguard-system and waits for it.

Options:
  --platform P          openshift | kubernetes | kubernetes-cert-manager
                        (default: openshift when the cluster serves
                        route.openshift.io, else kubernetes)
  --image IMAGE         the mcpguard image (webhook and sidecar), e.g.
                        ghcr.io/example/mcpguard:v0.1.0 (default: the one in
                        manifests/base/kustomization.yaml)
  --gateway-policy      also apply the Kuadrant AuthPolicy on the MCP gateway
                        (manifests/policies/gateway; needs Kuadrant)
  --mesh-registry-only  also set REGISTRY_ONLY mesh-wide on the Sail operator's
                        cluster-scoped Istio resource "default", and apply the
                        tool servers' ServiceEntry (manifests/istio/servers)
  --body-check          also append the Authorino ext_authz provider to the
                        mesh config and apply the gateway body check
                        (manifests/istio/body-check; needs Sail and Kuadrant)
  --kata                also create the KataConfig (OpenShift sandboxed
                        containers): REBOOTS every worker node; needs --yes
  --yes                 confirm --kata without a prompt
  --dry-run             send everything with --dry-run=server: the cluster
                        validates, nothing changes
  --timeout DURATION    how long to wait for the webhook (default 180s)
  -h, --help            this help

Environment: KUBECTL (the CLI to use), MCPGUARD_MANIFESTS (the manifests
directory; default: the one beside this script).
EOF
}

# relto DIR FROM prints DIR relative to FROM (both absolute and physical):
# kustomize refuses absolute paths to other kustomizations.
relto() { local up="" from=$2; while [ "$from" != / ]; do up+=../; from=$(dirname "$from"); done; printf '%s%s' "$up" "${1#/}"; }
die() { echo "install.sh: $*" >&2; exit 2; }

platform="" image="" gateway_policy=false registry_only=false body_check=false
kata=false yes=false dry_run=false timeout=180s
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) [ $# -ge 2 ] || die "--platform needs a value"; platform=$2; shift 2 ;;
    --platform=*) platform=${1#*=}; shift ;;
    --image) [ $# -ge 2 ] || die "--image needs a value"; image=$2; shift 2 ;;
    --image=*) image=${1#*=}; shift ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --gateway-policy) gateway_policy=true; shift ;;
    --mesh-registry-only) registry_only=true; shift ;;
    --body-check) body_check=true; shift ;;
    --kata) kata=true; shift ;;
    --yes) yes=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$platform" in
  ""|openshift|kubernetes|kubernetes-cert-manager) ;;
  *) die "--platform $platform: want openshift, kubernetes or kubernetes-cert-manager" ;;
esac
if [ -n "$image" ] && ! [[ "$image" =~ ^[a-z0-9][a-z0-9._/:@-]*$ ]]; then
  die "--image $image is not an image reference"
fi
[[ "$timeout" =~ ^[0-9]+[smh]$ ]] || die "--timeout $timeout: want e.g. 180s or 5m"

# Confirm the reboot before touching anything.
if $kata && ! $yes; then
  if [ -t 0 ]; then
    read -r -p "Creating the KataConfig reboots every worker node. Continue? [y/N] " answer
    [[ "$answer" == [yY]* ]] || die "not confirmed"
  else
    die "--kata reboots every worker node: confirm with --yes"
  fi
fi

root=$(cd "${MCPGUARD_MANIFESTS:-$(dirname "$0")/../manifests}" && pwd -P) || die "no manifests directory"
[ -f "$root/base/kustomization.yaml" ] || die "no manifests at $root"

if [ -n "${KUBECTL:-}" ]; then k=$KUBECTL
elif command -v oc >/dev/null 2>&1; then k=oc
elif command -v kubectl >/dev/null 2>&1; then k=kubectl
else die "neither oc nor kubectl is on PATH (or set KUBECTL)"
fi

dry=()
$dry_run && dry=(--dry-run=server)
say() { echo "==> $*" >&2; }
indent() { local line; while IFS= read -r line; do printf '%s%s\n' "$1" "$line"; done; }

if [ -z "$platform" ]; then
  if [ -n "$("$k" api-resources --api-group=route.openshift.io -o name 2>/dev/null)" ]; then
    platform=openshift
  else
    platform=kubernetes
  fi
  say "platform: $platform (detected; --platform overrides)"
fi

# The overlay, with the image overridden when asked: a throwaway
# kustomization that refers to the overlay by a relative path (kustomize
# allows directories outside its root, but not absolute ones).
overlay=$root/overlays/$platform
if [ -n "$image" ]; then
  tmp=$(cd "$(mktemp -d)" && pwd -P)
  trap 'rm -rf "$tmp"' EXIT
  name=${image%@*} digest=""
  [ "$name" != "$image" ] && digest=${image#*@}
  tag=""
  if [[ "${name##*/}" == *:* ]]; then tag=${name##*:}; name=${name%:*}; fi
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - $(relto "$overlay" "$tmp")"
    echo "images:"
    echo "  - name: ghcr.io/mcpguard/mcpguard"
    echo "    newName: $name"
    if [ -n "$digest" ]; then echo "    digest: $digest"; elif [ -n "$tag" ]; then echo "    newTag: $tag"; fi
    # The base copied its image into the webhook's --image before this
    # override: copy it again, or the sidecar would keep the old image.
    echo "replacements:"
    echo "  - source:"
    echo "      kind: Deployment"
    echo "      name: mcpguard-webhook"
    echo "      fieldPath: spec.template.spec.containers.[name=webhook].image"
    echo "    targets:"
    echo "      - select:"
    echo "          kind: Deployment"
    echo "          name: mcpguard-webhook"
    echo "        fieldPaths:"
    echo "          - spec.template.spec.containers.[name=webhook].env.[name=MCPGUARD_SIDECAR_IMAGE].value"
  } > "$tmp/kustomization.yaml"
  overlay=$tmp
fi

say "webhook ($platform) from $overlay"
"$k" apply "${dry[@]}" -k "$overlay"
if ! $dry_run; then
  say "waiting for the webhook (up to $timeout)"
  "$k" -n mcpguard-system rollout status deployment/mcpguard-webhook --timeout="$timeout"
fi

if $gateway_policy; then
  say "Kuadrant AuthPolicy on the MCP gateway"
  "$k" apply "${dry[@]}" -k "$root/policies/gateway"
fi

if $registry_only; then
  say "mesh-wide REGISTRY_ONLY on the Istio resource default (cluster-scoped)"
  "$k" patch istio default --type=merge --patch-file "$root/istio/sail/registry-only.yaml" "${dry[@]}"
  say "approved external APIs for the tool servers"
  "$k" apply "${dry[@]}" -k "$root/istio/servers"
fi

if $body_check; then
  provider=mcpguard-authorino
  names=$("$k" get istio default -o jsonpath='{.spec.values.meshConfig.extensionProviders[*].name}')
  if [[ " $names " == *" $provider "* ]]; then
    say "ext_authz provider $provider already in the mesh config"
  else
    # A merge patch replaces extensionProviders wholesale and would drop
    # the providers already there: append with a JSON patch. With no
    # provider yet there is nothing to drop, and a merge patch also creates
    # meshConfig when it is missing (a JSON patch "add" cannot).
    provider_yaml=$(grep -v '^[[:space:]]*#' "$root/istio/sail/ext-authz-provider.yaml")
    if [ -n "$names" ]; then
      say "appending ext_authz provider $provider to the mesh config (keeping: $names)"
      patch=$(printf -- '- op: add\n  path: /spec/values/meshConfig/extensionProviders/-\n  value:\n%s\n' "$(indent '    ' <<<"$provider_yaml")")
      "$k" patch istio default --type=json -p "$patch" "${dry[@]}"
    else
      say "adding ext_authz provider $provider to the mesh config"
      patch=$(printf -- 'spec:\n  values:\n    meshConfig:\n      extensionProviders:\n        -\n%s\n' "$(indent '          ' <<<"$provider_yaml")")
      "$k" patch istio default --type=merge -p "$patch" "${dry[@]}"
    fi
  fi
  say "gateway body check (AuthorizationPolicy CUSTOM + AuthConfig)"
  "$k" apply "${dry[@]}" -k "$root/istio/body-check"
fi

if $kata; then
  say "KataConfig (workers reboot one pool at a time; watch: $k get kataconfig -o yaml)"
  "$k" apply "${dry[@]}" -f "$root/osc/kataconfig.yaml"
fi

say "done. Next: scripts/setup-namespaces.sh NAMESPACE to prepare a namespace for agents"
