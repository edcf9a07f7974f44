#!/usr/bin/env bash
# Helm v3.19.0 CLI, built from the Go module proxy (`go install`, about a minute once per user cache),
# linked as .tools/bin/helm. Used by tests/deploy/test_chart_*.py (helm lint / helm template).
#
# The ldflags are the ones helm's own Makefile sets: without them a `go install`ed helm reports version
# "v3.19" and renders with a default Kubernetes version of v1.20 (so `kubeVersion` constraints and
# .Capabilities would be wrong). 1.34 = helm 3.19's client-go v0.34.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v3.19.0
K8S_MAJOR=1
K8S_MINOR=34
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/helm-$VERSION

built_ok() {
  [ -x "$CACHE/helm" ] && [ "$("$CACHE/helm" version --template '{{.Version}}' 2>/dev/null)" = "$VERSION" ]
}

if ! built_ok; then
  if ! command -v go >/dev/null; then
    echo "tools: go not found — helm is not installed; chart tests skip locally (and fail under CI=true)"
    exit 0
  fi
  echo "tools: building helm $VERSION into $CACHE (go install, about a minute)"
  mkdir -p "$CACHE"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
  done
  GOBIN="$CACHE" CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$VERSION"
  built_ok || { echo "tools: helm build did not report $VERSION" >&2; exit 1; }
fi
mkdir -p .tools/bin
ln -sfn "$CACHE/helm" .tools/bin/helm
echo "tools: helm $VERSION -> .tools/bin/helm"
