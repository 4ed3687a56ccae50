"""kind tests: the session's kind cluster (docker containers) from the node image made here.

Design notes: the cluster is tests/fixtures/kind.py's, one per session, shared with the e2e tier when it
runs on kind (`--e2e-cluster kind`: hack/test.sh runs `pytest --e2e-cluster kind tests/kind tests/e2e`, so
one `up` serves both). An `up` costs about a minute once the node image is cached, 20+ minutes cold on a
loaded machine (the kind-only Go builds and the node image). These run with every other tier
(`hack/test.sh`, CI); `pytest tests/kind` alone runs them. The cluster has its own name, so a run never
touches the demo's cluster (`modelapp`).
"""

from __future__ import annotations
