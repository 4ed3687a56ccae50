#!/usr/bin/env bash
# The serving benchmarks of issue 3 (inference vs KServe and MLServer, fetch, cold start).
# Needs wrk (apt-get install wrk), Node/npm for Azurite, openssl, and the project venv (.venv).
# Arguments go to `python -m benchmarks.serving.run` (e.g. --only inference --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
exec .venv/bin/python -m benchmarks.serving.run "$@"
