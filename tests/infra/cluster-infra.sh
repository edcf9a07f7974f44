#!/usr/bin/env bash
# The cluster tier's infrastructure image, built here with buildah (no Docker daemon, no registry): Kafka
# (Java 17 + the Kafka 4.1.1 jars cached by tests/infra/kafka.sh) and Ory Hydra (the binary built by
# tools/tools.d/hydra.sh), FROM the base image of tools/image.sh. Imported into the node's containerd
# (tests/infra/cluster.sh import). The tag digests the build inputs: the same inputs are never built twice.
#   tests/infra/cluster-infra.sh [build]   build (if needed), save, import; prints the image reference last
#   tests/infra/cluster-infra.sh tag       print the reference, without building
# Needs root, buildah, the base image (tools/image.sh makes it), the jars and the Hydra binary.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/infra/cluster/distributed
TOOLS=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
LIBS=$TOOLS/kafka-4.1.1/libs
HYDRA=$TOOLS/hydra-v2.3.0/hydra
BASE=localhost/isthmus-python:3.11-bookworm
REPO=localhost/isthmus-infra
OUT=$TOOLS/cluster-infra

die() { echo "cluster-infra.sh: $*" >&2; exit 3; }

need() {
  [ -f "$LIBS/.complete" ] || bash "$ROOT/tests/infra/kafka.sh" jars >&2 || die "no Kafka jars in $LIBS (tests/infra/kafka.sh)"
  [ -x "$HYDRA" ] || bash "$ROOT/tests/infra/hydra.sh" install >&2 || die "no Hydra binary at $HYDRA (tools/tools.d/hydra.sh)"
}

tag() {
  need
  { sha256sum "$HERE/Containerfile" "$HERE/kafka-start.sh" "$HYDRA" | cut -c1-64
    (cd "$LIBS" && ls -1 ./*.jar); } | sha256sum | cut -c1-12 | sed "s|^|$REPO:|"
}

build() {
  [ "$(id -u)" = 0 ] || die "needs root (buildah with chroot isolation)"
  command -v buildah >/dev/null || die "buildah not installed (tools/tools.d/kube-node.sh installs it)"
  local ref archive
  ref=$(tag)
  archive=$OUT/isthmus-infra-${ref##*:}.tar
  if ! buildah images -q "$ref" >/dev/null 2>&1; then
    buildah images -q "$BASE" >/dev/null 2>&1 || bash "$ROOT/tools/image.sh" >&2 || die "no base image $BASE (tools/image.sh)"
    CTX=$(mktemp -d)
    trap 'rm -rf "$CTX"' EXIT
    mkdir "$CTX/libs"
    cp "$LIBS"/*.jar "$CTX/libs/"
    cp "$HERE/Containerfile" "$HERE/kafka-start.sh" "$HYDRA" "$CTX/"
    echo "cluster-infra: building $ref" >&2
    local start=$SECONDS
    buildah bud --isolation chroot --pull-never --layers --format docker --build-arg BASE="$BASE" \
      --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -t "$ref" -f "$CTX/Containerfile" "$CTX" >&2
    echo "cluster-infra: built $ref in $((SECONDS - start)) s" >&2
  fi
  mkdir -p "$OUT"
  if [ ! -f "$archive" ]; then
    rm -f "$OUT"/isthmus-infra-*.tar
    buildah push -q "$ref" "docker-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
  fi
  if bash "$ROOT/tests/infra/cluster.sh" status >/dev/null 2>&1; then
    bash "$ROOT/tests/infra/cluster.sh" import "$archive" >&2
  fi
  echo "$ref"
}

case ${1:-build} in
  build) build ;;
  tag) tag ;;
  *) echo "usage: $0 [build|tag]" >&2; exit 2 ;;
esac
