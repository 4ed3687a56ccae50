#!/usr/bin/env bash
# Build helm (a Go module) from the Go module proxy into a versioned cache outside the repo,
# and reuse it when present. Prints the path of the helm binary on its last line.
#   hack/install-helm.sh            -> ~/.cache/modelapp/helm/<version>/bin/helm
#   HELM_VERSION=v3.x.y hack/install-helm.sh
# An existing `helm` on PATH of the same major version is not used on purpose: CI must lint the
# chart with the version pinned here, not whatever the machine happens to have.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.19.5}
cache=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}/helm/$HELM_VERSION
bin=$cache/bin/helm

# Recipe of the build below; a binary stamped with another recipe is rebuilt.
RECIPE=2
stamp=$cache/recipe

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "install-helm: go is not on PATH (Go >= 1.24 is needed)" >&2; exit 1; }
echo "install-helm: building helm $HELM_VERSION with $(go version | cut -d' ' -f3) (a few minutes on a cold cache)" >&2
start=$(date +%s)
mkdir -p "$cache/bin"
# The ldflags are those of helm's Makefile: its version, and the Kubernetes version that `helm template`
# and `helm lint` assume (from the client-go it is built with: v0.34.x -> 1.34). Without them helm says
# v3.x-dev and assumes Kubernetes 1.20, which fails charts that need a newer one.
go mod download "helm.sh/helm/v3@$HELM_VERSION"
gomod=$(go env GOMODCACHE)/helm.sh/helm/v3@$HELM_VERSION/go.mod
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")   # e.g. v0.34.2
k8s_minor=$(echo "$client_go" | cut -d. -f2)
k8s_major=$(( $(echo "$client_go" | cut -d. -f1 | tr -d v) + 1 ))
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$k8s_major -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done
GOBIN=$cache/bin CGO_ENABLED=0 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$RECIPE" >"$stamp"
echo "install-helm: built in $(( $(date +%s) - start ))s" >&2
"$bin" version --short >&2
echo "$bin"
