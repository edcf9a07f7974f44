#!/usr/bin/env bash
# Generate Python stubs (+ .pyi typings) for every proto under protos/isthmus into OUT (default
# protos/python). `make protos` writes them; `make protos-check` writes to a temp dir and diffs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-protos/python}")
PY=${PYTHON:-.venv/bin/python}
rm -rf "$OUT/isthmus"
mkdir -p "$OUT"
mapfile -t FILES < <(cd protos && find isthmus -name '*.proto' | LC_ALL=C sort)
(cd protos && "../$PY" -m grpc_tools.protoc -I . \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  --plugin=protoc-gen-mypy_grpc="../.venv/bin/protoc-gen-mypy_grpc" --mypy_grpc_out="$OUT" \
  "${FILES[@]}")
# packages: every generated folder gets an __init__.py so the stubs import as isthmus.<svc>.v1
find "$OUT/isthmus" -type d -exec touch {}/__init__.py \;
