#!/usr/bin/env bash
# The console's vendored browser assets (services/console/isthmus_console/static/VENDORED.md):
#   check  download the npm tarballs, verify their integrity, compare the vendored files byte for byte
set -euo pipefail
cd "$(dirname "$0")/.."
STATIC=services/console/isthmus_console/static
cmd=${1:-check}
[ "$cmd" = check ] || { echo "usage: $0 check" >&2; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
status=0
while IFS='|' read -r _ file pkg inner integrity _; do
  file=$(echo "$file" | xargs); pkg=$(echo "$pkg" | xargs); inner=$(echo "$inner" | xargs); integrity=$(echo "$integrity" | xargs)
  [[ "$file" == *.js ]] || continue
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
  tgz=$(ls "$work"/*.tgz | head -1)
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$got" = "$integrity" ] || { echo "$pkg: tarball integrity $got != $integrity" >&2; status=1; }
  mkdir -p "$work/x" && tar xzf "$tgz" -C "$work/x"
  if cmp -s "$work/x/$inner" "$STATIC/$file"; then echo "ok  $file = $pkg:$inner"; else echo "DIFF $file != $pkg:$inner" >&2; status=1; fi
  rm -rf "$work"/x "$tgz"
done < "$STATIC/VENDORED.md"
exit $status
