#!/usr/bin/env bash
# A real single-node Apache Kafka 4.1.1 (KRaft) on loopback, from Maven Central jars (see tests/infra/README.md).
#   tests/infra/kafka.sh jars                        resolve the jars once (cached per user)
#   tests/infra/kafka.sh up    [--port P] [--dir D]  start a broker on 127.0.0.1:P (controller P+1); prints it
#   tests/infra/kafka.sh down  [--dir D]             stop it and remove its data
#   tests/infra/kafka.sh stop|start [--dir D]        stop / restart it on the same data (failure tests)
#   up --secure                                      also a SASL_SSL listener on P+2: a throwaway CA and broker
#                                                    certificate, SCRAM-SHA-256/512 and PLAIN users; writes
#                                                    D/secure.env (bootstrap, CA file, user, password)
# Needs Java 17+ and Maven (Maven only until the jars are cached). Jars live in
# ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/kafka-4.1.1/libs, outside the clone and shared by clones.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=4.1.1
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}
LIBS=$CACHE/kafka-$VERSION/libs
PORT=19092
DIR=$ROOT/.tools/kafka-data
PY=${PYTHON:-$ROOT/.venv/bin/python}
READY_TIMEOUT_S=${KAFKA_READY_TIMEOUT_S:-90}
STOP_TIMEOUT_S=${KAFKA_STOP_TIMEOUT_S:-30}
MARK=.isthmus-kafka # marks a data dir this script made: the only kind it deletes
SECURE=0
SASL_USER=isthmus
SASL_PASSWORD=isthmus-test-secret

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --secure) SECURE=1; shift ;;
    *) echo "kafka.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $PORT in '' | *[!0-9]*) echo "kafka.sh: --port must be a number, got '$PORT'" >&2; exit 2 ;; esac
if [ "$PORT" -lt 1024 ] || [ "$PORT" -gt 65534 ]; then
  echo "kafka.sh: --port must be in 1024..65534 (the controller takes port+1), got $PORT" >&2; exit 2
fi
DIR=$(realpath -m "$DIR")

die() { echo "kafka.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "kafka.sh: '$1' is required: $2" >&2; exit 3; }; }

jars() {
  [ -f "$LIBS/.complete" ] && return 0
  need java "install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless"
  need mvn "install Maven (only needed once, to fetch the Kafka jars), e.g. apt-get install maven"
  mkdir -p "$LIBS"
  # one resolver at a time: parallel test sessions on a cold cache wait for the first
  exec 9>"$LIBS/../.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if [ ! -f "$LIBS/.complete" ]; then
    echo "kafka.sh: resolving Apache Kafka $VERSION jars from Maven Central into $LIBS" >&2
    rm -f "$LIBS"/*.jar
    mvn -q -B -f "$ROOT/tests/infra/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" >&2 || die "mvn could not resolve the Kafka jars (see above)"
    touch "$LIBS/.complete"
  fi
  exec 9>&-
}

# A directory we may delete: missing, empty, or made by this script (older copies left no mark).
removable() {
  [ ! -e "$1" ] || [ -f "$1/$MARK" ] || [ -z "$(ls -A "$1" 2>/dev/null)" ] ||
    { [ -f "$1/server.properties" ] && [ -f "$1/log4j.properties" ]; }
}

alive() { [ -f "$DIR/kafka.pid" ] && kill -0 "$(cat "$DIR/kafka.pid")" 2>/dev/null; }

port_of() { sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$DIR/server.properties"; }

# A throwaway CA and a broker certificate for 127.0.0.1/localhost (PEM, as Kafka reads them), in $DIR/tls
make_tls() {
  need openssl "apt-get install openssl"
  local t=$DIR/tls
  mkdir -p "$t"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=isthmus-test-ca" \
      -keyout "$t/ca.key" -out "$t/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$t/broker.key" -out "$t/broker.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$t/san.ext" &&
      openssl x509 -req -days 7 -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
        -extfile "$t/san.ext" -out "$t/broker.crt" &&
      openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -passout "pass:$SASL_PASSWORD" -in "$t/broker.key" -out "$t/broker.p8" &&
      cat "$t/broker.p8" "$t/broker.crt" >"$t/keystore.pem"
  } >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "could not make the test certificates"; }
}

port_free() {
  "$PY" - "$1" <<'PYPORT'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PYPORT
}

up() {
  need java "install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless"
  [ -x "$PY" ] || die "no Python at $PY: run 'make setup' first (or set PYTHON)"
  jars
  if alive; then # idempotent: already running from this dir
    echo "127.0.0.1:$(port_of)"; return 0
  fi
  removable "$DIR" || die "$DIR exists, is not empty and was not made by kafka.sh: pick another --dir"
  local ctrl=$((PORT + 1)) sport=$((PORT + 2)) p ports
  ports=("$PORT" "$ctrl")
  [ "$SECURE" = 1 ] && ports+=("$sport")
  for p in "${ports[@]}"; do
    port_free "$p" || die "127.0.0.1:$p is already in use (another broker? 'make kafka-down', or pass --port)"
  done
  rm -rf "$DIR" && mkdir -p "$DIR/logs" && touch "$DIR/$MARK"
  local listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$ctrl"
  local advertised="PLAINTEXT://127.0.0.1:$PORT" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ "$SECURE" = 1 ]; then
    make_tls
    listeners+=",SASL_SSL://127.0.0.1:$sport"
    advertised+=",SASL_SSL://127.0.0.1:$sport"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=16777216
message.max.bytes=10485760
PROPS
  local scram=()
  if [ "$SECURE" = 1 ]; then
    # clients authenticate on SASL_SSL; the broker's own (inter-broker) traffic stays on PLAINTEXT
    cat >>"$DIR/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/tls/keystore.pem
listener.name.sasl_ssl.ssl.key.password=$SASL_PASSWORD
PROPS
    scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]"
      --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]")
    cat >"$DIR/secure.env" <<ENV
BOOTSTRAP=127.0.0.1:$sport
CAFILE=$DIR/tls/ca.pem
USERNAME=$SASL_USER
PASSWORD=$SASL_PASSWORD
ENV
  fi
  cat >"$DIR/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
  # a Kafka Uuid: 16 random bytes, url-safe base64 without padding, never starting with '-'
  local id
  id=$("$PY" -c '
import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]).startswith("-"):
    pass
print(i)')
  java -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.tools.StorageTool \
    format -t "$id" -c "$DIR/server.properties" "${scram[@]}" >"$DIR/format.log" 2>&1 ||
    { cat "$DIR/format.log" >&2; rm -rf "$DIR"; die "formatting the storage failed"; }
  launch
  echo "127.0.0.1:$PORT"
}

launch() {
  nohup java -Xmx512m -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" kafka.Kafka \
    "$DIR/server.properties" >>"$DIR/server.log" 2>&1 </dev/null &
  echo $! >"$DIR/kafka.pid"
  # ready = this broker (still alive) serves cluster metadata to a client; bounded wait
  if ! "$PY" - "127.0.0.1:$(port_of)" "$(cat "$DIR/kafka.pid")" "$READY_TIMEOUT_S" <<'PYPROBE'
import asyncio, logging, os, sys, time
logging.disable(logging.CRITICAL)
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> int:
    bootstrap, pid, within = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("kafka.sh: the broker process exited", file=sys.stderr)
            return 1
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return 0
        except Exception as e:  # not up yet
            if time.monotonic() > deadline:
                print(f"kafka.sh: no metadata from {bootstrap} within {within:.0f}s: {e!r}", file=sys.stderr)
                return 1
        finally:
            await admin.close()
        await asyncio.sleep(0.5)

sys.exit(asyncio.run(main()))
PYPROBE
  then
    echo "kafka.sh: broker did not become ready; last lines of $DIR/server.log:" >&2
    tail -n 40 "$DIR/server.log" >&2
    down
    exit 1
  fi
}

# SIGTERM (a clean controlled shutdown), then SIGKILL after STOP_TIMEOUT_S
halt() {
  alive || return 0
  local pid i
  pid=$(cat "$DIR/kafka.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  echo "kafka.sh: broker $pid did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

stop() { halt; }

start() {
  [ -f "$DIR/server.properties" ] || die "no broker data in $DIR (use 'up')"
  if alive; then echo "127.0.0.1:$(port_of)"; return 0; fi
  launch
  echo "127.0.0.1:$(port_of)"
}

down() {
  [ -e "$DIR" ] || return 0
  removable "$DIR" || die "$DIR was not made by kafka.sh: not deleting it"
  halt
  rm -rf "$DIR"
}

case $cmd in
  jars) jars ;;
  up) up ;;
  down) down ;;
  stop) stop ;;
  start) start ;;
  *) echo "usage: kafka.sh jars|up|down|stop|start [--port P] [--dir D] [--secure]" >&2; exit 2 ;;
esac
