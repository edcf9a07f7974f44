#!/usr/bin/env bash
# A real single-node Weaviate 1.32.4 on loopback, built from the Go module proxy (see tests/infra/README.md).
#   tests/infra/weaviate.sh build                       build the server once (cached per user, ~3 min)
#   tests/infra/weaviate.sh up    [--port P] [--dir D]  start it: HTTP on 127.0.0.1:P, gRPC on P+1; prints
#                                                       "http://127.0.0.1:P 50052"-style "<url> <grpc port>"
#   tests/infra/weaviate.sh down  [--dir D]             stop it and remove its data
#   tests/infra/weaviate.sh stop|start [--dir D]        stop / restart it on the same data (outage drills)
# WEAVIATE_API_KEY=<key> in the environment of `up` turns on API-key authentication (anonymous access
# off) with that key, as a production server would have it.
# Ports: HTTP P, gRPC P+1, memberlist gossip P+2 and data P+3, raft P+4 and its internal RPC P+5 — so
# several servers (one per test session, say) can run side by side. Needs Go only to build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=v1.32.4
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/weaviate-$VERSION
BIN=$CACHE/weaviate-server
PORT=18080
DIR=$ROOT/.tools/weaviate-data
READY_TIMEOUT_S=${WEAVIATE_READY_TIMEOUT_S:-90}
STOP_TIMEOUT_S=${WEAVIATE_STOP_TIMEOUT_S:-30}
MARK=.isthmus-weaviate # marks a data dir this script made: the only kind it deletes

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    *) echo "weaviate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $PORT in '' | *[!0-9]*) echo "weaviate.sh: --port must be a number, got '$PORT'" >&2; exit 2 ;; esac
if [ "$PORT" -lt 1024 ] || [ "$PORT" -gt 65530 ]; then
  echo "weaviate.sh: --port must be in 1024..65530 (the server takes P..P+5), got $PORT" >&2; exit 2
fi
DIR=$(realpath -m "$DIR")

die() { echo "weaviate.sh: $*" >&2; exit 1; }

build() {
  [ -x "$BIN" ] && [ -f "$CACHE/.version" ] && return 0
  bash "$ROOT/tools/tools.d/weaviate.sh" >&2
  [ -x "$BIN" ] || die "weaviate-server is not built: install Go 1.24+ (https://go.dev/dl) and run 'make test-setup'"
}

removable() { [ ! -e "$1" ] || [ -f "$1/$MARK" ] || [ -z "$(ls -A "$1" 2>/dev/null)" ]; }

alive() { [ -f "$DIR/weaviate.pid" ] && kill -0 "$(cat "$DIR/weaviate.pid")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

saved_port() { cat "$DIR/port"; }

up() {
  build
  if alive; then # idempotent: already running from this dir
    echo "http://127.0.0.1:$(saved_port) $(($(saved_port) + 1))"; return 0
  fi
  removable "$DIR" || die "$DIR exists, is not empty and was not made by weaviate.sh: pick another --dir"
  local p
  for p in $(seq "$PORT" $((PORT + 5))); do
    port_free "$p" || die "127.0.0.1:$p is already in use (another server? 'make weaviate-down', or pass --port)"
  done
  rm -rf "$DIR" && mkdir -p "$DIR/data" && touch "$DIR/$MARK"
  echo "$PORT" >"$DIR/port"
  if [ -n "${WEAVIATE_API_KEY:-}" ]; then
    (umask 077 && printf '%s' "$WEAVIATE_API_KEY" >"$DIR/api-key")
  fi
  launch
  echo "http://127.0.0.1:$PORT $((PORT + 1))"
}

launch() {
  local port auth
  port=$(saved_port)
  auth=(AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true)
  if [ -f "$DIR/api-key" ]; then
    auth=(AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=false AUTHENTICATION_APIKEY_ENABLED=true
      "AUTHENTICATION_APIKEY_ALLOWED_KEYS=$(cat "$DIR/api-key")" AUTHENTICATION_APIKEY_USERS=isthmus)
  fi
  # the settings infra.md records for this machine kind; no modules, no telemetry, no network calls
  env PERSISTENCE_DATA_PATH="$DIR/data" \
    "${auth[@]}" \
    DEFAULT_VECTORIZER_MODULE=none ENABLE_MODULES= \
    DISABLE_TELEMETRY=true GO_PROFILING_DISABLE=true PROMETHEUS_MONITORING_ENABLED=false \
    CLUSTER_HOSTNAME=node1 CLUSTER_ADVERTISE_ADDR=127.0.0.1 \
    CLUSTER_GOSSIP_BIND_PORT=$((port + 2)) CLUSTER_DATA_BIND_PORT=$((port + 3)) \
    RAFT_PORT=$((port + 4)) RAFT_INTERNAL_RPC_PORT=$((port + 5)) \
    RAFT_BOOTSTRAP_EXPECT=1 RAFT_JOIN=node1 \
    GRPC_PORT=$((port + 1)) QUERY_DEFAULTS_LIMIT=25 LOG_LEVEL=warning \
    nohup "$BIN" --host 127.0.0.1 --port "$port" --scheme http >>"$DIR/server.log" 2>&1 </dev/null &
  echo $! >"$DIR/weaviate.pid"
  local i
  for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
    alive || { tail -n 40 "$DIR/server.log" >&2; die "the server exited during start-up"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/.well-known/ready")" = 200 ]; then
      return 0
    fi
    sleep 0.2
  done
  echo "weaviate.sh: not ready within ${READY_TIMEOUT_S}s; last lines of $DIR/server.log:" >&2
  tail -n 40 "$DIR/server.log" >&2
  halt
  exit 1
}

# SIGTERM (graceful: flushes memtables), then SIGKILL after STOP_TIMEOUT_S
halt() {
  alive || return 0
  local pid i
  pid=$(cat "$DIR/weaviate.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  echo "weaviate.sh: server $pid did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

start() {
  [ -f "$DIR/port" ] || die "no server data in $DIR (use 'up')"
  if alive; then echo "http://127.0.0.1:$(saved_port) $(($(saved_port) + 1))"; return 0; fi
  build
  launch
  echo "http://127.0.0.1:$(saved_port) $(($(saved_port) + 1))"
}

down() {
  [ -e "$DIR" ] || return 0
  removable "$DIR" || die "$DIR was not made by weaviate.sh: not deleting it"
  halt
  rm -rf "$DIR"
}

case $cmd in
  build) build ;;
  up) up ;;
  down) down ;;
  stop) halt ;;
  start) start ;;
  *) echo "usage: weaviate.sh build|up|down|stop|start [--port P] [--dir D]" >&2; exit 2 ;;
esac
