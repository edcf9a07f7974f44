#!/usr/bin/env bash
# A real single-node Kubernetes v1.34.2 on this machine for the cluster tier (`make cluster-up|cluster-down`):
# etcd, kube-apiserver, -controller-manager, -scheduler, a kubelet on Debian's containerd + runc, the CNI
# bridge, kube-proxy and CoreDNS. Pods run for real: images are built here (`make image`, buildah) and
# imported into the node's containerd; there is no registry (imagePullPolicy Never/IfNotPresent).
#   tests/infra/cluster.sh up        start it (idempotent); prints the admin kubeconfig path
#   tests/infra/cluster.sh down      stop it and remove its pods and state (the imported images stay)
#   tests/infra/cluster.sh wipe      down, and drop the imported images too
#   tests/infra/cluster.sh import T  import a docker-archive T into the node's containerd
#   tests/infra/cluster.sh status    print the kubeconfig path if it runs, exit 1 if not
# Needs root (containerd, kubelet, iptables), tools/tools.d/kube-node.sh + kube-apiserver.sh (make test-setup).
# Security: the API server listens on every address of this machine (pods reach it through the
# `kubernetes` Service) but takes only TLS with a token or client certificate (no anonymous requests); the
# kubelet, etcd, controller-manager, scheduler and kube-proxy listen on loopback only. NetworkPolicies are
# stored but not enforced (the bridge CNI plugin has no policy controller).
# State: ${ISTHMUS_CLUSTER_DIR:-/tmp/isthmus-cluster} (one node per machine); imported images:
# ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/cluster-images (containerd's root, kept across down/up).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/infra/cluster
S=${ISTHMUS_CLUSTER_DIR:-/tmp/isthmus-cluster}
IMAGES=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/cluster-images
B=$ROOT/.tools/kube-node/bin
APISERVER=$ROOT/.tools/bin/kube-apiserver
P=$S/pki; L=$S/logs
API_PORT=26443
ETCD_PORT=22379
NODE=$(hostname)
CTR="ctr --address $S/containerd.sock -n k8s.io"
KUBECTL="$B/kubectl --kubeconfig $P/admin.kubeconfig"

die() { echo "cluster.sh: $*" >&2; exit 3; }

need_tools() {
  [ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, iptables)"
  [ -x "$APISERVER" ] || die "kube-apiserver not built: run tools/tools.d/kube-apiserver.sh (make test-setup)"
  for c in kubelet kube-proxy kube-scheduler kube-controller-manager kubectl crictl coredns local-path-provisioner; do
    [ -x "$B/$c" ] || die "$c not built: run tools/tools.d/kube-node.sh (make test-setup)"
  done
  for c in containerd runc etcd buildah iptables conntrack busybox; do
    command -v $c >/dev/null 2>&1 || die "$c not installed: run tools/tools.d/kube-node.sh (make test-setup)"
  done
}

running() { [ -f "$S/pids/$1.pid" ] && kill -0 "$(cat "$S/pids/$1.pid")" 2>/dev/null; }

start() {
  local n=$1; shift
  nohup "$@" >"$L/$n.log" 2>&1 &
  echo $! >"$S/pids/$n.pid"
}

wait_for() { # name command timeout_s
  local i
  for i in $(seq 1 "${3:-60}"); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    running "$1" || [ "$1" = node ] || { tail -30 "$L/$1.log" >&2; die "$1 exited"; }
    sleep 1
  done
  [ -f "$L/$1.log" ] && tail -30 "$L/$1.log" >&2
  die "$1 not ready after ${3:-60}s"
}

node_ip() { ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1; }

fill() { sed -e "s#@STATE@#$S#g" -e "s#@IMAGES@#$IMAGES#g" "$1" >"$2"; }

pki() {
  local ip=$1
  mkdir -p "$P"
  [ -f "$P/ca.key" ] && return 0
  (
    cd "$P"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=isthmus-node-ca" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,DNS:%s,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:%s\nextendedKeyUsage=serverAuth\n' "$NODE" "$ip" >apiserver.ext
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 365 -extfile apiserver.ext 2>/dev/null
    echo "extendedKeyUsage=clientAuth" >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt -days 365 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    t() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "$(t),admin,admin,\"system:masters\""
      echo "$(t),system:kube-controller-manager,kcm"
      echo "$(t),system:kube-scheduler,sched"
      echo "$(t),system:node:$NODE,kubelet-$NODE,\"system:nodes\""
      echo "$(t),system:kube-proxy,kube-proxy"
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
    kc() { # file user
      local tok; tok=$(awk -F, -v u="$2" '$2==u{print $1}' tokens.csv)
      cat >"$1.kubeconfig" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: isthmus-node
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: $2
  user: {token: "$tok"}
contexts:
- name: isthmus-node
  context: {cluster: isthmus-node, user: "$2"}
current-context: isthmus-node
EOT
      chmod 600 "$1.kubeconfig"
    }
    kc admin admin; kc controller-manager system:kube-controller-manager; kc scheduler system:kube-scheduler
    kc kubelet "system:node:$NODE"; kc kube-proxy system:kube-proxy
  )
}

# images built here from nothing but the node's own binaries: the sandbox ("pause") image from Debian's
# static busybox, and CoreDNS from the binary tools.d/kube-node.sh built
local_image() { # name entrypoint-json files...
  local name=$1 entry=$2 c m; shift 2
  if $CTR image ls -q | grep -qx "$name"; then pin "$name"; return 0; fi
  c=$(buildah from scratch)
  m=$(buildah mount "$c")
  mkdir -p "$m/bin" "$m/etc" "$m/tmp"
  for f in "$@"; do cp "$f" "$m/bin/"; done
  echo 'nobody:x:65534:65534:nobody:/:/bin/false' >"$m/etc/passwd"
  buildah umount "$c" >/dev/null
  buildah config --entrypoint "$entry" --cmd '' "$c"
  buildah commit --rm -q "$c" "$name" >/dev/null
  rm -f "$S/image.tar"
  buildah push -q "$name" "docker-archive:$S/image.tar:$name"
  $CTR image import "$S/image.tar" >/dev/null
  rm -f "$S/image.tar"
  pin "$name"
}

# the node's own images are pinned, for runtimes that honour it (containerd 1.6 does not: the kubelet runs
# with image garbage collection off, so nothing removes them)
pin() { $CTR image label "$1" io.cri-containerd.pinned=pinned >/dev/null; }

# the provisioner's helper pods run `sh` with mkdir/rm: Debian's static busybox with its applet links
busybox_image() {
  if $CTR image ls -q | grep -qx localhost/busybox:1; then pin localhost/busybox:1; return 0; fi
  local c m a
  c=$(buildah from scratch)
  m=$(buildah mount "$c")
  mkdir -p "$m/bin" "$m/tmp"
  cp "$(command -v busybox)" "$m/bin/busybox"
  for a in sh mkdir rm chmod ls cat sleep; do ln -s busybox "$m/bin/$a"; done
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/bin --cmd '["/bin/sh"]' "$c"
  buildah commit --rm -q "$c" localhost/busybox:1 >/dev/null
  rm -f "$S/image.tar"
  buildah push -q localhost/busybox:1 "docker-archive:$S/image.tar:localhost/busybox:1"
  $CTR image import "$S/image.tar" >/dev/null
  rm -f "$S/image.tar"
  pin localhost/busybox:1
}

up() {
  need_tools
  if running kubelet && [ -f "$P/admin.kubeconfig" ] && $KUBECTL get --raw /readyz >/dev/null 2>&1; then
    echo "$P/admin.kubeconfig"; return 0
  fi
  down >/dev/null 2>&1 || true
  local ip admin_token
  ip=$(node_ip)
  [ -n "$ip" ] || die "no global IPv4 address on this machine (the kubelet refuses loopback)"
  grep -qE "^127\.0\.0\.1.*[[:space:]]$NODE([[:space:]]|$)" /etc/hosts || echo "127.0.0.1 $NODE" >>/etc/hosts
  mkdir -p "$S/pids" "$L" "$S/cni/net.d" "$S/kubelet" "$S/etcd" "$IMAGES"
  chmod 700 "$S/etcd"
  fill "$HERE/containerd.toml" "$S/containerd.toml"
  fill "$HERE/cni.conflist" "$S/cni/net.d/10-isthmus.conflist"
  fill "$HERE/kubelet.yaml" "$S/kubelet.yaml"
  fill "$HERE/kube-proxy.yaml" "$S/kube-proxy.yaml"
  pki "$ip"
  admin_token=$(awk -F, '$2=="admin"{print $1}' "$P/tokens.csv")
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || true

  start containerd containerd --config "$S/containerd.toml"
  wait_for containerd "ctr --address $S/containerd.sock version" 30
  # a new node runs no pod: the project's images of earlier runs go (1.5 GB each; image GC is off), the
  # tests and tools/image.sh import the ones they use
  $CTR image ls -q | grep -E '^localhost/isthmus(-infra)?:' | xargs -r $CTR image rm >/dev/null || true
  local_image localhost/pause:1 '["/bin/busybox","sleep","2147483647"]' "$(command -v busybox)"
  local_image localhost/coredns:1.12.4 '["/bin/coredns"]' "$B/coredns"
  local_image localhost/local-path-provisioner:v0.0.30 '["/bin/local-path-provisioner"]' "$B/local-path-provisioner"
  busybox_image

  start etcd etcd --name isthmus-node --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:$((ETCD_PORT + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((ETCD_PORT + 1)) \
    --initial-cluster isthmus-node=http://127.0.0.1:$((ETCD_PORT + 1)) --listen-metrics-urls http://127.0.0.1:$((ETCD_PORT + 2))
  wait_for etcd "curl -sf http://127.0.0.1:$ETCD_PORT/health" 60

  start kube-apiserver "$APISERVER" --etcd-servers=http://127.0.0.1:$ETCD_PORT \
    --bind-address=0.0.0.0 --secure-port=$API_PORT --advertise-address="$ip" --anonymous-auth=false \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range=10.96.0.0/16 --service-node-port-range=30000-32767 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --kubelet-client-certificate="$P/kubelet-client.crt" --kubelet-client-key="$P/kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname,InternalIP --allow-privileged=true
  wait_for kube-apiserver "curl -skf --cacert $P/ca.crt https://127.0.0.1:$API_PORT/readyz -H 'Authorization: Bearer $admin_token'" 120

  start kube-controller-manager "$B/kube-controller-manager" --kubeconfig="$P/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$P/controller-manager.kubeconfig" --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --service-cluster-ip-range=10.96.0.0/16
  start kube-scheduler "$B/kube-scheduler" --kubeconfig="$P/scheduler.kubeconfig" \
    --authentication-kubeconfig="$P/scheduler.kubeconfig" --authorization-kubeconfig="$P/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  start kubelet "$B/kubelet" --config="$S/kubelet.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
    --root-dir="$S/kubelet" --cert-dir="$S/kubelet/pki" --node-ip="$ip" --hostname-override="$NODE" --v=1
  start kube-proxy "$B/kube-proxy" --config="$S/kube-proxy.yaml" --hostname-override="$NODE" --v=1
  wait_for node "$KUBECTL get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True" 120
  wait_for node "$KUBECTL get serviceaccount default" 60
  fill "$HERE/local-path.yaml" "$S/local-path.yaml"
  mkdir -p "$S/local-path"
  $KUBECTL apply -f "$S/local-path.yaml" >/dev/null
  $KUBECTL apply -f "$HERE/coredns.yaml" >/dev/null
  $KUBECTL -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
  $KUBECTL -n local-path-storage rollout status deployment/local-path-provisioner --timeout=120s >/dev/null
  echo "$P/admin.kubeconfig"
}

down() {
  local n f
  for n in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    f=$S/pids/$n.pid
    if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
  done
  sleep 1
  # pods outlive the kubelet (containerd shims): remove them through CRI (CNI DEL, netns cleanup)
  if [ -S "$S/containerd.sock" ] && [ -x "$B/crictl" ]; then
    "$B/crictl" --runtime-endpoint "unix://$S/containerd.sock" rmp -fa >/dev/null 2>&1 || true
  fi
  f=$S/pids/containerd.pid
  if [ -f "$f" ]; then
    kill "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.5; done
    rm -f "$f"
  fi
  [ -x "$B/kube-proxy" ] && "$B/kube-proxy" --cleanup >/dev/null 2>&1 || true
  ip link del isthmus0 2>/dev/null || true
  # the kubelet's projected-volume tmpfs mounts and containerd's overlay mounts
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($S|$IMAGES)/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$S"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  wipe) down; rm -rf "$IMAGES" ;;
  import) [ -f "${2:-}" ] || die "import: no such archive '${2:-}'"; $CTR image import "$2" ;;
  status) running kubelet && [ -f "$P/admin.kubeconfig" ] && echo "$P/admin.kubeconfig" ;;
  *) echo "usage: $0 up|down|wipe|import ARCHIVE|status" >&2; exit 2 ;;
esac
