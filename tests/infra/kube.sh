#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver v1.34.2 + etcd) on loopback — what envtest does.
#   tests/infra/kube.sh up   [--dir D] [--port P] [--etcd-port E]   start both; prints the kubeconfig path
#   tests/infra/kube.sh down [--dir D]                              stop both and remove D
# No controllers, scheduler or nodes run: objects are stored and validated, nothing schedules.
# Binaries: kube-apiserver from .tools/bin (tools/tools.d/kube-apiserver.sh builds it) or PATH, etcd from
# PATH (Debian: etcd-server). Auth: a static admin token (system:masters) and RBAC authorization.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=$ROOT/.tools/kube-data
PORT=
ETCD_PORT=
PY=${PYTHON:-$ROOT/.venv/bin/python}

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --etcd-port) ETCD_PORT=$2; shift 2 ;;
    *) echo "kube.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

find_bin() {
  if [ -x "$ROOT/.tools/bin/$1" ]; then echo "$ROOT/.tools/bin/$1"; return 0; fi
  command -v "$1" 2>/dev/null || { echo "kube.sh: '$1' not found ($2)" >&2; exit 3; }
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pid() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

up() {
  local apiserver etcd
  apiserver=$(find_bin kube-apiserver "run tools/tools.d/kube-apiserver.sh (needs Go)")
  etcd=$(find_bin etcd "apt-get install etcd-server")
  if [ -f "$DIR/apiserver.pid" ] && kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null; then
    echo "$DIR/kubeconfig"; return 0
  fi
  rm -rf "$DIR" && mkdir -p "$DIR/etcd" "$DIR/certs"
  chmod 700 "$DIR/etcd"
  PORT=${PORT:-$(free_port)}
  ETCD_PORT=${ETCD_PORT:-$(free_port)}
  local peer_port token
  peer_port=$(free_port)
  token=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
  echo "$token,admin,admin,\"system:masters\"" >"$DIR/tokens.csv"
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null

  nohup "$etcd" --name isthmus-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "isthmus-test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync >"$DIR/etcd.log" 2>&1 &
  echo $! >"$DIR/etcd.pid"

  nohup "$apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --cert-dir="$DIR/certs" \
    --secure-port="$PORT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$DIR/sa.pub" \
    --service-account-signing-key-file="$DIR/sa.key" --token-auth-file="$DIR/tokens.csv" \
    --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --endpoint-reconciler-type=none \
    >"$DIR/apiserver.log" 2>&1 &
  echo $! >"$DIR/apiserver.pid"

  cat >"$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: isthmus-test
  cluster:
    server: https://127.0.0.1:$PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: isthmus-test
  context:
    cluster: isthmus-test
    user: admin
    namespace: default
current-context: isthmus-test
KUBECONFIG
  chmod 600 "$DIR/kubeconfig"

  # ready = /readyz answers ok (about 20 s on 2 cores; bounded at 120 s)
  local deadline=$((SECONDS + 120))
  until curl -fsk -H "Authorization: Bearer $token" "https://127.0.0.1:$PORT/readyz" 2>/dev/null | grep -q '^ok$'; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null; then
      echo "kube.sh: the API server did not become ready; logs follow" >&2
      tail -n 20 "$DIR/etcd.log" >&2 || true
      tail -n 40 "$DIR/apiserver.log" >&2 || true
      down
      exit 1
    fi
    sleep 0.5
  done
  echo "$DIR/kubeconfig"
}

down() {
  stop_pid "$DIR/apiserver.pid"
  stop_pid "$DIR/etcd.pid"
  rm -rf "$DIR"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: kube.sh up|down [--dir D] [--port P] [--etcd-port E]" >&2; exit 2 ;;
esac
