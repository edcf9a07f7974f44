#!/usr/bin/env bash
# Skaffold v2.16.1 (the dev loop's tool: skaffold.yaml), built from the Go module proxy once per user cache
# (several minutes on 2 cores), linked as .tools/bin/skaffold. The deploy tests validate skaffold.yaml with
# it (`skaffold diagnose`, `skaffold render` of both profiles through the real helm); `skaffold dev/run` itself
# needs a Docker daemon to build, which this machine does not have (`make image` builds the same Dockerfile).
# Built in a throwaway module (`go get -tool`) carrying skaffold's own replace lines (a dependency's replace
# directives are ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v2.16.1
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/skaffold-$VERSION
mkdir -p .tools/bin
if [ ! -x "$CACHE/skaffold" ]; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — skaffold is not installed; its validation tests skip locally (and fail under CI=true)"
    exit 0
  fi
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if [ ! -x "$CACHE/skaffold" ]; then
    echo "tools: building skaffold $VERSION into $CACHE (several minutes, once per machine)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (
      cd "$work"
      export GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0
      go mod init local/skaffoldtool >/dev/null 2>&1
      mod=$(go mod download -json "github.com/GoogleContainerTools/skaffold/v2@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
      grep -E '^replace ' "$mod" >>go.mod
      go get -tool "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold@$VERSION"
      go mod tidy
      go build -ldflags "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$VERSION" \
        -o "$CACHE/skaffold.new" github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold
    )
    mv "$CACHE/skaffold.new" "$CACHE/skaffold"
  fi
fi
ln -sf "$CACHE/skaffold" .tools/bin/skaffold
echo "tools: skaffold $VERSION -> .tools/bin/skaffold"
