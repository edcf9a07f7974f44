#!/usr/bin/env bash
# The console's browser tier (tests/console, `make console-screenshots`): Debian's Chromium at
# /usr/bin/chromium, driven by Playwright's Python package (never `playwright install`: no browser
# download from a CDN), and the DejaVu fonts so screenshots render text the same on every machine.
# Idempotent: a no-op when both are there. Without root or apt-get it says so and exits 0: the browser
# tests then skip locally and fail under CI=true (isthmus_core.testing.browser.chromium_path).
set -euo pipefail
PACKAGES="chromium fonts-dejavu-core"
missing=""
[ -x /usr/bin/chromium ] || missing=1
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing=1
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools: installing $PACKAGES with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null 2>&1; then
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null
    fi
  else
    echo "tools: $PACKAGES are needed for the console's browser tests and cannot be installed" \
      "(not root or no apt-get); those tests will skip locally (and fail under CI=true)"
    exit 0
  fi
fi
echo "tools: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') -> /usr/bin/chromium"
