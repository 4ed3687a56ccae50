#!/usr/bin/env bash
# The serving benchmarks (issues 3 and 13: inference vs KServe, MLServer, the thin server and the no-HTTP
# floor; fetch; cold start). Needs wrk (installed here from Debian when missing), Node/npm for Azurite,
# openssl, and the project venv (.venv, hack/setup.sh). The rivals' virtualenvs and granian are made on
# first use under ~/.cache/modelapp/bench.
# Arguments go to `python -m benchmarks.serving.run` (e.g. --only inference --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench-serving: installing wrk (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
  else
    echo "bench-serving: wrk is missing; install it (Debian: sudo apt-get install wrk) and run again" >&2
    exit 1
  fi
fi
exec .venv/bin/python -m benchmarks.serving.run "$@"
