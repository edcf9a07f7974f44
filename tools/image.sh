#!/usr/bin/env bash
# The Isthmus service image, built here without a Docker daemon (`make image`):
#   1. a Debian bookworm base with Python 3.11 (localhost/isthmus-python:3.11-bookworm), made once per machine
#      by debootstrap (minbase + python3, python3-venv, ca-certificates, libgomp1) and committed with buildah;
#      /usr/local/bin/python3.11 links Debian's interpreter, as in the python:3.11-slim images
#   2. the project's Dockerfile, unchanged for ordinary builders, built by `buildah bud --isolation chroot`
#      with PYTHON_IMAGE set to that base (layers cached; the uv cache mount keeps the wheels between builds)
#   3. saved as a docker-archive (.tools/images/isthmus-<tag>.tar) and, when the cluster tier's node runs
#      (tests/infra/cluster.sh), imported into its containerd.
# The tag is a digest of the build inputs (Dockerfile, lock file, manifests, sources): the same tree gives
# the same tag, and a tag already built is not built again. Prints the image reference last.
#   tools/image.sh [build]      build (if needed), save, import (if the node runs)
#   tools/image.sh tag          print the reference the current tree builds, without building
#   tools/image.sh reproducible build it again without any cache and check the image ID is the same
# Needs root, buildah and debootstrap (tools/tools.d/kube-node.sh installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/image-base
BASE=localhost/isthmus-python:3.11-bookworm
REPO=localhost/isthmus
OUT=$ROOT/.tools/images

die() { echo "image.sh: $*" >&2; exit 3; }

inputs() { # the files the Dockerfile reads, as the build context's allow-list admits them
  git ls-files -z --cached --others --exclude-standard -- tools/image.sh Dockerfile .dockerignore pyproject.toml uv.lock protos services operators benchmarks/pyproject.toml \
    | grep -zv -e '/tests/' -e '__pycache__' | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
}

tag() { echo "$REPO:$(inputs)"; }

base() {
  buildah images -q "$BASE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || die "debootstrap not installed (tools/tools.d/kube-node.sh installs it)"
  mkdir -p "$CACHE/debs"
  if [ ! -x "$CACHE/rootfs/usr/bin/python3.11" ]; then
    echo "image: debootstrap of Debian bookworm into $CACHE/rootfs (about a minute, once per machine)" >&2
    rm -rf "$CACHE/rootfs.tmp"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
      --cache-dir="$CACHE/debs" bookworm "$CACHE/rootfs.tmp" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
  fi
  local c m
  c=$(buildah from scratch)
  m=$(buildah mount "$c")
  cp -a "$CACHE/rootfs/." "$m/"
  rm -rf "$m"/var/cache/apt/archives/*.deb "$m"/var/lib/apt/lists/* "$m"/var/log/*.log
  for py in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$m/usr/local/bin/$py"; done
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3"]' "$c"
  buildah commit --rm -q "$c" "$BASE" >/dev/null
  echo "image: base $BASE committed" >&2
}

build() {
  [ "$(id -u)" = 0 ] || die "needs root (buildah with chroot isolation)"
  command -v buildah >/dev/null || die "buildah not installed (tools/tools.d/kube-node.sh installs it)"
  local ref name
  ref=$(tag)
  name=isthmus-${ref##*:}
  if ! buildah images -q "$ref" >/dev/null 2>&1; then
    base
    echo "image: building $ref (buildah bud, chroot isolation)" >&2
    local start=$SECONDS
    # the host's CA bundle over the image's for the build steps only (a TLS-inspecting egress proxy here);
    # it is a mount, never a layer
    buildah bud --isolation chroot --pull-never --layers --format oci --timestamp 0 \
      --build-arg PYTHON_IMAGE="$BASE" --build-arg SOURCE_DATE_EPOCH=0 \
      --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -t "$ref" -f Dockerfile . >&2
    echo "image: built $ref in $((SECONDS - start)) s" >&2
    # older builds of the image leave buildah's storage (1.5 GB each); the layer cache of this one stays
    local old
    for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep -x "$REPO:[0-9a-f]\{12\}" | grep -vx "$ref"); do
      buildah rmi "$old" >/dev/null 2>&1 || true
    done
  fi
  mkdir -p "$OUT"
  if [ ! -f "$OUT/$name.tar" ]; then
    rm -f "$OUT"/isthmus-*.tar
    buildah push -q "$ref" "docker-archive:$OUT/$name.tar.tmp:$ref" >&2
    mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  fi
  if bash tests/infra/cluster.sh status >/dev/null 2>&1; then
    bash tests/infra/cluster.sh import "$OUT/$name.tar" >&2
  fi
  echo "$ref"
}

# build the current tree again from nothing (no layer cache) and compare with the cached build: the same
# image ID (config digest: every layer's content digest, the same fixed timestamps) = reproducible
reproducible() {
  local ref again
  ref=$(build | tail -1)
  again=localhost/isthmus-rebuild:$(inputs)
  buildah rmi "$again" >/dev/null 2>&1 || true
  echo "image: rebuilding $ref from nothing as $again" >&2
  buildah bud --isolation chroot --pull-never --layers --no-cache --format oci --timestamp 0 \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg SOURCE_DATE_EPOCH=0 \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -t "$again" -f Dockerfile . >/dev/null
  # the filesystem: every layer's content digest (diff ID), in order; and the whole config (image ID)
  local a b ia ib
  a=$(buildah inspect --format '{{range .Docker.RootFS.DiffIDs}}{{.}} {{end}}' "$ref")
  b=$(buildah inspect --format '{{range .Docker.RootFS.DiffIDs}}{{.}} {{end}}' "$again")
  ia=$(buildah inspect --format '{{.FromImageID}}' "$ref")
  ib=$(buildah inspect --format '{{.FromImageID}}' "$again")
  if [ "$ia" != "$ib" ]; then
    show='import json, sys; print(json.dumps(json.load(sys.stdin)["OCIv1"], indent=1, sort_keys=True))'
    diff <(buildah inspect "$ref" | python3 -c "$show") <(buildah inspect "$again" | python3 -c "$show") >&2 || true
  fi
  buildah rmi "$again" >/dev/null 2>&1 || true
  echo "image: $ref layers $a(image id $ia)"
  echo "image: rebuilt from nothing: layers $b(image id $ib)"
  [ "$a" = "$b" ] || { echo "image: NOT reproducible: the layers differ" >&2; return 1; }
  [ "$ia" = "$ib" ] || { echo "image: layers reproducible, the image config differs (above)" >&2; return 1; }
  echo "image: reproducible"
}

case ${1:-build} in
  build) build ;;
  reproducible) reproducible ;;
  tag) tag ;;
  base) base ;;
  *) echo "usage: $0 [build|tag|base|reproducible]" >&2; exit 2 ;;
esac
