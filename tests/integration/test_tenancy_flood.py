"""One tenant's flood of ModelApps must not hold another namespace's new ModelApp in the queue behind it.

Design notes: the operator runs as the chart runs it, over every namespace (`--all-namespaces`: one watch stream
per kind, so one kopf scheduler whose object workers, `MODELAPP_OBJECT_WORKERS`, every namespace shares), with
its default settings, on the real local cluster (kwok nodes). A shard label keeps it to this test's ModelApps,
and `--standalone` away from other tests' peerings. The flooding tenant creates FLOOD ModelApps at once; then
another namespace creates one. In kopf's own first-in first-out queue the quiet tenant's ModelApp waited for
every one of the flood's before it (its Deployment came after ~all of theirs); served a namespace at a time
(operator/fairness.py) it waits for at most a round of them. What is measured is the order in which the API
server saw the Deployments created (their names in the watch, not timestamps: one-second resolution), and how
long the quiet tenant's ModelApp took to be Ready beside the flood's last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster
from modelapp_operator import kube
from modelapp_operator.names import LABEL_SHARD
from tests.fixtures.cluster import fresh_namespace
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
GOOD = "localhost:5000/iris-app:1.0.0"
FLOOD = 300
SHARD = "flood-test"


def _app(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_SHARD: SHARD}},
        "spec": {"image": GOOD, "model": {"uri": "file:///opt/models/iris", "version": "1"}, "replicas": 1,
                 "service": {"type": "ClusterIP"}},
    }  # fmt: skip


def _ready(name: str, namespace: str) -> bool:
    app = kube.get("ModelApp", name, namespace) or {}
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (app.get("status") or {}).get("conditions", []))


class _Created:
    """The order in which Deployments appear in the given namespaces, from a watch on the API server."""

    def __init__(self, namespaces: set[str]) -> None:
        from kubernetes import client, watch

        self.order: list[tuple[str, str]] = []
        self._stream = watch.Watch()
        lister = client.AppsV1Api(kube.api_client()).list_deployment_for_all_namespaces

        def follow() -> None:
            try:
                for event in self._stream.stream(lister, timeout_seconds=600):
                    meta = event["object"].metadata
                    key = (meta.namespace, meta.name)
                    if event["type"] == "ADDED" and key[0] in namespaces and key not in self.order:
                        self.order.append(key)
            except Exception:  # noqa: S110 (the stream ends when the test stops it)
                pass

        self._thread = threading.Thread(target=follow, daemon=True)
        self._thread.start()

    def index(self, key: tuple[str, str]) -> int | None:
        return self.order.index(key) if key in self.order else None

    def stop(self) -> None:
        self._stream.stop()


def test_a_flood_in_one_namespace_does_not_queue_another_namespaces_modelapp_behind_it(
        run_operator: RunOperator, kube_cluster: LocalCluster) -> None:  # fmt: skip
    with fresh_namespace(kube_cluster, "flood") as flood, fresh_namespace(kube_cluster, "quiet") as quiet:
        op = run_operator(None, "--standalone", "--shard", SHARD)
        wait_for("operator started", lambda: "Activity 'configure' succeeded" in op.text(), timeout=60)
        created = _Created({flood, quiet})
        try:
            start = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: kube.apply(_app(f"app-{i:03d}", flood)), range(FLOOD)))
            kube.apply(_app("quiet-app", quiet))
            asked = time.monotonic()
            wait_for("the quiet tenant's ModelApp Ready", lambda: _ready("quiet-app", quiet), timeout=300, interval=0.5)
            quiet_ready = time.monotonic() - asked
            position = created.index((quiet, "quiet-app"))
            wait_for("every flood ModelApp Ready", lambda: sum(_ready(f"app-{i:03d}", flood) for i in range(FLOOD))
                     == FLOOD, timeout=600, interval=3)  # fmt: skip
            flood_ready = time.monotonic() - start
        finally:
            created.stop()
        print(f"\nflood of {FLOOD}: quiet tenant's Deployment created {position}th of {FLOOD + 1}; its ModelApp "
              f"Ready {quiet_ready:.1f} s after its create; the flood's last Ready {flood_ready:.1f} s after its first")
        assert position is not None, "the quiet tenant's Deployment was created"
        assert position < FLOOD // 3, (
            f"the quiet tenant's Deployment came {position}th of {FLOOD + 1}: queued behind the flood, not beside it")
        assert quiet_ready < flood_ready / 3, "the quiet tenant's ModelApp was Ready long before the flood's last"
        assert "Traceback" not in op.text()
