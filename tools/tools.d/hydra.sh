#!/usr/bin/env bash
# Ory Hydra v2.3.0 (OAuth2 / OIDC server), built from the Go module proxy once per user cache (about
# 2-4 minutes on 2 cores), linked as .tools/hydra/bin/hydra. Started and stopped by tests/infra/hydra.sh
# (`make hydra-up` / `make hydra-down`); the `hydra` test fixture and tests/e2e/test_e2e_auth_hydra.py
# use it as the real identity provider.
# Built in a throwaway module (`go get -tool`) with Hydra's own `pop` replace line (a dependency's replace
# directives are ignored, and without it persistence/sql does not compile) and `-tags sqlite` (the
# in-memory DSN needs SQLite).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v2.3.0
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/hydra-$VERSION
POP_REPLACE='github.com/gobuffalo/pop/v6 => github.com/ory/pop/v6 v6.2.1-0.20241121111754-e5dfc0f3344b'

built_ok() {
  [ -x "$CACHE/hydra" ] && [ -f "$CACHE/.version" ] && [ "$(cat "$CACHE/.version")" = "$VERSION" ]
}

if ! built_ok; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — hydra is not installed; the Hydra (OAuth2) tests skip locally (and fail under CI=true)"
    exit 0
  fi
  mkdir -p "$CACHE"
  # one build at a time: parallel installs on a cold cache wait for the first
  exec 9>"$CACHE/.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if ! built_ok; then
    echo "tools: building hydra $VERSION into $CACHE (go build -tags sqlite, a few minutes)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (
      cd "$work"
      export GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
      go mod init local/hydratool >/dev/null 2>&1
      go get -tool "github.com/ory/hydra/v2@$VERSION"
      echo "replace $POP_REPLACE" >>go.mod
      go mod tidy
      go build -tags sqlite -ldflags "-s -w" -o "$CACHE/hydra.new" github.com/ory/hydra/v2
    )
    mv -f "$CACHE/hydra.new" "$CACHE/hydra"
    echo "$VERSION" >"$CACHE/.version"
  fi
  exec 9>&-
fi
mkdir -p .tools/hydra/bin
ln -sfn "$CACHE/hydra" .tools/hydra/bin/hydra
echo "tools: hydra $VERSION -> .tools/hydra/bin/hydra"
