#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent, cached outside the repo),
# then runs linters, type checks, import layering, and every test tier against real components.
#   hack/test.sh              everything (what CI runs)
#   hack/test.sh tests/unit   only some tests (arguments go to pytest)
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
  set -- tests
fi

step "tests: pytest $*"
status=0
pytest -p no:cacheprovider "$@" || status=$?
# pytest exit 5 means "no tests collected": that is a failure for us, never a pass.
exit "$status"
