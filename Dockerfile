# syntax=docker/dockerfile:1
#
# mcpguard: one image for the admission webhook (`mcpguard webhook`, the
# entrypoint), the tooling, and the sidecar the webhook injects
# (`mcpguard-sidecar proxy`, the lean build of the same command, with its
# Rego worker mcpguard-rego beside it).
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/mcpguard/mcpguard:v0.1.0 .
#   podman build --build-arg VERSION=v0.1.0 -t ghcr.io/mcpguard/mcpguard:v0.1.0 .
#
# mcpguard's CI builds this file with podman (scripts/image-build.sh), with
# the two base images replaced through the build args below by local
# stand-ins of the same properties (no registry is reachable there), and
# e2e/image_test.go checks the image; e2e/ then runs it on a real node.

# The base images. The defaults are the production ones; only CI overrides
# them (--build-arg GO_IMAGE=... --build-arg BASE_IMAGE=...).
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

# Build stage: the Go release mcpguard is developed and tested with (go.mod
# asks for at least 1.26.4). The module and build caches are cache mounts, so
# a rebuild downloads nothing again.
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The version is stamped into main.version (`mcpguard version` prints it
# and the webhook records it in each pod's mcpguard.dev/status annotation).
ARG VERSION=dev
# Where the two binaries come from: "source" (the default) builds them here;
# "release" takes the ones scripts/release.sh (`make release`) wrote for this
# platform to dist/mcpguard-${VERSION}-linux-<arch>/ in the build context, so
# the image holds exactly the released, checksummed binaries (what
# scripts/image-build.sh does).
ARG BINARIES=source
# Static (CGO_ENABLED=0: no libc, so the distroless static base has all it
# needs), reproducible (-trimpath: no build paths), stripped (-s -w).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "$BINARIES" = release ]; then mkdir -p /out && cp "dist/mcpguard-${VERSION}-linux-$(go env GOARCH)/mcpguard" /out/mcpguard; else \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mcpguard ./cmd/mcpguard; fi
# The sidecar's binary, which every agent pod runs: the same command built
# with -tags sidecar, without the webhook, inject, pods and demo commands and
# the Kubernetes code they link (34 MB instead of 84, 8 MiB idle instead of
# 50; docs/performance.md, issue #18). The webhook injects it as the
# sidecar's command.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "$BINARIES" = release ]; then cp "dist/mcpguard-${VERSION}-linux-$(go env GOARCH)/mcpguard-sidecar" /out/mcpguard-sidecar; else \
    CGO_ENABLED=0 go build -tags sidecar -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mcpguard-sidecar ./cmd/mcpguard; fi
# The sidecar's Rego worker: the sidecar build links no OPA and, when a
# policy it loads has Rego modules, starts this beside it to evaluate them
# (cmd/mcpguard-rego; a policy without Rego starts nothing).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "$BINARIES" = release ]; then cp "dist/mcpguard-${VERSION}-linux-$(go env GOARCH)/mcpguard-rego" /out/mcpguard-rego; else \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mcpguard-rego ./cmd/mcpguard-rego; fi

# Final stage: no shell, no package manager, nothing but the binary and CA
# certificates (the proxy may dial the gateway over TLS).
FROM ${BASE_IMAGE}
ARG VERSION=dev
# The commit the image was built from: --build-arg REVISION=$(git rev-parse HEAD).
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcpguard" \
      org.opencontainers.image.description="MCP-aware sidecar proxy: per-tool argument policy for AI agents" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.url="https://mcpguard.dev"
COPY --from=build /out/mcpguard /usr/local/bin/mcpguard
COPY --from=build /out/mcpguard-sidecar /usr/local/bin/mcpguard-sidecar
COPY --from=build /out/mcpguard-rego /usr/local/bin/mcpguard-rego
# Numeric, non-root (distroless "nonroot" is 65532): Kubernetes can verify
# runAsNonRoot without a fixed runAsUser, and OpenShift's restricted-v2 SCC
# replaces it with a UID from the namespace's range, which works because the
# binary needs no file it owns.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcpguard"]
