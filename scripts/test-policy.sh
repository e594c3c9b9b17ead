#!/usr/bin/env bash
# Tests a sidecar policy offline against the design's verified results (the
# same calls scripts/demo-complete.sh makes on a cluster), and optionally
# checks that a namespace's ConfigMap holds exactly the file that was tested.
# Needs no cluster unless --namespace is given. Read-only.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/test-policy.sh [options]

Checks the policy (mcpguard policy check), then decides each call of the
design's table with `mcpguard policy eval` and compares with the expected
outcome. Exit 0 when every row matches, 1 when one does not, 2 on bad usage.

Options:
  --policy FILE       the policy to test (default:
                      manifests/policies/approved-apis.yaml)
  --prefix PREFIX     the gateway's tool-name prefix, as the sidecar sees the
                      names (e.g. weather_ for weather_fetch_url; default none)
  --mcpguard BIN      the mcpguard binary (default: mcpguard on PATH, else
                      `go run ./cmd/mcpguard` from the repository)
  --namespace NS      also check that ConfigMap mcpguard-policy in NS holds
                      this file byte for byte (needs oc or kubectl)
  -h, --help          this help
EOF
}

die() { echo "test-policy.sh: $*" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
policy=$repo/manifests/policies/approved-apis.yaml prefix="" bin="" namespace=""
while [ $# -gt 0 ]; do
  case "$1" in
    --policy) [ $# -ge 2 ] || die "--policy needs a file"; policy=$2; shift 2 ;;
    --policy=*) policy=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --mcpguard) [ $# -ge 2 ] || die "--mcpguard needs a path"; bin=$2; shift 2 ;;
    --mcpguard=*) bin=${1#*=}; shift ;;
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; namespace=$2; shift 2 ;;
    --namespace=*) namespace=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -f "$policy" ] || die "policy file $policy not found"
[ -z "$prefix" ] || [[ "$prefix" =~ ^[a-z0-9][a-z0-9_]*$ ]] || die "--prefix $prefix is not a gateway prefix ([a-z0-9][a-z0-9_]*)"

if [ -n "$bin" ]; then mcpguard=("$bin")
elif command -v mcpguard >/dev/null 2>&1; then mcpguard=(mcpguard)
else mcpguard=(go run "$repo/cmd/mcpguard")
fi

echo "== mcpguard policy check $policy"
"${mcpguard[@]}" policy check "$policy"

# The design's verified results, then what only an in-pod, argument-aware
# proxy catches: tool|arguments|expected.
rows=(
  'fetch_url|{"url":"https://malicious.com"}|BLOCKED'
  'fetch_url|{"url":"https://api.weather.gov"}|ALLOWED'
  'fetch_url|{"url":"http://169.254.169.254/metadata"}|BLOCKED'
  'fetch_url|{"url":"http://0xA9FEA9FE/latest/meta-data/"}|BLOCKED'
  'fetch_url|{"url":"http://[::ffff:a9fe:a9fe]/latest/meta-data/"}|BLOCKED'
  'fetch_url|{"url":"https://api.weather.gov@attacker.example/"}|BLOCKED'
  'fetch_url|{"url":"https://httpbin.org/anything/exfil"}|BLOCKED'
  'fetch_url|{"url":"https://httpbin.org/get"}|ALLOWED'
  'read_file|{"path":"/workspace/notes.md"}|ALLOWED'
  'read_file|{"path":"/workspace/../etc/passwd"}|BLOCKED'
  'run_command|{"cmd":"id"}|BLOCKED'
  'get_time|{}|ALLOWED'
)

failed=0
printf '\n%-3s %-70s %-8s %-8s %s\n' "" "CALL" "WANT" "GOT" "RULE"
for row in "${rows[@]}"; do
  IFS='|' read -r tool args want <<<"$row"
  set +e
  decision=$("${mcpguard[@]}" policy eval --policy "$policy" --tool "$prefix$tool" --args "$args" 2>&1)
  rc=$?
  set -e
  case $rc in
    0) got=ALLOWED ;;
    1) got=BLOCKED ;;
    *) echo "$decision" >&2; die "mcpguard policy eval failed on $tool $args" ;;
  esac
  rule=$(sed -n 's/.*"rule":"\([^"]*\)".*/\1/p' <<<"$decision")
  mark="✓"
  if [ "$got" != "$want" ]; then mark="✗"; failed=$((failed + 1)); fi
  printf '%-3s %-70s %-8s %-8s %s\n' "$mark" "$prefix$tool $args" "$want" "$got" "$rule"
done

if [ -n "$namespace" ]; then
  if [ -n "${KUBECTL:-}" ]; then k=$KUBECTL
  elif command -v oc >/dev/null 2>&1; then k=oc
  elif command -v kubectl >/dev/null 2>&1; then k=kubectl
  else die "--namespace needs oc or kubectl on PATH (or KUBECTL)"
  fi
  echo
  echo "== ConfigMap $namespace/mcpguard-policy"
  # Compare bytes through files: $(...) would drop trailing newlines.
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  "$k" -n "$namespace" get configmap mcpguard-policy -o go-template='{{index .data "policy.yaml"}}' >"$tmp"
  if cmp -s "$tmp" "$policy"; then
    echo "✓ the cluster's policy is the tested file"
  else
    echo "✗ the cluster's policy differs from $policy (scripts/setup-namespaces.sh --policy applies it)"
    failed=$((failed + 1))
  fi
fi

echo
if [ "$failed" -gt 0 ]; then
  echo "$failed check(s) did not match"
  exit 1
fi
echo "every check matched"
