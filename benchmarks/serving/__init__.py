"""Serving benchmarks of issue 3: inference against KServe and MLServer, fetch, cold start.

Not tests: run them with `hack/bench-serving.sh` (or `python -m benchmarks.serving.run`).
"""
