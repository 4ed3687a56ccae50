"""A namespace being deleted under the operator: nothing to converge there, and nothing logged as an error.

Design notes: when a namespace is deleted, its Deployments and Services go while the operator may still know
their ModelApp as live (its own delete event not handled yet: at a 1,000-app namespace deletion that was the
common case). The pass then re-creates the missing child, and the API server's NamespaceLifecycle admission
answers 403 NamespaceTerminating: one ERROR and traceback per app, and a retry. Against the real API server,
with the engine's store stale on purpose (the ModelApp remembered before the namespace was deleted, as a
delayed watch leaves it): `kube` reports such a create as `Gone`, and a pass and a child's repair end quietly.
The namespace is held in Terminating by a finalizer on the ModelApp (so that it is still there to be read,
as it was in the race), released at the end.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.engine import Engine
from modelapp_operator.names import KIND
from modelapp_operator.settings import OperatorConfig
from tests.fixtures.cluster import LocalCluster
from tests.fixtures.operator import wait_for
from tests.integration.test_operator import _app

pytestmark = pytest.mark.integration

HOLD = "example.com/hold"


def test_a_pass_in_a_namespace_being_deleted_ends_quietly(modelapp_crds: Any, kube_cluster: LocalCluster,
                                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    client = kube_cluster.admin_client()
    namespace = f"going-{uuid.uuid4().hex[:8]}"
    client.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    engine = Engine(OperatorConfig(serving_image="localhost:5000/modelapp-serving:test"))
    held = _app("iris", namespace)
    held["metadata"]["finalizers"] = [HOLD]
    try:
        engine.remember(KIND, kube.apply(held))
        client.delete(f"/api/v1/namespaces/{namespace}")
        wait_for("the namespace deleting the ModelApp",
                 lambda: (kube.get(KIND, "iris", namespace) or {}).get("metadata", {}).get("deletionTimestamp"),
                 timeout=60)  # fmt: skip
        with pytest.raises(kube.Gone) as info:
            kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": namespace},
                        "spec": {"ports": [{"port": 80}]}})  # fmt: skip
        assert info.value.status == 403 and "being terminated" in str(info.value)

        logger = logging.getLogger("test.namespace-deletion")
        with caplog.at_level(logging.DEBUG):
            engine.converge(name="iris", namespace=namespace, logger=logger, everything=True, reason="create")
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris", "namespace": namespace}}
            engine.on_child(kind="Service", event="DELETED", body=service, owner="iris", namespace=namespace,
                            logger=logger)  # fmt: skip
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        assert kube.get("Deployment", "iris", namespace) is None, "nothing was created"
    finally:
        kube.patch(KIND, "iris", namespace, {"metadata": {"finalizers": None}})
