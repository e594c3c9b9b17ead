#!/usr/bin/env bash
# Runs the design's verified results against a REAL cluster and prints them:
# layer 1 (argument policy) through the sidecar, layer 2 (egress) by direct
# calls from the agent container, layer 3 (Kata) by looking at the pod and
# from inside it. Exit 0 when every row matched, 1 when one did not.
#
# Needs: the webhook installed (scripts/install.sh), a namespace prepared
# (scripts/setup-namespaces.sh agents), the MCP gateway with the design's
# tools (fetch_url, read_file, run_command, get_time) behind
# mcp-gateway-istio.gateway-system, and for the Kata rows OpenShift
# sandboxed containers. It cannot run without a cluster; `mcpguard demo` is
# the same table on one machine.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/demo-complete.sh [options]

Options:
  --namespace NS       where the agent runs (default: agents)
  --deployment NAME    the agent Deployment (default: weather-agent)
  --no-deploy          use the running Deployment; do not apply
                       manifests/osc/agent first
  --prefix PREFIX      the gateway's tool-name prefix of the tool server
                       (e.g. weather_; default none)
  --runtime-class RC   the runtime class the pod must run with (default: kata;
                       "" skips the Kata rows)
  --timeout DURATION   how long to wait for the agent (default 300s)
  -h, --help           this help

Environment: KUBECTL (the CLI to use), MCPGUARD_MANIFESTS.
EOF
}

die() { echo "demo-complete.sh: $*" >&2; exit 2; }

ns=agents deploy=weather-agent deploy_agent=true prefix="" runtime_class=kata timeout=300s
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; ns=$2; shift 2 ;;
    --namespace=*) ns=${1#*=}; shift ;;
    --deployment) [ $# -ge 2 ] || die "--deployment needs a value"; deploy=$2; shift 2 ;;
    --deployment=*) deploy=${1#*=}; shift ;;
    --no-deploy) deploy_agent=false; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --runtime-class) [ $# -ge 2 ] || die "--runtime-class needs a value"; runtime_class=$2; shift 2 ;;
    --runtime-class=*) runtime_class=${1#*=}; shift ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$ns" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "--namespace $ns is not a namespace name"
[[ "$deploy" =~ ^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$ ]] || die "--deployment $deploy is not a name"
[ -z "$prefix" ] || [[ "$prefix" =~ ^[a-z0-9][a-z0-9_]*$ ]] || die "--prefix $prefix is not a gateway prefix"
[[ "$timeout" =~ ^[0-9]+[smh]$ ]] || die "--timeout $timeout: want e.g. 300s"

root=${MCPGUARD_MANIFESTS:-$(cd "$(dirname "$0")/../manifests" && pwd)}
if [ -n "${KUBECTL:-}" ]; then k=$KUBECTL
elif command -v oc >/dev/null 2>&1; then k=oc
elif command -v kubectl >/dev/null 2>&1; then k=kubectl
else die "neither oc nor kubectl is on PATH (or set KUBECTL)"
fi
say() { echo "==> $*" >&2; }

# ---- the agent pod -------------------------------------------------------
"$k" -n mcpguard-system get deployment mcpguard-webhook >/dev/null ||
  die "the mcpguard webhook is not installed: run scripts/install.sh"
if $deploy_agent; then
  [ "$ns" = agents ] || die "manifests/osc/agent deploys into agents; use --no-deploy with --namespace"
  say "deploying the sandboxed agent (manifests/osc/agent)"
  "$k" apply -k "$root/osc/agent"
fi
say "waiting for $ns/$deploy (up to $timeout)"
"$k" -n "$ns" rollout status "deployment/$deploy" --timeout="$timeout" >&2
# shellcheck disable=SC2016 # a Go template, expanded by the CLI, not the shell
selector=$("$k" -n "$ns" get deployment "$deploy" -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}')
pod=$("$k" -n "$ns" get pods -l "${selector%,}" --field-selector=status.phase=Running -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}' | head -n 1)
[ -n "$pod" ] || die "no running pod of $ns/$deploy"
say "agent pod $ns/$pod"

# in_agent runs a command in the agent container (not the sidecar).
in_agent() { "$k" -n "$ns" exec "$pod" -c agent -- "$@"; }

# ---- results table --------------------------------------------------------
rows=() failed=0
# record LAYER CHECK WANT GOT [DETAIL]
record() {
  local mark="✓"
  if [ "$3" != "$4" ]; then mark="✗"; failed=$((failed + 1)); fi
  rows+=("$(printf '%s|%s|%s|%s|%s|%s' "$mark" "$1" "$2" "$3" "$4" "${5:-}")")
}

# ---- layer 1: the argument policy, through the sidecar ---------------------
# The agent speaks MCP (Streamable HTTP, 2025-06-18) to the sidecar on
# 127.0.0.1 with curl: initialize, initialized, then one tools/call per row.
# The sidecar answers a denial with HTTP 403 and the rule in the body.
# shellcheck disable=SC2016 # expanded by the container's shell, on purpose
mcp_url=$(in_agent sh -c 'printf %s "$MCP_GATEWAY_URL"')
[ -n "$mcp_url" ] || die "MCP_GATEWAY_URL is not set in the agent container: was the pod injected? ($k -n $ns get pod $pod -o yaml)"
proto=2025-06-18
# post BODY [SESSION] prints "STATUS SESSION" on the first line, then the body.
post() {
  local hdrs=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  [ -n "${2:-}" ] && hdrs+=(-H "Mcp-Session-Id: $2" -H "MCP-Protocol-Version: $proto")
  in_agent curl -sS -m 30 -D /dev/stdout -o /dev/stdout "${hdrs[@]}" --data-binary "$1" "$mcp_url" |
    tr -d '\r' | awk '
      NR == 1 { status = $2; next }
      !body && /^$/ { body = 1; print status " " (session == "" ? "-" : session); next }
      !body && tolower($1) == "mcp-session-id:" { session = $2; next }
      body { print }'
}
init=$(post "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"$proto\",\"capabilities\":{},\"clientInfo\":{\"name\":\"demo-complete\",\"version\":\"1\"}}}")
read -r init_status session <<<"$(head -n 1 <<<"$init")"
[ "$init_status" = 200 ] || die "initialize through the sidecar answered $init_status: $(tail -n +2 <<<"$init")"
post '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$session" >/dev/null

call_rows=(
  'fetch_url|{"url":"https://malicious.com"}|BLOCKED'
  'fetch_url|{"url":"https://api.weather.gov"}|ALLOWED'
  'fetch_url|{"url":"http://169.254.169.254/metadata"}|BLOCKED'
  'fetch_url|{"url":"http://0xA9FEA9FE/latest/meta-data/"}|BLOCKED'
  'fetch_url|{"url":"https://httpbin.org/anything/exfil"}|BLOCKED'
  'read_file|{"path":"/workspace/../etc/passwd"}|BLOCKED'
  'run_command|{"cmd":"id"}|BLOCKED'
  'get_time|{}|ALLOWED'
)
id=2
for r in "${call_rows[@]}"; do
  IFS='|' read -r tool args want <<<"$r"
  out=$(post "{\"jsonrpc\":\"2.0\",\"id\":$id,\"method\":\"tools/call\",\"params\":{\"name\":\"$prefix$tool\",\"arguments\":$args}}" "$session")
  id=$((id + 1))
  status=$(head -n 1 <<<"$out" | cut -d' ' -f1)
  body=$(tail -n +2 <<<"$out")
  got=ALLOWED
  # 403 (or a JSON-RPC error, or isError with --deny-as tool-error) is a block.
  if [ "$status" != 200 ] || grep -q '"error":{' <<<"$body" || grep -q '"isError":true' <<<"$body"; then got=BLOCKED; fi
  rule=$(sed -n 's/.*"rule":"\([^"]*\)".*/\1/p' <<<"$body" | head -n 1)
  record "1 policy (sidecar)" "$prefix$tool $args" "$want" "$got" "HTTP $status${rule:+ rule $rule}"
done

# ---- layer 2: egress, straight from the agent container -------------------
# curl exits 0 only when a connection and an HTTP exchange succeeded.
direct() { if in_agent curl -sS -o /dev/null -m 10 "$@" >/dev/null 2>&1; then echo REACHED; else echo BLOCKED; fi; }
record "2 egress" "agent curl https://malicious.com" BLOCKED "$(direct https://malicious.com)"
record "2 egress" "agent curl https://api.weather.gov (approved for tool servers only)" BLOCKED "$(direct https://api.weather.gov)"
record "2 egress" "agent curl http://169.254.169.254/" BLOCKED "$(direct http://169.254.169.254/)"
# The gateway itself is reachable (the sidecar needs it) but refuses a
# caller without the sidecar's token: the agent has none.
gw=$(in_agent curl -sS -o /dev/null -w '%{http_code}' -m 10 -X POST \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -H 'Host: mcp.127-0-0-1.sslip.io' \
  --data-binary '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_command","arguments":{"cmd":"id"}}}' \
  http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp 2>/dev/null || true)
record "2 credential" "agent calls the gateway directly, no token" 401 "${gw:-none}"
tokens=$(in_agent sh -c 'ls /var/run/secrets/kubernetes.io/serviceaccount/token /var/run/secrets/mcpguard/token 2>/dev/null | wc -l' | tr -d ' ')
record "2 credential" "service account tokens visible to the agent" 0 "$tokens"

# ---- layer 3: the sandbox -------------------------------------------------
if [ -n "$runtime_class" ]; then
  rc=$("$k" -n "$ns" get pod "$pod" -o go-template='{{or .spec.runtimeClassName "none"}}')
  record "3 sandbox" "pod runtimeClassName" "$runtime_class" "$rc"
  node=$("$k" -n "$ns" get pod "$pod" -o go-template='{{.spec.nodeName}}')
  host_kernel=$("$k" get node "$node" -o go-template='{{.status.nodeInfo.kernelVersion}}')
  guest_kernel=$(in_agent uname -r)
  same=DIFFERENT
  [ "$host_kernel" = "$guest_kernel" ] && same=SAME
  record "3 sandbox" "agent kernel vs node kernel (a VM has its own)" DIFFERENT "$same" "guest $guest_kernel, node $host_kernel"
fi
# shellcheck disable=SC2016 # runs in the container's shell
sockets=$(in_agent sh -c 'n=0; for s in /var/run/docker.sock /run/containerd/containerd.sock /var/run/crio/crio.sock /run/podman/podman.sock; do [ -e "$s" ] && n=$((n+1)); done; echo $n')
record "3 sandbox" "container runtime sockets inside the agent" 0 "$sockets"
side=$("$k" -n "$ns" get pod "$pod" -o go-template='{{range .spec.initContainers}}{{if eq .name "mcpguard-proxy"}}{{.restartPolicy}}{{end}}{{end}}')
record "mcpguard" "mcpguard-proxy is a native sidecar" Always "${side:-missing}"

# ---- print ----------------------------------------------------------------
echo
printf '%-2s %-20s %-66s %-10s %-10s %s\n' "" LAYER CHECK WANT GOT DETAIL
for r in "${rows[@]}"; do
  IFS='|' read -r mark layer check want got detail <<<"$r"
  printf '%-2s %-20s %-66s %-10s %-10s %s\n' "$mark" "$layer" "$check" "$want" "$got" "$detail"
done
echo
if [ "$failed" -gt 0 ]; then
  echo "$failed row(s) did not match"
  exit 1
fi
echo "every row matched"
