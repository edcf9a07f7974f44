#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver v1.34.2) + etcd for the operator test tier.
#   - kube-apiserver is built once from the Go module proxy (about 6 min on 2 cores) through the
#     throwaway module tests/infra/kube-apiserver/ into
#     ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/kube-apiserver-v1.34.2/, then linked as
#     .tools/bin/kube-apiserver. Without Go it says so and exits 0 (the tests then skip locally).
#   - etcd: Debian's etcd-server via apt-get when missing and we are root; otherwise a note.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=v1.34.2
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
OUT=$CACHE/kube-apiserver-$VERSION
MODULE=$ROOT/tests/infra/kube-apiserver
mkdir -p "$ROOT/.tools/bin"

# --- etcd -------------------------------------------------------------------------------------
if command -v etcd >/dev/null 2>&1; then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "tools: installing etcd-server with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
  fi
else
  echo "tools: etcd not found and cannot apt-get it (not root) — install etcd (Debian: etcd-server);" \
    "the operator test tier will skip locally (and fail under CI=true)"
fi

# --- kube-apiserver ---------------------------------------------------------------------------
# the stamp records the module's go.mod/go.sum: a changed module rebuilds, an unchanged one is reused
stamp=$(cat "$MODULE/go.mod" "$MODULE/go.sum" | sha256sum | cut -c1-16)
if [ ! -x "$OUT/kube-apiserver" ] || [ "$(cat "$OUT/.stamp" 2>/dev/null)" != "$stamp" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "tools: go not found — kube-apiserver not built; the operator test tier will skip locally" \
      "(and fail under CI=true)"
    exit 0
  fi
  mkdir -p "$OUT"
  echo "tools: building kube-apiserver $VERSION into $OUT (4-6 min on 2 cores, once per machine)"
  start=$(date +%s)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$VERSION"
  ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
  (cd "$MODULE" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" \
    -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  echo "$stamp" >"$OUT/.stamp"
  echo "tools: kube-apiserver built in $(($(date +%s) - start)) s"
fi
ln -sf "$OUT/kube-apiserver" "$ROOT/.tools/bin/kube-apiserver"
echo "tools: kube-apiserver $VERSION -> .tools/bin/kube-apiserver"
