#!/usr/bin/env bash
# `uv sync --all-packages --frozen "$@"` (the .venv from uv.lock), from uv's cache alone when it can.
#   UV=path/to/uv bash tools/sync.sh [uv sync options: --no-dev, --group llama, --inexact ...]
# Offline first: uv revalidates a cached source distribution online, and when the package index sends no
# cache headers (a mirror may not), it fetches the archive again and rebuilds it; for llama-cpp-python
# (the `llama` group) that is a 10-15 min llama.cpp build on 2 cores for every fresh clone. Offline, uv
# takes the wheel it built before. With --frozen the offline and online syncs install the same
# distributions (uv.lock pins each one with its hash). When the cache lacks any of them, the offline
# attempt fails before touching .venv's packages and the sync runs online.
set -uo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .tools/uv/bin/uv)}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$UV" sync --all-packages --frozen --offline "$@" 2>"$log"; then
  grep -v '^ [-+~] ' "$log" >&2 # uv's summary lines, not one line per package
  exit 0
fi
echo "sync: not everything is in uv's cache ($(grep -m1 -i 'error' "$log" || tail -n1 "$log")); syncing online" >&2
exec "$UV" sync --all-packages --frozen "$@"
