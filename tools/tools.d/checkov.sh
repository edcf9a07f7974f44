#!/usr/bin/env bash
# checkov (IaC static analysis: rendered chart, Dockerfile, terraform) in its own virtualenv — it pins
# many packages, so it never goes into the project .venv. Built once per user cache (a venv under
# ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/checkov-<version>) and linked as .tools/checkov;
# the tests run .tools/checkov/bin/checkov.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=3.3.30
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/checkov-$VERSION

built_ok() {
  [ -x "$CACHE/bin/checkov" ] && [ "$("$CACHE/bin/checkov" --version 2>/dev/null)" = "$VERSION" ]
}

if ! built_ok; then
  # checkov 3.3 supports Python 3.9-3.12; prefer the project's interpreter version
  PY=$(command -v python3.11 || command -v python3 || true)
  if [ -z "$PY" ]; then
    echo "tools: python3 not found — checkov is not installed; checkov tests skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: installing checkov $VERSION into $CACHE (pip, about a minute)"
  rm -rf "$CACHE"
  "$PY" -m venv "$CACHE"
  "$CACHE/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION"
  built_ok || { echo "tools: checkov install did not report $VERSION" >&2; exit 1; }
fi
mkdir -p .tools
ln -sfn "$CACHE" .tools/checkov
echo "tools: checkov $VERSION -> .tools/checkov/bin/checkov"
