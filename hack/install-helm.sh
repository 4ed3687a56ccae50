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

if [ -x "$bin" ] && "$bin" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "install-helm: go is not on PATH (Go >= 1.24 is needed)" >&2; exit 1; }
echo "install-helm: building helm $HELM_VERSION with $(go version | cut -d' ' -f3) (a few minutes on a cold cache)" >&2
start=$(date +%s)
mkdir -p "$cache/bin"
# -ldflags: helm reports its version from these variables; without them `helm version` says v3.x-dev.
GOBIN=$cache/bin CGO_ENABLED=0 go install \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "install-helm: built in $(( $(date +%s) - start ))s" >&2
"$bin" version --short >&2
echo "$bin"
