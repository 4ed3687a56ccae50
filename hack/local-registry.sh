#!/usr/bin/env bash
# Start (or find running) the local OCI registry that the real node's containerd pulls from:
# Debian's docker-registry, plain HTTP on 127.0.0.1 only, storage in the cluster's state folder.
# Prints the registry's host:port (default 127.0.0.1:5001); push with
#   docker tag IMAGE 127.0.0.1:5001/NAME:TAG && docker push 127.0.0.1:5001/NAME:TAG
# (Docker treats 127.0.0.0/8 registries as insecure by default, so no daemon change is needed).
#   hack/local-registry.sh          start it and print host:port
#   hack/local-registry.sh status   show whether the node's parts run
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3
command -v docker-registry >/dev/null || hack/install-node.sh
exec "$python" -m modelapp_devcluster.node "${1:-registry}"
