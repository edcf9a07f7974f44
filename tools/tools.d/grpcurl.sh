#!/usr/bin/env bash
# grpcurl v1.9.3 (a command-line gRPC client), built from the Go module proxy (`go install`, about a
# minute once per user cache), linked as .tools/bin/grpcurl. The end-to-end auth test calls the platform
# with it as an operator would (tests/e2e/test_e2e_auth_hydra.py); README.md shows it against `make run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.9.3
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/grpcurl-$VERSION

built_ok() {
  [ -x "$CACHE/grpcurl" ] && [ -f "$CACHE/.version" ] && [ "$(cat "$CACHE/.version")" = "$VERSION" ]
}

if ! built_ok; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — grpcurl is not installed; the grpcurl end-to-end tests skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: building grpcurl $VERSION into $CACHE (go install, about a minute)"
  mkdir -p "$CACHE"
  GOBIN="$CACHE" CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" \
    go install -ldflags "-s -w" "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION"
  echo "$VERSION" >"$CACHE/.version"
fi
mkdir -p .tools/bin
ln -sfn "$CACHE/grpcurl" .tools/bin/grpcurl
echo "tools: grpcurl $VERSION -> .tools/bin/grpcurl"
