#!/usr/bin/env bash
# Builds mcpguard's image from the shipped Dockerfile with podman, on a
# machine that reaches no container registry: the Dockerfile's two base
# images (build args GO_IMAGE and BASE_IMAGE, whose defaults are the
# production golang and distroless images) are replaced by local stand-ins
# with the same properties, made here from scratch with buildah:
#   golang     busybox-static (the /bin/sh RUN needs) + this machine's Go,
#              GOPATH /go, CA certificates (go mod download uses TLS)
#   distroless CA certificates, /etc/passwd and /etc/group with root and
#              nonroot (65532), /home/nonroot and /tmp, USER 65532:65532 —
#              what gcr.io/distroless/static-debian12:nonroot carries
# The binaries are a release's: scripts/release.sh builds them for this
# machine's linux platform into dist/ and the Dockerfile copies them
# (--build-arg BINARIES=release), so the image holds the very binaries of
# SHA256SUMS; BINARIES=source builds them in the Dockerfile instead, as its
# default does for users.
# Then saves the image as a docker-archive, which e2e/ checks
# (e2e/image_test.go) and imports into a real node's containerd.
# Prints the archive's path. Installs podman, buildah and busybox-static from
# Debian when they are missing.
#
#   scripts/image-build.sh            -> ~/.cache/mcpguard/image/mcpguard.tar
#   IMAGE=ghcr.io/mcpguard/mcpguard:ci (default) names the image
#   BINARIES=release (default) or source
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-ghcr.io/mcpguard/mcpguard:ci}
out=${XDG_CACHE_HOME:-$HOME/.cache}/mcpguard/image
mkdir -p "$out"

# Several runs may start at once on a shared machine: one builds at a time.
exec 9>"$out/build.lock"
command -v flock >/dev/null && flock 9

pkgs=(podman buildah busybox-static runc ca-certificates)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

# podman's defaults fail on this kind of machine: crun refuses cgroup v1
# hybrid mode, and raising RLIMIT_NOFILE above the hard limit needs
# CAP_SYS_RESOURCE. This file, not /etc, carries the fixes.
conf=$out/containers.conf
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
cat > "$conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard:$hard"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$conf

gover=$(go env GOVERSION)
go_image=localhost/mcpguard-standin/golang:${gover#go}
base_image=localhost/mcpguard-standin/distroless-static:nonroot
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "image-build: no CA bundle at $certs" >&2; exit 1; }

tmp=$(mktemp -d)
ctr=""
cleanup() { [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT

if ! podman image exists "$go_image"; then
  echo "image-build: making the golang stand-in $go_image" >&2
  root=$tmp/golang
  mkdir -p "$root"/{bin,tmp,root,go,etc/ssl/certs,usr/local}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\n' > "$root/etc/group"
  cp -a "$(go env GOROOT)" "$root/usr/local/go"
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$root" / >/dev/null
  # The host's module proxy settings: the build downloads modules the way
  # this machine can.
  buildah config \
    --env PATH=/usr/local/go/bin:/go/bin:/bin \
    --env GOPATH=/go --env HOME=/root --env GOTOOLCHAIN=local \
    --env GOPROXY="$(go env GOPROXY)" --env GOSUMDB="$(go env GOSUMDB)" \
    --env GOFLAGS=-buildvcs=false \
    --workingdir /go --cmd /bin/sh "$ctr"
  buildah commit -q "$ctr" "$go_image" >/dev/null
  buildah rm "$ctr" >/dev/null; ctr=""
fi

if ! podman image exists "$base_image"; then
  echo "image-build: making the distroless stand-in $base_image" >&2
  root=$tmp/distroless
  mkdir -p "$root"/{tmp,home/nonroot,etc/ssl/certs}
  chmod 1777 "$root/tmp"
  cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
  # The users and groups of distroless' base image (nonroot is 65532).
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' > "$root/etc/group"
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$root" / >/dev/null
  buildah copy --chown 65532:65532 "$ctr" "$root/home/nonroot" /home/nonroot >/dev/null
  buildah config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ctr"
  buildah commit -q "$ctr" "$base_image" >/dev/null
  buildah rm "$ctr" >/dev/null; ctr=""
fi

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
binaries=${BINARIES:-release}
case "$binaries" in
  release)
    echo "image-build: scripts/release.sh for linux/$(go env GOARCH) into dist/" >&2
    TARGETS=linux/$(go env GOARCH) VERSION=$version scripts/release.sh dist >&2 ;;
  source) ;;
  *) echo "image-build: BINARIES=$binaries: want release or source" >&2; exit 2 ;;
esac
echo "image-build: podman build $image (version $version, binaries from $binaries)" >&2
# --network=host: `go mod download` reaches the module proxy as the host does.
podman build --pull=never --network=host \
  --build-arg GO_IMAGE="$go_image" --build-arg BASE_IMAGE="$base_image" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg BINARIES="$binaries" \
  -t "$image" -f Dockerfile . >&2
rm -f "$out/mcpguard.tar.tmp"
podman save --format docker-archive -o "$out/mcpguard.tar.tmp" "$image" >&2
mv "$out/mcpguard.tar.tmp" "$out/mcpguard.tar"
echo "$out/mcpguard.tar"
