"""One tenant's flood of ModelApps must not hold another namespace's new ModelApp in the queue behind it.

Design notes: the operator runs as the chart runs it, over every namespace (`--all-namespaces`: one watch stream
per kind, so one kopf scheduler whose object workers, `MODELAPP_OBJECT_WORKERS`, every namespace shares), with
its default settings, on the real local cluster (kwok nodes). A shard label keeps it to this test's ModelApps,
and `--standalone` away from other tests' peerings. The flooding tenant creates FLOOD ModelApps at once; then
another namespace creates one; then the operator starts, and its first listing hands kopf all of them, the flood's
first. In kopf's own first-in first-out queue the quiet tenant's ModelApp waited for every one of the flood's (its
Deployment came 301st of 301); served a namespace at a time (operator/fairness.py) it waits for at most a round of
them. (Created while the operator runs, three runs each: last of 301 and Ready in 19-43 s before, 7th-37th and
Ready in 1.1-1.6 s after; the order then also depends on how fast the flood is created.) What is measured is the
order in which the API server saw the Deployments created (their names in the watch, not timestamps: one-second
resolution), and how long the quiet tenant's ModelApp took to be Ready beside the flood's last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster
from modelapp_operator import deepjson, kube
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
    """The order in which Deployments appear in the given namespaces, from a watch on the API server. Its lines are
    read raw and decoded as the operator decodes (deepjson: other tests leave Deployments nested too deep for
    Python's decoder, and for the typed client's models)."""

    def __init__(self, namespaces: set[str]) -> None:
        self.order: list[tuple[str, str]] = []
        since = kube._call("GET", "/apis/apps/v1/deployments", query={"limit": 1})["metadata"]["resourceVersion"]
        api = kube.api_client()
        params = api.param_serialize(
            "GET", "/apis/apps/v1/deployments", auth_settings=["BearerToken"],
            query_params=[("watch", "true"), ("resourceVersion", since), ("timeoutSeconds", "900")],
        )  # fmt: skip
        self._response = api.call_api(*params, _request_timeout=(10, 960)).response
        assert self._response.status == 200, self._response.status

        def follow() -> None:
            buffer = b""
            try:
                for chunk in self._response.stream(65536, decode_content=True):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        event = deepjson.loads(line) if line.strip() else {}
                        meta = (event.get("object") or {}).get("metadata") or {}
                        key = (meta.get("namespace", ""), meta.get("name", ""))
                        if event.get("type") == "ADDED" and key[0] in namespaces and key not in self.order:
                            self.order.append(key)
            except Exception:  # noqa: S110 (the stream ends when the test closes it)
                pass

        self._thread = threading.Thread(target=follow, daemon=True)
        self._thread.start()

    def index(self, key: tuple[str, str]) -> int | None:
        return self.order.index(key) if key in self.order else None

    def stop(self) -> None:
        getattr(self._response, "shutdown", self._response.close)()  # wakes the read in `follow` (urllib3 2.3+)
        self._thread.join(10)
        self._response.release_conn()


def test_a_flood_in_one_namespace_does_not_queue_another_namespaces_modelapp_behind_it(
        run_operator: RunOperator, kube_cluster: LocalCluster) -> None:  # fmt: skip
    with fresh_namespace(kube_cluster, "flood") as flood, fresh_namespace(kube_cluster, "quiet") as quiet:
        created = _Created({flood, quiet})
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: kube.apply(_app(f"app-{i:03d}", flood)), range(FLOOD)))
            kube.apply(_app("quiet-app", quiet))
            # The operator's first listing hands kopf all of them at once, the flood's first (a listing comes in
            # namespace, then name order): the quiet tenant's ModelApp is last in, whatever the machine's speed.
            start = time.monotonic()
            op = run_operator(None, "--standalone", "--shard", SHARD)
            wait_for("the quiet tenant's ModelApp Ready", lambda: _ready("quiet-app", quiet), timeout=300, interval=0.5)
            quiet_ready = time.monotonic() - start
            position = created.index((quiet, "quiet-app"))
            wait_for("every flood ModelApp Ready", lambda: sum(_ready(f"app-{i:03d}", flood) for i in range(FLOOD))
                     == FLOOD, timeout=600, interval=3)  # fmt: skip
            flood_ready = time.monotonic() - start
        finally:
            created.stop()
        assert position is not None, "the quiet tenant's Deployment was created"
        print(f"\nflood of {FLOOD}: the quiet tenant's Deployment created as number {position + 1} of {FLOOD + 1}; "
              f"its ModelApp Ready {quiet_ready:.1f} s after the operator started, flood's last {flood_ready:.1f} s")
        # First in first out, every flood ModelApp came first (position 300); a namespace at a time, at most those
        # that held one of the 24 of kopf's workers a namespace may hold, or waited for one of its 12 handler threads.
        assert position < 60, (
            f"the quiet tenant's Deployment came as number {position + 1} of {FLOOD + 1}: queued behind the flood, "
            "not beside it")
        assert quiet_ready < flood_ready / 3, "the quiet tenant's ModelApp was Ready long before the flood's last"
        assert "Traceback" not in op.text()
