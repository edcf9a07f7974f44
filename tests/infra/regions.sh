#!/usr/bin/env bash
# Two Isthmus regions on one machine, real parts (see tests/infra/README.md, docs/multi-region.md):
# region a and region b, each with its own Apache Kafka (tests/infra/kafka.sh), its own MirrorMaker 2
# replicating the peer's topics INTO it, and its own platform (`isthmus run --target all` on the Kafka bus).
#   tests/infra/regions.sh up     [--dir D] [--base-port P] [--brokers 1|3] [--store embedded|weaviate]
#                                 start both; writes and prints D/regions.toml (a RegionsConfig with hooks)
#   tests/infra/regions.sh down   [--dir D]         stop everything and remove D
#   tests/infra/regions.sh status [--dir D]         processes of each region, then `isthmus regions status`
#   tests/infra/regions.sh kill|restore <r>         kill -9 every process of region r (data kept) / start again
#   tests/infra/regions.sh kill-broker|restore-broker <r>   one broker of r (needs up --brokers 3: region a)
#   tests/infra/regions.sh stop-link|start-link <r> stop / start the MirrorMaker 2 of r (replication INTO r)
# Ports: without --base-port, region a: Kafka 19192 (controller 19193), gRPC 50161, metrics 9561; region b:
# Kafka 19292, gRPC 50261, metrics 9562. With --base-port P, region a uses P..P+7 (Kafka P..P+5: three
# brokers take six ports; gRPC P+6, metrics P+7) and region b P+10..P+17. Everything listens on 127.0.0.1.
# --store weaviate: each region's platform indexes into its own Weaviate (tests/infra/weaviate.sh), on
# 18180..18185 (a) and 18280..18285 (b), or P+20..P+25 and P+30..P+35; default: the embedded store.
# --brokers 3: region a runs three Kafka nodes (tests/infra/kafka-cluster.sh), so one can die (broker-loss).
# Processes: D/<r>/platform.pid, D/<r>/mm2.pid, the broker's in D/<r>/kafka/ (kafka.pid or node<n>/kafka.pid);
# logs beside them (platform.log, mm2.log, kafka/server.log). Memory: Kafka -Xmx512m, MM2 -Xmx256m.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELF=$ROOT/tests/infra/regions.sh
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
LIBS=$CACHE/kafka-4.1.1/libs
PY=${PYTHON:-$ROOT/.venv/bin/python}
ISTHMUS=${ISTHMUS_BIN:-$ROOT/.venv/bin/isthmus}
DIR=$ROOT/.tools/regions
BASE=""
BROKERS=1
STORE=embedded
REGIONS=(a b)
READY_TIMEOUT_S=${REGIONS_READY_TIMEOUT_S:-240}
STOP_TIMEOUT_S=${REGIONS_STOP_TIMEOUT_S:-20}
MARK=.isthmus-regions # marks a dir this script made: the only kind it deletes

cmd=${1:-}
shift || true
REGION=""
case $cmd in
  kill | restore | kill-broker | restore-broker | stop-link | start-link)
    REGION=${1:-}; shift || true ;;
esac
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --base-port) BASE=${2:?--base-port needs a value}; shift 2 ;;
    --brokers) BROKERS=${2:?--brokers needs a value}; shift 2 ;;
    --store) STORE=${2:?--store needs a value}; shift 2 ;;
    *) echo "regions.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $BASE in *[!0-9]*) echo "regions.sh: --base-port must be a number, got '$BASE'" >&2; exit 2 ;; esac
if [ -n "$BASE" ] && { [ "$BASE" -lt 1024 ] || [ "$BASE" -gt 65500 ]; }; then
  echo "regions.sh: --base-port must be in 1024..65500 (the regions take P..P+35), got $BASE" >&2; exit 2
fi
case $BROKERS in 1 | 3) ;; *) echo "regions.sh: --brokers is 1 or 3, got '$BROKERS'" >&2; exit 2 ;; esac
case $STORE in embedded | weaviate) ;; *) echo "regions.sh: --store is embedded or weaviate, got '$STORE'" >&2; exit 2 ;; esac
if [ -n "$REGION" ] || [[ $cmd =~ ^(kill|restore|kill-broker|restore-broker|stop-link|start-link)$ ]]; then
  case $REGION in a | b) ;; *) echo "regions.sh: $cmd needs a region: a or b (got '$REGION')" >&2; exit 2 ;; esac
fi
DIR=$(realpath -m "$DIR")

die() { echo "regions.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "regions.sh: '$1' is required: $2" >&2; exit 3; }; }

# --- layout: ports and brokers are chosen at `up` and saved in D/layout, read by every other command ----

index() { [ "$1" = a ] && echo 0 || echo 1; }
kafka_port() { if [ -n "$BASE" ]; then echo $((BASE + 10 * $(index "$1"))); else echo $((19192 + 100 * $(index "$1"))); fi; }
grpc_port() { if [ -n "$BASE" ]; then echo $((BASE + 10 * $(index "$1") + 6)); else echo $((50161 + 100 * $(index "$1"))); fi; }
metrics_port() { if [ -n "$BASE" ]; then echo $((BASE + 10 * $(index "$1") + 7)); else echo $((9561 + $(index "$1"))); fi; }
brokers_of() { if [ "$1" = a ]; then echo "$BROKERS"; else echo 1; fi; }
weaviate_port() { if [ -n "$BASE" ]; then echo $((BASE + 20 + 10 * $(index "$1"))); else echo $((18180 + 100 * $(index "$1"))); fi; }

save_layout() {
  local r
  {
    for r in "${REGIONS[@]}"; do
      echo "${r}_kafka=$(kafka_port "$r")"
      echo "${r}_grpc=$(grpc_port "$r")"
      echo "${r}_metrics=$(metrics_port "$r")"
      echo "${r}_brokers=$(brokers_of "$r")"
      echo "${r}_store=$STORE"
      echo "${r}_weaviate=$(weaviate_port "$r")"
    done
  } >"$DIR/layout"
}

layout() { # region key
  [ -f "$DIR/layout" ] || die "no regions in $DIR (run 'regions.sh up --dir $DIR' first)"
  sed -n "s/^$1_$2=//p" "$DIR/layout"
}

bootstrap() { # region
  local p n
  p=$(layout "$1" kafka)
  n=$(layout "$1" brokers)
  if [ "$n" = 3 ]; then echo "127.0.0.1:$p,127.0.0.1:$((p + 2)),127.0.0.1:$((p + 4))"; else echo "127.0.0.1:$p"; fi
}

# a process that runs (a killed one not yet reaped by its new parent is a zombie: not running)
running() { kill -0 "$1" 2>/dev/null && case $(ps -o stat= -p "$1" 2>/dev/null) in Z*) false ;; *) true ;; esac; }
alive_pidfile() { [ -f "$1" ] && running "$(cat "$1")"; }

removable() { [ ! -e "$1" ] || [ -f "$1/$MARK" ] || [ -z "$(ls -A "$1" 2>/dev/null)" ]; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# SIGTERM, then SIGKILL after STOP_TIMEOUT_S
halt_pidfile() {
  alive_pidfile "$1" || { rm -f "$1"; return 0; }
  local pid i
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 5; i++)); do
    running "$pid" || { rm -f "$1"; return 0; }
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
  rm -f "$1"
}

kill9_pidfile() {
  if alive_pidfile "$1"; then
    local pid
    pid=$(cat "$1")
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
  fi
  # a killed process may stay a zombie a while (its new parent reaps it late): the pid file goes, so
  # kafka.sh start (whose liveness check is kill -0) launches a new broker
  rm -f "$1"
}

weaviate_pidfile() { # region (nothing with the embedded store)
  if weaviate_of "$1"; then echo "$DIR/$1/weaviate/weaviate.pid"; fi
}

broker_pidfiles() { # region
  local d=$DIR/$1/kafka n
  if [ "$(layout "$1" brokers)" = 3 ]; then
    for n in 1 2 3; do echo "$d/node$n/kafka.pid"; done
  else
    echo "$d/kafka.pid"
  fi
}

# --- Kafka -----------------------------------------------------------------------------------------------

kafka_up() { # region (fresh)
  if [ "$(layout "$1" brokers)" = 3 ]; then
    bash "$ROOT/tests/infra/kafka-cluster.sh" up --port "$(layout "$1" kafka)" --dir "$DIR/$1/kafka" >/dev/null
  else
    bash "$ROOT/tests/infra/kafka.sh" up --port "$(layout "$1" kafka)" --dir "$DIR/$1/kafka" >/dev/null
  fi
}

kafka_start() { # region (same data)
  if [ "$(layout "$1" brokers)" = 3 ]; then
    local n
    for n in 1 2 3; do
      alive_pidfile "$DIR/$1/kafka/node$n/kafka.pid" ||
        bash "$ROOT/tests/infra/kafka-cluster.sh" start "$n" --dir "$DIR/$1/kafka"
    done
    wait_kafka "$1"
  else
    bash "$ROOT/tests/infra/kafka.sh" start --dir "$DIR/$1/kafka" >/dev/null
  fi
}

kafka_down() { # region
  [ -d "$DIR/$1/kafka" ] || return 0
  if [ "$(layout "$1" brokers)" = 3 ]; then
    bash "$ROOT/tests/infra/kafka-cluster.sh" down --dir "$DIR/$1/kafka"
  else
    bash "$ROOT/tests/infra/kafka.sh" down --dir "$DIR/$1/kafka"
  fi
}

wait_kafka() { # region: every broker of it serves metadata (bounded)
  "$PY" - "$(bootstrap "$1")" "$READY_TIMEOUT_S" <<'PYPROBE' || die "region $1: Kafka not ready"
import asyncio, logging, sys, time
logging.disable(logging.CRITICAL)
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    bootstrap, within = sys.argv[1], float(sys.argv[2])
    want = len(bootstrap.split(","))
    deadline = time.monotonic() + within
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            if len((await admin.describe_cluster())["brokers"]) >= want:
                return
        except Exception:
            pass
        finally:
            await admin.close()
        if time.monotonic() > deadline:
            raise SystemExit(f"regions.sh: {bootstrap}: not all {want} brokers up within {within:.0f}s")
        await asyncio.sleep(0.5)

asyncio.run(main())
PYPROBE
}

# --- Weaviate (--store weaviate) -------------------------------------------------------------------------

weaviate_of() { [ "$(layout "$1" store)" = weaviate ]; }

weaviate_up() { # region (fresh)
  weaviate_of "$1" || return 0
  bash "$ROOT/tests/infra/weaviate.sh" up --port "$(layout "$1" weaviate)" --dir "$DIR/$1/weaviate" >/dev/null
}

weaviate_start() { # region (same data)
  weaviate_of "$1" || return 0
  bash "$ROOT/tests/infra/weaviate.sh" start --dir "$DIR/$1/weaviate" >/dev/null
}

weaviate_down() { # region
  [ -d "$DIR/$1/weaviate" ] || return 0
  bash "$ROOT/tests/infra/weaviate.sh" down --dir "$DIR/$1/weaviate"
}

# --- MirrorMaker 2 ---------------------------------------------------------------------------------------

mm2_start() { # region
  local d=$DIR/$1 rf=1
  alive_pidfile "$d/mm2.pid" && return 0
  [ "$(layout "$1" brokers)" = 3 ] && rf=3
  "$ISTHMUS" regions mm2-properties --regions "$DIR/regions.toml" --target "$1" \
    --replication-factor "$rf" >"$d/mm2.properties" || die "region $1: could not write mm2.properties"
  stat -c %s "$d/mm2.log" 2>/dev/null >"$d/mm2.logstart" || echo 0 >"$d/mm2.logstart"
  nohup java -Xmx256m -Dlog4j.configuration="file:$DIR/mm2-log4j.properties" -cp "$LIBS/*" \
    org.apache.kafka.connect.mirror.MirrorMaker "$d/mm2.properties" --clusters "$1" \
    >>"$d/mm2.log" 2>&1 </dev/null &
  echo $! >"$d/mm2.pid"
}

# MirrorMaker 2 is running: its process is alive and it logged that its flows started (bounded)
wait_mm2() { # region
  local d=$DIR/$1 i
  for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
    alive_pidfile "$d/mm2.pid" || { tail -n 40 "$d/mm2.log" >&2; die "region $1: MirrorMaker 2 exited (log: $d/mm2.log)"; }
    # only this run's lines: the log is appended to across restarts
    tail -c +$(($(cat "$d/mm2.logstart" 2>/dev/null || echo 0) + 1)) "$d/mm2.log" 2>/dev/null |
      grep -q "Kafka MirrorMaker started" && return 0
    sleep 0.2
  done
  tail -n 40 "$d/mm2.log" >&2
  die "region $1: MirrorMaker 2 did not start within ${READY_TIMEOUT_S}s (log: $d/mm2.log)"
}

# --- the platform ----------------------------------------------------------------------------------------

platform_start() { # region
  local d=$DIR/$1 rf=1
  alive_pidfile "$d/platform.pid" && return 0
  [ "$(layout "$1" brokers)" = 3 ] && rf=3
  mkdir -p "$d/data"
  (
    unset ISTHMUS_CONFIG
    if weaviate_of "$1"; then
      export ISTHMUS_RETRIEVAL_STORE=weaviate ISTHMUS_RETRIEVAL_WEAVIATE_URL="http://127.0.0.1:$(layout "$1" weaviate)" \
        ISTHMUS_RETRIEVAL_WEAVIATE_GRPC_PORT="$(($(layout "$1" weaviate) + 1))"
    fi
    export ISTHMUS_BUS=kafka ISTHMUS_KAFKA_BOOTSTRAP_SERVERS="$(bootstrap "$1")" \
      ISTHMUS_KAFKA_REPLICATION_FACTOR="$rf" ISTHMUS_REGION="$1" ISTHMUS_REGIONS='["a","b"]' \
      ISTHMUS_DATA_DIR="$d/data" ISTHMUS_GRPC_HOST=127.0.0.1 ISTHMUS_GRPC_PORT="$(layout "$1" grpc)" \
      ISTHMUS_METRICS_PORT="$(layout "$1" metrics)" ISTHMUS_CONSOLE_PORT=0
    exec nohup "$ISTHMUS" run --target all >>"$d/platform.log" 2>&1 </dev/null
  ) &
  echo $! >"$d/platform.pid"
}

# the platform answers gRPC health SERVING (bounded; fails fast if the process exits)
wait_platform() { # region
  local d=$DIR/$1
  "$PY" - "127.0.0.1:$(layout "$1" grpc)" "$(cat "$d/platform.pid")" "$READY_TIMEOUT_S" <<'PYPROBE' ||
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

endpoint, pid, within = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + within
with grpc.insecure_channel(endpoint) as ch:
    stub = health_pb2_grpc.HealthStub(ch)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"regions.sh: the platform at {endpoint} exited")
        try:
            if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == 1:
                sys.exit(0)
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"regions.sh: the platform at {endpoint} is not SERVING within {within:.0f}s")
        time.sleep(0.5)
PYPROBE
    { echo "regions.sh: region $1: last lines of $d/platform.log:" >&2; tail -n 40 "$d/platform.log" >&2; exit 1; }
}

# --- regions.toml ----------------------------------------------------------------------------------------

hook() { # command region
  printf "bash '%s' %s %s --dir '%s'" "$SELF" "$1" "$2" "$DIR"
}

write_config() {
  local r
  {
    echo "# written by tests/infra/regions.sh up: two local regions (isthmus_core.regions.RegionsConfig)"
    for r in "${REGIONS[@]}"; do
      echo
      echo "[regions.$r]"
      echo "endpoint = \"127.0.0.1:$(layout "$r" grpc)\""
      echo "kafka_bootstrap = \"$(bootstrap "$r")\""
      echo "metrics = \"127.0.0.1:$(layout "$r" metrics)\""
      echo
      echo "[regions.$r.hooks]"
      echo "kill = \"$(hook kill "$r")\""
      echo "restore = \"$(hook restore "$r")\""
      if [ "$(layout "$r" brokers)" = 3 ]; then
        echo "kill_broker = \"$(hook kill-broker "$r")\""
        echo "restore_broker = \"$(hook restore-broker "$r")\""
      else # one broker: losing it is losing the region's Kafka (use kill/restore); not available
        echo 'kill_broker = ""'
        echo 'restore_broker = ""'
      fi
      echo "stop_link = \"$(hook stop-link "$r")\""
      echo "start_link = \"$(hook start-link "$r")\""
    done
  } >"$DIR/regions.toml.tmp"
  mv "$DIR/regions.toml.tmp" "$DIR/regions.toml"
  "$PY" -c 'import sys; from pathlib import Path; from isthmus_core.regions import load_regions; load_regions(Path(sys.argv[1]))' \
    "$DIR/regions.toml" || die "wrote an invalid $DIR/regions.toml"
}

# --- commands --------------------------------------------------------------------------------------------

all_alive() {
  local r f
  for r in "${REGIONS[@]}"; do
    alive_pidfile "$DIR/$r/platform.pid" && alive_pidfile "$DIR/$r/mm2.pid" || return 1
    for f in $(broker_pidfiles "$r") $(weaviate_pidfile "$r"); do alive_pidfile "$f" || return 1; done
  done
}

up() {
  need java "install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless"
  [ -x "$PY" ] && [ -x "$ISTHMUS" ] || die "no $PY / $ISTHMUS: run 'make setup' first"
  case $DIR in *[\'\"\\\ ]*) die "--dir must not contain quotes, backslashes or spaces: $DIR" ;; esac
  if [ -f "$DIR/$MARK" ] && [ -f "$DIR/regions.toml" ]; then
    if all_alive; then echo "$DIR/regions.toml"; return 0; fi # idempotent
    # a previous up or a drill left some parts down: start what is missing, on the same data
    local r
    for r in "${REGIONS[@]}"; do restore_region "$r"; done
    echo "$DIR/regions.toml"
    return 0
  fi
  removable "$DIR" || die "$DIR exists, is not empty and was not made by regions.sh: pick another --dir"
  bash "$ROOT/tests/infra/kafka.sh" jars
  [ -f "$LIBS/connect-mirror-4.1.1.jar" ] || die "MirrorMaker 2 (connect-mirror) is not in $LIBS"
  mkdir -p "$DIR" && touch "$DIR/$MARK"
  save_layout
  local r p
  for r in "${REGIONS[@]}"; do
    for p in "$(layout "$r" grpc)" "$(layout "$r" metrics)"; do
      port_free "$p" || { rm -rf "$DIR"; die "127.0.0.1:$p is already in use ('make regions-down', or pass --base-port)"; }
    done
  done
  printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\nlog4j.logger.org.apache.kafka.connect.mirror.MirrorMaker=INFO\n' \
    >"$DIR/mm2-log4j.properties"
  for r in "${REGIONS[@]}"; do
    mkdir -p "$DIR/$r"
    kafka_up "$r" || { down; die "region $r: Kafka did not start"; }
    weaviate_up "$r" || { down; die "region $r: Weaviate did not start"; }
  done
  write_config
  for r in "${REGIONS[@]}"; do mm2_start "$r"; platform_start "$r"; done
  for r in "${REGIONS[@]}"; do
    (wait_mm2 "$r" && wait_platform "$r") || { down; exit 1; }
  done
  echo "$DIR/regions.toml"
}

down() {
  [ -e "$DIR" ] || return 0
  removable "$DIR" || die "$DIR was not made by regions.sh: not deleting it"
  local r
  if [ -f "$DIR/layout" ]; then
    for r in "${REGIONS[@]}"; do halt_pidfile "$DIR/$r/platform.pid"; halt_pidfile "$DIR/$r/mm2.pid"; done
    for r in "${REGIONS[@]}"; do kafka_down "$r"; weaviate_down "$r"; done
  fi
  rm -rf "$DIR"
}

kill_region() { # region: kill -9 every process of it (platform, MirrorMaker 2, brokers), data kept
  local f
  kill9_pidfile "$DIR/$1/platform.pid"
  kill9_pidfile "$DIR/$1/mm2.pid"
  for f in $(broker_pidfiles "$1") $(weaviate_pidfile "$1"); do kill9_pidfile "$f"; done
}

restore_region() { # region: start whatever of it is not running, on the same data
  kafka_start "$1"
  weaviate_start "$1"
  mm2_start "$1"
  platform_start "$1"
  wait_mm2 "$1"
  wait_platform "$1"
}

kill_broker() {
  [ "$(layout "$1" brokers)" = 3 ] ||
    die "region $1 has one broker: broker-loss needs 'regions.sh up --brokers 3' (region a gets three)"
  kill9_pidfile "$DIR/$1/kafka/node3/kafka.pid"
}

restore_broker() {
  [ "$(layout "$1" brokers)" = 3 ] || die "region $1 has one broker (see kill-broker)"
  alive_pidfile "$DIR/$1/kafka/node3/kafka.pid" ||
    bash "$ROOT/tests/infra/kafka-cluster.sh" start 3 --dir "$DIR/$1/kafka"
  wait_kafka "$1"
}

stop_link() { halt_pidfile "$DIR/$1/mm2.pid"; }

start_link() { mm2_start "$1"; wait_mm2 "$1"; }

status() {
  [ -f "$DIR/layout" ] || { echo "regions.sh: no regions in $DIR"; return 3; }
  local r f state
  for r in "${REGIONS[@]}"; do
    for f in "$DIR/$r/platform.pid" "$DIR/$r/mm2.pid" $(broker_pidfiles "$r") $(weaviate_pidfile "$r"); do
      if alive_pidfile "$f"; then state="up (pid $(cat "$f"))"; else state=down; fi
      echo "$r ${f#"$DIR/$r/"}: $state"
    done
  done
  [ -f "$DIR/regions.toml" ] && "$ISTHMUS" regions status --regions "$DIR/regions.toml"
}

case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  kill) layout "$REGION" kafka >/dev/null; kill_region "$REGION" ;;
  restore) layout "$REGION" kafka >/dev/null; restore_region "$REGION" ;;
  kill-broker) kill_broker "$REGION" ;;
  restore-broker) restore_broker "$REGION" ;;
  stop-link) layout "$REGION" kafka >/dev/null; stop_link "$REGION" ;;
  start-link) layout "$REGION" kafka >/dev/null; start_link "$REGION" ;;
  *)
    echo "usage: regions.sh up|down|status|kill <r>|restore <r>|kill-broker <r>|restore-broker <r>|stop-link <r>|start-link <r> [--dir D] [--base-port P] [--brokers 1|3] [--store embedded|weaviate]" >&2
    exit 2 ;;
esac
