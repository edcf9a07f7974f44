#!/usr/bin/env bash
# Submit one document to Isthmus with Kafka's own console producer (bin/kafka-console-producer.sh of an
# Apache Kafka distribution): one line = headers, key and the DocumentSubmitted event as JSON
# (the producer contract: docs/events.md, docs/asyncapi.yaml).
#
#   examples/producers/console-producer.sh --bootstrap localhost:9092 --tenant acme \
#       --file notes.txt [--document-id notes-1] [--token-file token.jwt] [-- PRODUCER ARGS...]
#
# The console producer is found as $KAFKA_HOME/bin/kafka-console-producer.sh, else on PATH
# (kafka-console-producer.sh, or kafka-console-producer as some packages name it). Arguments after `--`
# go to it unchanged, e.g. `-- --command-config client.properties` for SASL/TLS settings.
# With authentication on, the token (a JWT of a principal with documents.write in the tenant) comes from
# --token-file or $PRODUCER_TOKEN and travels in the `authorization` header.
#
# The line it sends, tab-separated (parse.headers / parse.key):
#   content-type:application/json,authorization:Bearer <JWT> <TAB> <tenant>/<document_id> <TAB> {"tenant_id":...}
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

BOOTSTRAP=${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}
TENANT="" FILE="" DOC_ID="" TOKEN_FILE="" CONTENT_TYPE=""
TOPIC=isthmus.documents.submitted.v1
# the inline limit ingestion applies by default ([ingestion] max_inline_bytes); larger: by reference
MAX_INLINE_BYTES=${MAX_INLINE_BYTES:-4194304}
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap) BOOTSTRAP=$2; shift 2 ;;
    --tenant) TENANT=$2; shift 2 ;;
    --file) FILE=$2; shift 2 ;;
    --document-id) DOC_ID=$2; shift 2 ;;
    --content-type) CONTENT_TYPE=$2; shift 2 ;;
    --token-file) TOKEN_FILE=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$TENANT" ] && [ -n "$FILE" ] || usage
[ -f "$FILE" ] || { echo "no such file: $FILE" >&2; exit 2; }

if [ -n "${KAFKA_HOME:-}" ] && [ -x "$KAFKA_HOME/bin/kafka-console-producer.sh" ]; then
  PRODUCER=$KAFKA_HOME/bin/kafka-console-producer.sh
elif command -v kafka-console-producer.sh >/dev/null; then
  PRODUCER=kafka-console-producer.sh
elif command -v kafka-console-producer >/dev/null; then
  PRODUCER=kafka-console-producer
else
  echo "kafka-console-producer.sh not found: set KAFKA_HOME to an Apache Kafka distribution" >&2
  exit 3
fi

size=$(wc -c <"$FILE" | tr -d ' ')
if [ "$size" -gt "$MAX_INLINE_BYTES" ]; then
  echo "$FILE is $size bytes, over the inline limit ($MAX_INLINE_BYTES): send it by reference (content_uri)" >&2
  exit 2
fi

# JSON string of a value: backslashes and double quotes escaped; control characters refused
json_string() {
  case "$1" in *[[:cntrl:]]*) echo "control characters are not allowed in: $1" >&2; exit 2 ;; esac
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

name=$(basename -- "$FILE")
digest=$(sha256sum -- "$FILE" | cut -d' ' -f1)
content=$(base64 <"$FILE" | tr -d '\n')   # standard base64, padded: what DocumentSubmitted.content takes
key=$TENANT${DOC_ID:+/$DOC_ID}             # the partition key: <tenant>/<document_id> (or the tenant alone)
event="{\"tenant_id\":$(json_string "$TENANT")"
event+=",\"idempotency_key\":$(json_string "$TENANT/${DOC_ID:-$digest}/$digest")"
[ -n "$DOC_ID" ] && event+=",\"document_id\":$(json_string "$DOC_ID")"
event+=",\"filename\":$(json_string "$name")"
[ -n "$CONTENT_TYPE" ] && event+=",\"content_type\":$(json_string "$CONTENT_TYPE")"
event+=",\"content\":\"$content\"}"

headers="content-type:application/json"
token=${PRODUCER_TOKEN:-}
[ -n "$TOKEN_FILE" ] && token=$(tr -d '[:space:]' <"$TOKEN_FILE")
[ -n "$token" ] && headers+=",authorization:Bearer $token"   # a JWT holds no ',' nor ':'

# acks=all and a request size for the bus's 8 MiB events (the console producer's default is 1 MiB)
printf '%s\t%s\t%s\n' "$headers" "$key" "$event" | "$PRODUCER" \
  --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
  --property parse.headers=true --property headers.delimiter=$'\t' \
  --property headers.separator=, --property headers.key.separator=: \
  --property parse.key=true --property key.separator=$'\t' \
  --producer-property acks=all --producer-property max.request.size=8650752 \
  "$@"
echo "submitted $key to $TOPIC"
