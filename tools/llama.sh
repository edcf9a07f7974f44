#!/usr/bin/env bash
# llama-cpp-python (the `llama` dependency group: a real OpenAI-compatible server for the generator's
# tests and `make bench-agents`) into .venv, from a wheel built once per user cache.
#   UV=path/to/uv bash tools/llama.sh      (after `uv sync --group llama --no-install-package llama-cpp-python`)
# The package ships only a source distribution: building it compiles llama.cpp (8-14 min on 2 shared cores).
# uv caches the wheel it builds, but ties it to its HTTP cache entry of the sdist: a package index that
# sends no cache headers (a mirror may not) makes every online `uv lock` / `uv sync` fetch the sdist
# again and drop that wheel, so a fresh clone rebuilt llama.cpp. Here the wheel is kept in
# ${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}/llama-cpp-python-<version>-<key>/, the key covering the
# sdist's sha256 from uv.lock and the build settings from pyproject.toml ([tool.uv]
# config-settings-package: -DGGML_NATIVE=OFF, a portable CPU build). The sdist is the one uv.lock pins
# (its sha256 is checked); a changed lock entry or setting builds a new wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .tools/uv/bin/uv)}
# absolute: the build runs in another directory
case $UV in */*) UV=$(cd "$(dirname "$UV")" && pwd)/$(basename "$UV") ;; *) UV=$(command -v "$UV" || echo "$UV") ;; esac
[ -x "$UV" ] || { echo "llama: no uv at $UV: run 'make setup' first" >&2; exit 1; }
PY=.venv/bin/python
[ -x "$PY" ] || { echo "llama: no $PY: run 'make setup' first" >&2; exit 1; }

# version, sdist url and sha256 (uv.lock), the build settings (pyproject.toml), the cache key
mapfile -t spec < <("$PY" - <<'PY'
import hashlib, json, tomllib
lock = tomllib.load(open("uv.lock", "rb"))
(pkg,) = [p for p in lock["package"] if p["name"] == "llama-cpp-python"]
settings = tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["config-settings-package"]["llama-cpp-python"]
sha = pkg["sdist"]["hash"].removeprefix("sha256:")
key = hashlib.sha256(json.dumps([sha, settings], sort_keys=True).encode()).hexdigest()[:16]
print(pkg["version"], pkg["sdist"]["url"], sha, key, sep="\n")
for k, v in settings.items():
    print(f"{k}={v}")
PY
)
[ ${#spec[@]} -ge 4 ] || { echo "llama: llama-cpp-python's sdist or build settings not found in uv.lock / pyproject.toml" >&2; exit 1; }
VERSION=${spec[0]} URL=${spec[1]} SHA=${spec[2]} KEY=${spec[3]}
SETTINGS=("${spec[@]:4}")
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/llama-cpp-python-$VERSION-$KEY

wheel() { compgen -G "$CACHE/llama_cpp_python-$VERSION-*.whl" | head -n1; }

if [ -z "$(wheel)" ]; then
  mkdir -p "$CACHE"
  # one build at a time: parallel setups on a cold cache wait for the first
  exec 9>"$CACHE/.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if [ -z "$(wheel)" ]; then
    echo "llama: building llama-cpp-python $VERSION into $CACHE (llama.cpp from source, 8-14 min on 2 cores, once)"
    start=$(date +%s)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    sdist=$work/$(basename "$URL")
    curl -fsSL --retry 3 -o "$sdist" "$URL"
    echo "$SHA  $sdist" | sha256sum -c --quiet - || { echo "llama: sha256 mismatch for $URL" >&2; exit 1; }
    args=()
    for s in "${SETTINGS[@]}"; do args+=(--config-setting "$s"); done
    # outside the workspace: nothing of its configuration applies but the settings given here
    if ! (cd "$work" && "$UV" build --no-config --wheel "${args[@]}" --out-dir "$work/out" "$sdist") \
      >"$CACHE/build.log" 2>&1; then
      tail -n 40 "$CACHE/build.log" >&2
      echo "llama: the build failed (whole log: $CACHE/build.log)" >&2
      exit 1
    fi
    mv "$work"/out/llama_cpp_python-"$VERSION"-*.whl "$CACHE/"
    echo "llama: built in $(($(date +%s) - start)) s"
  fi
  exec 9>&-
fi
"$UV" pip install --python "$PY" --no-deps --quiet "$(wheel)"
echo "llama: llama-cpp-python $VERSION <- $(wheel)"
