#!/usr/bin/env bash
# mypy does not follow setuptools' editable-install finder, so check a plain copy of the packages
# laid out under their import names (modelapp_operator <- operator/, modelapp_serving <- serving/,
# modelapp_devcluster <- devcluster/modelapp_devcluster/, the dev cluster's own distribution).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r operator "$tmp/modelapp_operator"
cp -r serving "$tmp/modelapp_serving"
cp -r devcluster/modelapp_devcluster "$tmp/modelapp_devcluster"
find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
cd "$tmp"
"${PYTHON:-python}" -m mypy --config-file "$OLDPWD/pyproject.toml" -p modelapp_operator -p modelapp_serving -p modelapp_devcluster
