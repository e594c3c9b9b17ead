#!/usr/bin/env bash
# Builds mcpguard's release artifacts into dist/ (or $1): static binaries for
# linux and darwin on amd64 and arm64 (mcpguard, mcpguard-sidecar: the same
# command built with -tags sidecar, which the webhook injects, and
# mcpguard-rego, the sidecar's Rego worker), a .tar.gz of
# each platform, SHA256SUMS, and a
# CycloneDX SBOM of the modules linked into the binary. Two runs on the same
# commit produce byte-identical files:
#   - CGO_ENABLED=0, -trimpath (no build paths), -buildid= (no build ID),
#     -buildvcs=false with the commit stamped by -X (no tree-state noise);
#   - archives with a fixed owner, order and modification time (the commit's
#     time) and gzip without a name or time stamp;
#   - the SBOM without its random serial number and its timestamp.
# VERSION defaults to `git describe`; TARGETS to the four platforms.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=$(git rev-parse HEAD)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
# The version of cyclonedx-gomod the module proxy serves here.
CYCLONEDX_GOMOD=${CYCLONEDX_GOMOD:-github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0}
LDFLAGS="-s -w -buildid= -X main.version=$VERSION -X main.commit=$COMMIT"

rm -rf "$out"
mkdir -p "$out"
for target in $TARGETS; do
  os=${target%/*} arch=${target#*/}
  name=mcpguard-$VERSION-$os-$arch
  mkdir -p "$out/$name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false -ldflags "$LDFLAGS" \
    -o "$out/$name/mcpguard" ./cmd/mcpguard
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -tags sidecar -trimpath -buildvcs=false -ldflags "$LDFLAGS" \
    -o "$out/$name/mcpguard-sidecar" ./cmd/mcpguard
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false -ldflags "$LDFLAGS" \
    -o "$out/$name/mcpguard-rego" ./cmd/mcpguard-rego
  touch -d "@$SOURCE_DATE_EPOCH" "$out/$name/mcpguard" "$out/$name/mcpguard-sidecar" "$out/$name/mcpguard-rego" "$out/$name"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --format=gnu -C "$out" -cf - "$name" | gzip -n -9 > "$out/$name.tar.gz"
done
# The SBOM lists the module graph's modules that mcpguard's packages need
# (`mod` without -test: not the test-only validation modules), with versions
# and hashes. (`app` mode would narrow it to cmd/mcpguard but fails in a git
# worktree: its go-git cannot resolve a worktree's HEAD.)
GOFLAGS=-buildvcs=false go run "$CYCLONEDX_GOMOD" mod -json -noserial -notimestamp -licenses=false \
  -output "$out/mcpguard-$VERSION.cdx.json" . >&2
# The sums are computed before SHA256SUMS is written, so it never lists itself.
sums=$(cd "$out" && {
  find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum
  find . -mindepth 2 -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum
})
printf '%s\n' "$sums" > "$out/SHA256SUMS"
touch -d "@$SOURCE_DATE_EPOCH" "$out"/*
echo "$out"
