"""Pure kubeconfig builders: client-certificate ones for the cluster's own identities, and
token ones for a ServiceAccount (so tests can act as the chart's RBAC identity, not as admin).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

CLUSTER_NAME = "modelapp-local"


def _config(server: str, cluster: dict[str, Any], user_name: str, user: dict[str, Any],
            namespace: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": CLUSTER_NAME, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, **cluster}}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": CLUSTER_NAME, "context": context}],
        "current-context": CLUSTER_NAME,
    }


def cert_kubeconfig(*, server: str, ca: Path, cert: Path, key: Path, user_name: str) -> dict[str, Any]:
    """A kubeconfig that authenticates with a client certificate (files referenced by path)."""
    return _config(server, {"certificate-authority": str(ca)}, user_name,
                   {"client-certificate": str(cert), "client-key": str(key)}, None)


def token_kubeconfig(*, server: str, ca_pem: bytes, token: str, user_name: str,
                     namespace: str | None = None) -> dict[str, Any]:
    """A self-contained kubeconfig with a bearer token and the CA embedded."""
    ca_data = base64.b64encode(ca_pem).decode()
    return _config(server, {"certificate-authority-data": ca_data}, user_name, {"token": token}, namespace)
