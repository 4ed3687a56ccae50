#!/usr/bin/env bash
# Copy the CRDs from their one source, crds/, into the chart (charts/modelapp/files/crds/), byte for
# byte. The chart's templates/crds.yaml renders them behind `crds.install` with a keep policy.
# tests/integration/test_chart_crds.py fails when the two differ, so run this after editing crds/.
#
#   hack/sync-crd.sh          copy
#   hack/sync-crd.sh --check  exit 1 (and say which) when the chart's copy is stale
#
# crds/ holds every CRD the operator needs, kopf's peering CRDs (kopf.dev_peerings.yaml) too, so that
# `kubectl apply -f crds/` is a complete install of them without the chart.
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds
dst=charts/modelapp/files/crds
check=false
[ "${1:-}" = "--check" ] && check=true

mkdir -p "$dst"
stale=0
for file in "$src"/*.yaml; do
  name=$(basename "$file")
  if cmp -s "$file" "$dst/$name"; then
    continue
  fi
  if $check; then
    echo "sync-crd: $dst/$name differs from $file (run hack/sync-crd.sh)" >&2
    stale=1
  else
    cp "$file" "$dst/$name"
    echo "sync-crd: $file -> $dst/$name" >&2
  fi
done
exit "$stale"
