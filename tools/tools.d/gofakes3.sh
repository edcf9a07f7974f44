#!/usr/bin/env bash
# gofakes3 v1.2.0 (an S3-compatible HTTP server: buckets, objects, HEAD, ranged GET, SigV4 requests),
# built from the Go module proxy (`go install`, under a minute once per user cache), linked as
# .tools/bin/gofakes3. The claim-check tests read documents by reference through the real boto3 S3
# client against it (services/ingestion/tests/test_ingestion_objects_s3.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.2.0
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/gofakes3-$VERSION

built_ok() {
  [ -x "$CACHE/gofakes3" ] && [ -f "$CACHE/.version" ] && [ "$(cat "$CACHE/.version")" = "$VERSION" ]
}

if ! built_ok; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — gofakes3 is not installed; the S3 object store tests skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: building gofakes3 $VERSION into $CACHE (go install, under a minute)"
  mkdir -p "$CACHE"
  GOBIN="$CACHE" CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" \
    go install -ldflags "-s -w" "github.com/johannesboyne/gofakes3/cmd/gofakes3@$VERSION"
  echo "$VERSION" >"$CACHE/.version"
fi
mkdir -p .tools/bin
ln -sfn "$CACHE/gofakes3" .tools/bin/gofakes3
echo "tools: gofakes3 $VERSION -> .tools/bin/gofakes3"
