#!/usr/bin/env bash
# Three Apache Kafka 4.1.1 nodes (combined broker+controller, KRaft quorum of 3) on loopback, for
# failover drills: node n listens on P+2(n-1) (broker) and P+2(n-1)+1 (controller); data in D/node<n>.
#   tests/infra/kafka-cluster.sh up   [--port P] [--dir D]   prints the bootstrap list
#   tests/infra/kafka-cluster.sh down [--dir D]
#   tests/infra/kafka-cluster.sh kill|start <n> [--dir D]    stop (SIGKILL) / restart one node
# Jars come from tests/infra/kafka.sh (same cache).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
LIBS=$CACHE/kafka-4.1.1/libs
PY=${PYTHON:-$ROOT/.venv/bin/python}
PORT=29092
DIR=$ROOT/.tools/kafka-cluster
cmd=${1:-}; shift || true
NODE=""
if [ "$cmd" = kill ] || [ "$cmd" = start ]; then NODE=${1:?node number}; shift; fi
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "kafka-cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bootstrap() { echo "127.0.0.1:$PORT,127.0.0.1:$((PORT + 2)),127.0.0.1:$((PORT + 4))"; }

launch() { # node
  local d="$DIR/node$1"
  nohup java -Xmx384m -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.Kafka \
    "$d/server.properties" >>"$d/server.log" 2>&1 </dev/null &
  echo $! >"$d/kafka.pid"
}

up() {
  bash "$ROOT/tests/infra/kafka.sh" jars
  rm -rf "$DIR" && mkdir -p "$DIR"
  printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n' >"$DIR/log4j.properties"
  local voters="" n id
  for n in 1 2 3; do voters+="${voters:+,}$n@127.0.0.1:$((PORT + 2 * n - 1))"; done
  id=$("$PY" -c '
import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]).startswith("-"):
    pass
print(i)')
  for n in 1 2 3; do
    local d="$DIR/node$n" bp=$((PORT + 2 * n - 2)) cp=$((PORT + 2 * n - 1))
    mkdir -p "$d/logs"
    cat >"$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$bp,CONTROLLER://127.0.0.1:$cp
advertised.listeners=PLAINTEXT://127.0.0.1:$bp
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/logs
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
default.replication.factor=3
min.insync.replicas=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
    java -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.tools.StorageTool \
      format -t "$id" -c "$d/server.properties" >"$d/format.log" 2>&1
  done
  for n in 1 2 3; do launch "$n"; done
  "$PY" - "$(bootstrap)" <<'PYPROBE'
import asyncio, logging, sys, time
logging.disable(logging.CRITICAL)
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    deadline = time.monotonic() + 120
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=3000)
        try:
            await admin.start()
            meta = await admin.describe_cluster()
            if len(meta["brokers"]) == 3:
                return
        except Exception:
            pass
        finally:
            await admin.close()
        if time.monotonic() > deadline:
            raise SystemExit("kafka-cluster.sh: 3 brokers not up in 120 s")
        await asyncio.sleep(0.5)

asyncio.run(main())
PYPROBE
  bootstrap
}

kill_node() {
  local pidf="$DIR/node$1/kafka.pid"
  [ -f "$pidf" ] && kill -KILL "$(cat "$pidf")" 2>/dev/null || true
}

down() {
  local n
  for n in 1 2 3; do
    local pidf="$DIR/node$n/kafka.pid"
    if [ -f "$pidf" ]; then kill -TERM "$(cat "$pidf")" 2>/dev/null || true; fi
  done
  for n in 1 2 3; do
    local pidf="$DIR/node$n/kafka.pid"
    if [ -f "$pidf" ]; then
      for _ in $(seq 1 60); do kill -0 "$(cat "$pidf")" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$(cat "$pidf")" 2>/dev/null || true
    fi
  done
  rm -rf "$DIR"
}

case $cmd in
  up) up ;;
  down) down ;;
  kill) kill_node "$NODE" ;;
  start) launch "$NODE" ;;
  *) echo "usage: kafka-cluster.sh up|down|kill N|start N [--port P] [--dir D]" >&2; exit 2 ;;
esac
