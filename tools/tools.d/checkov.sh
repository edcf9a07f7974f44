#!/usr/bin/env bash
# checkov (IaC static analysis) in its own virtualenv — it pins many packages, so never in .venv.
# Built once per user cache, linked as .tools/checkov.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=3.3.30
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/checkov-$VERSION
if [ ! -x "$CACHE/bin/checkov" ]; then
  echo "tools: installing checkov $VERSION into $CACHE"
  rm -rf "$CACHE"
  python3 -m venv "$CACHE"
  "$CACHE/bin/pip" install --quiet "checkov==$VERSION"
fi
mkdir -p .tools
ln -sfn "$CACHE" .tools/checkov
