#!/usr/bin/env bash
# Helm 3.19 CLI from the Go module proxy (~1 min once; cached per user), linked as .tools/bin/helm.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v3.19.0
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/helm-$VERSION
if [ ! -x "$CACHE/helm" ]; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — helm is not installed; chart tests will skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: building helm $VERSION (go install, about a minute)"
  mkdir -p "$CACHE"
  GOBIN="$CACHE" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$VERSION"
fi
mkdir -p .tools/bin
ln -sf "$CACHE/helm" .tools/bin/helm
