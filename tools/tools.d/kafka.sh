#!/usr/bin/env bash
# Apache Kafka jars for the kafka test tier (needs Java + Maven; skipped with a note without them).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "tools: java/mvn not found — the Kafka test tier will skip locally (and fail under CI=true)"
  exit 0
fi
bash tests/infra/kafka.sh jars
