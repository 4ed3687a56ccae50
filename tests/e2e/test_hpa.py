"""Autoscaling with a real metrics source: load makes the HPA scale the Deployment, and the count stays.

Design notes: the real flow's fixtures (a cluster with real nodes, the operator from its chart, Azurite on
the bridge) plus metrics-server built from the Go module proxy (tests/fixtures/addons.py), served through
the API server's aggregation layer; the controller-manager's own HPA controller decides. The load is a
bounded number of client threads posting predictions to status.url (a LoadBalancer address kube-proxy routes
to the pods) for at most LOAD_LIMIT_S seconds; every failure is counted. Measured and printed (for
benchmarks/README.md): load start -> the HPA raises the Deployment's replicas, -> the new pods are Ready,
and the requests that failed meanwhile. Then, with the load stopped (the HPA keeps its count for its
5-minute scale-down window), the count must survive a reconcile (an annotation edit), a bump (new model
version) and a rollback (`modelapp rollback`): the operator never writes replicas while autoscaling is set.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from kubernetes import client

from tests.e2e.test_real_flow import (  # noqa: F401 (iris_rows is a fixture)
    Apps,
    _only_version,
    deploy_v1,
    infer,
    iris_rows,
    write_model,
)
from tests.fixtures.e2e import FlowNamespace, modelapp_cli, poll

pytestmark = pytest.mark.e2e

CLIENTS = 6
LOAD_LIMIT_S = 240.0
AUTOSCALING = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}


class Load:
    """CLIENTS threads posting predictions until stopped or LOAD_LIMIT_S; answers and failures counted."""

    def __init__(self, url: str, rows: np.ndarray[Any, Any]) -> None:
        self.url, self.rows = url, rows
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        deadline = time.monotonic() + LOAD_LIMIT_S
        self.threads = [threading.Thread(target=self._run, args=(deadline,), daemon=True) for _ in range(CLIENTS)]

    def _run(self, deadline: float) -> None:
        session = requests.Session()
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                body = {"inputs": [{"name": "input", "shape": list(self.rows.shape), "datatype": "FP32",
                                    "data": self.rows.ravel().tolist()}]}  # fmt: skip
                session.post(f"{self.url}/infer", json=body, timeout=10).raise_for_status()
                with self._lock:
                    self.ok += 1
            except requests.RequestException as err:
                with self._lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {type(err).__name__}: {err}"[:200])

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _deployment(ns: FlowNamespace, name: str) -> Any:
    return client.AppsV1Api(ns.cluster.api()).read_namespaced_deployment(name, ns.name)


def _hpa(ns: FlowNamespace, name: str) -> Any:
    return client.AutoscalingV2Api(ns.cluster.api()).read_namespaced_horizontal_pod_autoscaler(name, ns.name)


def _has_metrics(ns: FlowNamespace, name: str) -> bool:
    hpa = _hpa(ns, name)
    active = next((c for c in hpa.status.conditions or [] if c.type == "ScalingActive"), None)
    return bool(active and active.status == "True" and hpa.status.current_metrics)


def test_load_scales_out_and_the_count_survives_reconcile_bump_and_rollback(
        flow_namespace: FlowNamespace, metrics_server: str, tmp_path: Path,
        iris_rows: np.ndarray[Any, Any]) -> None:  # noqa: F811
    ns, apps, name = flow_namespace, Apps(flow_namespace), "scaled"
    _, url, _ = deploy_v1(ns, apps, tmp_path, name, replicas=1, autoscaling=AUTOSCALING,
                          resources={"requests": {"cpu": "50m", "memory": "128Mi"}})  # fmt: skip
    poll(lambda: _has_metrics(ns, name), timeout=180, interval=2, what="the HPA reading CPU from metrics-server")
    rows = np.asarray(iris_rows, dtype=np.float32)

    with Load(url, rows) as load:
        started = time.monotonic()
        poll(lambda: (_deployment(ns, name).spec.replicas or 0) > 1, timeout=LOAD_LIMIT_S - 60, interval=1,
             what="the HPA scaling the Deployment out under load")  # fmt: skip
        scaled_at = time.monotonic() - started
        scaled = _deployment(ns, name).spec.replicas
        poll(lambda: (_deployment(ns, name).status.ready_replicas or 0) >= scaled, timeout=120, interval=1,
             what=f"{scaled} pods ready")  # fmt: skip
        ready_at = time.monotonic() - started
    print(f"[hpa] load {CLIENTS} clients: scaled 1 -> {scaled} after {scaled_at:.1f}s, ready after {ready_at:.1f}s; "
          f"{load.ok} answered, {len(load.failures)} failed", flush=True)
    assert load.failures == [], load.failures[:5]
    count = _deployment(ns, name).spec.replicas
    assert count > 1 and apps.get(name)["spec"]["replicas"] == 1, "the spec still says 1: the HPA owns the count"

    # A reconcile (an annotation edit), a bump (model version 2), a rollback: the count stays the HPA's.
    apps.custom.patch_namespaced_custom_object("modelapp.io", "v1alpha1", ns.name, "modelapps", name,
                                               {"metadata": {"annotations": {"e2e/touch": "1"}}})  # fmt: skip
    estimator2, files = write_model(tmp_path / "v2", seed=3)
    digest2 = ns.publish("2", *files)
    apps.patch(name, {"model": {"uri": ns.uri(), "version": "2", "sha256": digest2,
                                "credentialsSecret": "blob-credentials"}})  # fmt: skip
    poll(lambda: apps.ready(name, "2"), timeout=240, what="version 2 Ready")
    # The HPA holds at least its count for its 5-minute scale-down window; it may go up (new pods start hot),
    # never back to the spec's 1.
    assert _deployment(ns, name).spec.replicas >= count, "a bump kept the HPA's count"
    # Ready names the new pair once it is available; old pods still answer while they terminate (preStop).
    poll(lambda: _only_version(url, "2"), timeout=60, what="only version 2 answering")
    np.testing.assert_array_equal(infer(url, rows), estimator2.predict(rows))
    modelapp_cli("rollback", name, "--namespace", ns.name, "--kubeconfig", str(ns.cluster.kubeconfig), timeout=120)
    poll(lambda: apps.ready(name, "1"), timeout=240, what="version 1 Ready after the rollback")
    assert _deployment(ns, name).spec.replicas >= count, "a rollback kept the HPA's count"
    assert _hpa(ns, name).spec.max_replicas == AUTOSCALING["maxReplicas"]
