#!/bin/sh
# A single-node KRaft broker (broker + controller in one process) for the cluster tier. Its log dir is the
# pod's emptyDir (/var/lib/kafka): formatted with a fresh cluster id when empty. Clients reach it through the
# Service as $KAFKA_ADVERTISED (host:port, e.g. kafka.<namespace>.svc.cluster.local:9092).
set -euf  # -f: the classpath wildcard is for java, not the shell
: "${KAFKA_ADVERTISED:?KAFKA_ADVERTISED (host:port clients reach the broker at) is required}"
DATA=${KAFKA_DATA:-/var/lib/kafka}
CONF=$DATA/server.properties
mkdir -p "$DATA/logs"
cat >"$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://$KAFKA_ADVERTISED
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA/logs
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
cat >"$DATA/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
JAVA="java -Xmx${KAFKA_HEAP:-384m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j.configuration=file:$DATA/log4j.properties -cp /opt/kafka/libs/*"
if [ ! -f "$DATA/logs/meta.properties" ]; then
  # a Kafka Uuid: 16 random bytes, url-safe base64 without padding, never starting with '-'
  id=$(python3 -c 'import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]).startswith("-"):
    pass
print(i)')
  $JAVA kafka.tools.StorageTool format -t "$id" -c "$CONF"
fi
exec $JAVA kafka.Kafka "$CONF"
