#!/usr/bin/env bash
# Install the external tools the test tiers use (helm, checkov, a kube-apiserver, Kafka jars, ...).
# `make test-setup` (a prerequisite of `make test`) runs it; `make setup` does not (`make run` needs none).
# Idempotent: a tool already built is only linked again (a few seconds for all of them).
# Each tools.d/<name>.sh installs one tool into .tools/ (git-ignored), reusing a per-user cache
# (${ISTHMUS_TOOLS_CACHE:-~/.cache/isthmus-tools}) so a fresh clone on the same machine does not rebuild.
# A tool whose toolchain (Go, Java, Maven) is missing is reported and skipped; its tests then skip
# locally with that reason and fail under CI=true.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools/bin "${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}"
status=0
start=$(date +%s)
for script in tools/tools.d/*.sh; do
  [ -e "$script" ] || continue
  name=$(basename "$script" .sh)
  if ! bash "$script"; then
    echo "install-tools: $name failed" >&2
    status=1
  fi
done
echo "install-tools: done in $(($(date +%s) - start)) s"
exit $status
