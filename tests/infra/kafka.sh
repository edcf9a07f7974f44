#!/usr/bin/env bash
# A real single-node Apache Kafka 4.1.1 (KRaft) on loopback, from Maven Central jars.
#   tests/infra/kafka.sh jars                       resolve the jars once (cached per user)
#   tests/infra/kafka.sh up   [--port P] [--dir D]  start a broker on 127.0.0.1:P (controller P+1)
#   tests/infra/kafka.sh down [--dir D]             stop it and remove its data
# Needs Java 17+ and Maven. Jars live in ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/kafka-4.1.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=4.1.1
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
LIBS=$CACHE/kafka-$VERSION/libs
PORT=19092
DIR=$ROOT/.tools/kafka-data
PY=${PYTHON:-$ROOT/.venv/bin/python}

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "kafka.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

need() { command -v "$1" >/dev/null 2>&1 || { echo "kafka.sh: '$1' is required ($2)" >&2; exit 3; }; }

jars() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  need java "install a JDK 17+, e.g. apt-get install openjdk-17-jre-headless"
  need mvn "install Maven, e.g. apt-get install maven"
  mkdir -p "$LIBS"
  echo "kafka.sh: resolving Apache Kafka $VERSION jars from Maven Central into $LIBS" >&2
  mvn -q -B -f "$ROOT/tests/infra/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
}

up() {
  need java "install a JDK 17+"
  jars
  local ctrl=$((PORT + 1))
  if [ -f "$DIR/kafka.pid" ] && kill -0 "$(cat "$DIR/kafka.pid")" 2>/dev/null; then
    echo "127.0.0.1:$PORT"; return 0
  fi
  rm -rf "$DIR" && mkdir -p "$DIR/logs"
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=16777216
message.max.bytes=10485760
PROPS
  cat > "$DIR/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
  local id
  id=$("$PY" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22])')
  java -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.tools.StorageTool \
    format -t "$id" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1
  nohup java -Xmx512m -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.Kafka \
    "$DIR/server.properties" >"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/kafka.pid"
  # ready = a client gets cluster metadata (bounded wait)
  if ! "$PY" - "127.0.0.1:$PORT" <<'PYPROBE'
import asyncio, logging, sys, time
logging.disable(logging.CRITICAL)
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    deadline = time.monotonic() + 90
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()

asyncio.run(main())
PYPROBE
  then
    echo "kafka.sh: broker did not become ready; log follows" >&2
    tail -n 40 "$DIR/server.log" >&2
    down
    exit 1
  fi
  echo "127.0.0.1:$PORT"
}

down() {
  if [ -f "$DIR/kafka.pid" ]; then
    local pid
    pid=$(cat "$DIR/kafka.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$DIR"
}

case $cmd in
  jars) jars ;;
  up) up ;;
  down) down ;;
  *) echo "usage: kafka.sh jars|up|down [--port P] [--dir D]" >&2; exit 2 ;;
esac
