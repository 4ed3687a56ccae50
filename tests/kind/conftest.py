"""kind tests: a real kind cluster (docker containers) per module, built from the node image made here.

Design notes: these bring up and tear down whole kind clusters (about a minute each once the node
image is cached, 20+ minutes cold on a loaded machine: the kind-only Go builds and the node image). They
run with every other tier (`hack/test.sh`, CI); `pytest tests/kind` alone runs them. Each module uses its
own cluster name, so a run never touches the demo's cluster (`modelapp`).
"""

from __future__ import annotations
