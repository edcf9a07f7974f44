#!/usr/bin/env bash
# The official AsyncAPI parser (@asyncapi/parser 3.6.6, pinned with its dependencies by
# tools/asyncapi/package-lock.json) for validating docs/asyncapi.yaml against the AsyncAPI 3.0 schema
# (services/core/tests/test_core_asyncapi.py, tools/asyncapi/validate.cjs). `npm ci` from the npm registry
# into the per-user cache, once per lock file (a few seconds, ~55 MB); linked as .tools/asyncapi.
# Needs Node.js 18+ and npm; without them the validation test skips locally (and fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tools: node/npm not found — the AsyncAPI validator is not installed (apt-get install nodejs npm)"
  exit 0
fi
LOCK_SUM=$(sha256sum tools/asyncapi/package-lock.json | cut -c1-12)
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/asyncapi-$LOCK_SUM
if [ ! -e "$CACHE/.complete" ]; then
  echo "tools: installing @asyncapi/parser into $CACHE (npm ci)"
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  cp tools/asyncapi/package.json tools/asyncapi/package-lock.json "$CACHE/"
  (cd "$CACHE" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  touch "$CACHE/.complete"
fi
mkdir -p .tools
ln -sfn "$CACHE" .tools/asyncapi
echo "tools: @asyncapi/parser -> .tools/asyncapi/node_modules"
