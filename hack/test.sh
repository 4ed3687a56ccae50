#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent, cached outside the repo),
# then runs linters, type checks, import layering, and every test tier against real components.
#   hack/test.sh              everything (what CI runs): every tier with the e2e tier on the hand-made real
#                             node, then tests/kind and the e2e tier again on one kind cluster
#   hack/test.sh tests/unit   only some tests (arguments go to pytest; add `--e2e-cluster kind` for kind)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)

step() { printf '\n=== %s [%s]\n' "$1" "$(date +%H:%M:%S)"; }

step "setup: system packages, toolchains, Python environment"
hack/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate

if [ "$#" -eq 0 ]; then
  step "lint: ruff"
  ruff check operator serving devcluster tests benchmarks
  step "types: mypy --strict"
  hack/mypy.sh
  step "layering: import-linter"
  lint-imports
  # Two sessions: the second shares one kind cluster between tests/kind and the e2e tier (one `up`).
  step "tests: pytest tests --ignore=tests/kind (e2e on the real node)"
  status=0
  pytest -p no:cacheprovider tests --ignore=tests/kind || status=$?
  step "kind: binaries and node image (Go builds and the image made once, then cached)"
  kind_status=0
  python -m modelapp_devcluster.kind_cluster node-image || kind_status=$?
  step "tests: pytest --e2e-cluster kind tests/kind tests/e2e (one kind cluster for both)"
  [ "$kind_status" -ne 0 ] || pytest -p no:cacheprovider --e2e-cluster kind tests/kind tests/e2e || kind_status=$?
  # pytest exit 5 means "no tests collected": that is a failure for us, never a pass.
  [ "$status" -ne 0 ] || status=$kind_status
  exit "$status"
fi

step "tests: pytest $*"
status=0
pytest -p no:cacheprovider "$@" || status=$?
# pytest exit 5 means "no tests collected": that is a failure for us, never a pass.
exit "$status"
