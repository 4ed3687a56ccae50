#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent, cached outside the repo),
# then runs linters, type checks, import layering, and every test tier against real components.
#   hack/test.sh              everything (what CI runs): the unit and integration tiers, the e2e tier on the
#                             hand-made real node, then tests/kind and the e2e tier's operator modules again
#                             on one kind cluster
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
  # What only the e2e and kind tiers use (Traefik, metrics-server; kind, kubeadm, CoreDNS and the node
  # image: ~25 min of Go builds on a cold 2-core machine, nothing when cached) builds in the background,
  # at a lower priority, while the unit and integration tiers run; each tier that needs it waits for it.
  logs=${XDG_CACHE_HOME:-$HOME/.cache}/modelapp/setup-logs
  mkdir -p "$logs"
  nice -n 10 .venv/bin/modelapp-cluster build --addons >"$logs/addons.log" 2>&1 & addons_pid=$!
  nice -n 15 python -m modelapp_devcluster.kind_cluster node-image >"$logs/kind-node-image.log" 2>&1 & kind_pid=$!
  trap 'kill "$addons_pid" "$kind_pid" 2>/dev/null || true' EXIT
  built() {  # built PID WHAT LOG: wait for a background build; on failure name it and show its log's end
    local status=0
    wait "$1" || status=$?
    [ "$status" -eq 0 ] && return 0
    echo "test.sh: building $2 failed (exit $status); the end of $3:" >&2
    tail -n 25 "$3" >&2
    return 1
  }
  status=0
  step "tests: pytest tests/unit tests/integration (the e2e and kind builds go on in the background)"
  pytest -p no:cacheprovider tests/unit tests/integration || status=$?
  step "tests: pytest tests/e2e (on the hand-made real node; first waits for the add-ons' build)"
  e2e_status=0
  built "$addons_pid" "the add-ons (Traefik, metrics-server)" "$logs/addons.log" || e2e_status=$?
  [ "$e2e_status" -ne 0 ] || pytest -p no:cacheprovider tests/e2e || e2e_status=$?
  # The kind session shares one kind cluster between tests/kind and the e2e tier (one `up`). In CI it runs
  # the e2e modules of the operator's own paths (bump, the nightly CronJob, the real flow: 14 of the 18
  # tests); the add-on modules (HPA, Ingress) and the README's journey run on the real node above, to keep
  # the whole run under an hour (all of them on kind too: 62 min warm). Every module runs on kind with
  # `hack/test.sh --e2e-cluster kind tests/e2e`.
  kind_e2e=(tests/e2e/test_bump.py tests/e2e/test_cronjob.py tests/e2e/test_real_flow.py)
  step "tests: pytest --e2e-cluster kind tests/kind ${kind_e2e[*]} (one kind cluster; first waits for its build)"
  kind_status=0
  built "$kind_pid" "kind and its node image" "$logs/kind-node-image.log" || kind_status=$?
  [ "$kind_status" -ne 0 ] || pytest -p no:cacheprovider --e2e-cluster kind tests/kind "${kind_e2e[@]}" || kind_status=$?
  # pytest exit 5 means "no tests collected": that is a failure for us, never a pass.
  [ "$status" -ne 0 ] || status=$e2e_status
  [ "$status" -ne 0 ] || status=$kind_status
  exit "$status"
fi

case " $* " in  # a chosen tier that needs the add-ons or kind gets them built before it starts
  *e2e*|*kind*) step "setup: the e2e and kind tiers' builds (add-ons, kind and its node image)"; hack/setup.sh --only-extras ;;
esac
step "tests: pytest $*"
status=0
pytest -p no:cacheprovider "$@" || status=$?
# pytest exit 5 means "no tests collected": that is a failure for us, never a pass.
exit "$status"
