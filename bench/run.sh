#!/usr/bin/env bash
# Measures the issue's performance figures (#2): builds mcpguard's sidecar as it ships
# (CGO_ENABLED=0, -trimpath) and runs bench/load against it, on loopback.
# Prints a markdown table for the README on stdout; progress on stderr.
#
#   bench/run.sh                 # 3 repetitions, 2s per cell (about 3 minutes)
#   bench/run.sh -reps 5 -duration 3s
#
# Any flag is passed to bench/load (go run ./bench/load -h lists them). The
# run is bounded (-timeout, default 15m) and stops every process it started.
set -euo pipefail

cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "building mcpguard and bench/load into $out" >&2
# The sidecar build (-tags sidecar): the binary an agent's pod runs.
CGO_ENABLED=0 go build -tags sidecar -trimpath -o "$out/mcpguard" ./cmd/mcpguard
go build -o "$out/load" ./bench/load

echo "machine: $(nproc) CPUs; $(uptime)" >&2
"$out/load" -mcpguard "$out/mcpguard" "$@"
echo "done; $(uptime)" >&2
