#!/usr/bin/env bash
# Install npm's `semver` package (node-semver, the reference for our `semver:<range>` policies) into a
# versioned cache outside the repo, and reuse it when present. Prints the package's folder on its last
# line; tests/unit/test_policies_node_semver.py runs `node` against it to check parse_policy agrees.
#   hack/install-node-semver.sh     -> ~/.cache/modelapp/node-semver/<version>/node_modules/semver
# Pinned: the property test compares choices, so the reference must not move under it.
set -euo pipefail

NODE_SEMVER_VERSION=${NODE_SEMVER_VERSION:-7.7.3}
cache=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}/node-semver/$NODE_SEMVER_VERSION
package=$cache/node_modules/semver

if [ -f "$package/package.json" ] && grep -q "\"version\": \"$NODE_SEMVER_VERSION\"" "$package/package.json"; then
  echo "$package"
  exit 0
fi
command -v npm >/dev/null || { echo "install-node-semver: npm is not on PATH (apt-get install npm)" >&2; exit 1; }
mkdir -p "$cache"
npm install --no-audit --no-fund --silent --prefix "$cache" "semver@$NODE_SEMVER_VERSION" >&2
echo "$package"
