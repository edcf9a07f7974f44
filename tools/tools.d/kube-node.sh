#!/usr/bin/env bash
# The cluster tier's single-node Kubernetes v1.34.2 (tests/infra/cluster.sh, `make cluster-up`):
#   - Debian packages (root + apt-get): containerd, runc, the CNI plugins, iptables, conntrack, buildah,
#     debootstrap (images without a Docker daemon: `make image`), busybox-static (the volume helper pods' shell).
#   - kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl, built once from the Go module
#     proxy through the throwaway module tests/infra/kube-node/ (the API server is tools.d/kube-apiserver.sh's),
#     plus crictl (sigs.k8s.io/cri-tools), CoreDNS (cluster DNS) and Rancher's local-path-provisioner (the
#     PersistentVolumes the charts claim), into
#     ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/kube-node-v1.34.2/ (about 10 min cold on 2 cores, shared
#     Go caches with the API server's build; a no-op once built), linked into .tools/kube-node/bin.
# Without Go or root it says so and exits 0: the cluster tier then skips locally and fails under CI=true.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=v1.34.2
CRICTL_VERSION=v1.34.0
COREDNS_VERSION=v1.12.4
LOCAL_PATH_VERSION=v0.0.30
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
OUT=$CACHE/kube-node-$VERSION
MODULE=$ROOT/tests/infra/kube-node
PACKAGES="containerd runc containernetworking-plugins iptables conntrack buildah debootstrap busybox-static"

# --- Debian packages --------------------------------------------------------------------------
missing=""
for p in containerd runc buildah debootstrap iptables conntrack busybox; do command -v "$p" >/dev/null 2>&1 || missing=1; done
[ -x /usr/lib/cni/bridge ] || missing=1
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools: installing $PACKAGES with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES >/dev/null 2>&1; then
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES >/dev/null
    fi
  else
    echo "tools: $PACKAGES are needed for the cluster tier and cannot be installed (not root or no apt-get);" \
      "the cluster tier will skip locally (and fail under CI=true)"
    exit 0
  fi
fi

# --- Go-built commands ------------------------------------------------------------------------
stamp=$( (cat "$MODULE/go.mod" "$MODULE/go.sum"; echo "$CRICTL_VERSION $COREDNS_VERSION $LOCAL_PATH_VERSION") | sha256sum | cut -c1-16)
COMMANDS="kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
built_ok() {
  [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ] || return 1
  for c in $COMMANDS crictl coredns local-path-provisioner; do [ -x "$OUT/$c" ] || return 1; done
}
if ! built_ok; then
  if ! command -v go >/dev/null 2>&1; then
    echo "tools: go not found — the cluster tier's Kubernetes is not built; it will skip locally (and fail under CI=true)"
    exit 0
  fi
  mkdir -p "$OUT"
  exec 9>"$OUT/.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if ! built_ok; then
    echo "tools: building Kubernetes $VERSION node commands, crictl and CoreDNS into $OUT (about 10 min cold, once per machine)"
    start=$(date +%s)
    export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=34"
    done
    for c in $COMMANDS; do
      [ -x "$OUT/$c" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ] && continue
      echo "tools: building $c"
      (cd "$MODULE" && go build -mod=readonly -ldflags "$ldflags" -o "$OUT/$c.tmp" "k8s.io/kubernetes/cmd/$c")
      mv "$OUT/$c.tmp" "$OUT/$c"
    done
    GOBIN=$OUT go install -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    GOBIN=$OUT go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
    GOBIN=$OUT go install -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
    echo "$stamp" >"$OUT/.stamp"
    echo "tools: Kubernetes node commands built in $(($(date +%s) - start)) s"
  fi
fi
mkdir -p "$ROOT/.tools/kube-node/bin"
for c in $COMMANDS crictl coredns local-path-provisioner; do ln -sf "$OUT/$c" "$ROOT/.tools/kube-node/bin/$c"; done
echo "tools: Kubernetes $VERSION node commands -> .tools/kube-node/bin"
