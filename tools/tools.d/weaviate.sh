#!/usr/bin/env bash
# Weaviate server v1.32.4, built from the Go module proxy (`go install`, about 3 minutes once per user
# cache), linked as .tools/bin/weaviate-server. Started and stopped by tests/infra/weaviate.sh
# (`make weaviate-up` / `make weaviate-down`); used by the Weaviate store adapter's test tier.
# weaviate-client's "embedded" mode downloads a binary from the internet, so the server is built here.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.32.4
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/weaviate-$VERSION

built_ok() {
  [ -x "$CACHE/weaviate-server" ] && [ -f "$CACHE/.version" ] && [ "$(cat "$CACHE/.version")" = "$VERSION" ]
}

if ! built_ok; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — weaviate-server is not installed; Weaviate tests skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: building weaviate-server $VERSION into $CACHE (go install, about 3 minutes)"
  mkdir -p "$CACHE"
  GOBIN="$CACHE" CGO_ENABLED=0 GOFLAGS="-trimpath" \
    go install -ldflags "-s -w" "github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION"
  echo "$VERSION" >"$CACHE/.version"
fi
mkdir -p .tools/bin
ln -sfn "$CACHE/weaviate-server" .tools/bin/weaviate-server
echo "tools: weaviate-server $VERSION -> .tools/bin/weaviate-server"
