"""Autoscaling: the replica count belongs to the HorizontalPodAutoscaler, and the operator never fights it.

Design notes: against the real API server, controller-manager (whose HPA controller runs) and kwok, with the
operator as a subprocess. kwok has no metrics source, so the HPA's own decisions are stood in for the way
the HPA controller makes them: a write of the Deployment's `scale` subresource under a field manager of its
own. What is proven is the operator's side: the HPA child targets the Deployment, the count written there
survives reconciles, a new revision (a bump's spec change) and a rollback to the earlier pair, status tells
the truth about it, `kubectl scale ma` works while autoscaling is off, and turning autoscaling off deletes
the HPA and gives the count back to `spec.replicas`. Load making the HPA scale needs metrics-server on the
real node; see docs/modelapp-reference.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import kube
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
AUTOSCALING = {"minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
RESOURCES = {"requests": {"cpu": "100m"}}


def _scale(kind_path: str, namespace: str, name: str, replicas: int, manager: str) -> None:
    """Write a scale subresource as an autoscaler or `kubectl scale` does."""
    kube._call("PATCH", f"{kind_path}/namespaces/{namespace}/{name}/scale", body={"spec": {"replicas": replicas}},
               query={"fieldManager": manager}, content_type="application/merge-patch+json")  # fmt: skip


def _replicas(namespace: str) -> int:
    deployment = kube.get("Deployment", "iris", namespace) or {}
    return int(deployment["spec"]["replicas"])


def _ready_with(namespace: str, replicas: int, image: str | None = None) -> dict[str, Any] | None:
    app = _ready("iris", namespace)
    if app is None or app["status"].get("readyReplicas") != replicas:
        return None
    return app if image is None or app["status"].get("image", {}).get("ref") == image else None


def test_the_hpa_owns_the_replica_count(run_operator: RunOperator, namespace: str) -> None:
    op = run_operator(namespace)
    kube.apply(_app("iris", namespace, autoscaling=AUTOSCALING, resources=RESOURCES))
    app = wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    hpa = kube.get("HorizontalPodAutoscaler", "iris", namespace)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == app["metadata"]["uid"]
    assert app["status"]["selector"] == "app.kubernetes.io/instance=iris,app.kubernetes.io/managed-by=modelapp-operator"

    # The autoscaler scales out: the count stays through reconciles and a new revision (what a bump does).
    _scale("/apis/apps/v1", namespace, "deployments/iris", 3, "horizontal-pod-autoscaler")
    wait_for("3 ready", lambda: _ready_with(namespace, 3), timeout=90)
    newer = "localhost:5000/iris-app:1.1.0"
    kube.apply(_app("iris", namespace, autoscaling=AUTOSCALING, resources=RESOURCES, image=newer))
    wait_for("1.1.0 Ready with 3", lambda: _ready_with(namespace, 3, newer), timeout=120)
    assert _replicas(namespace) == 3
    # A rollback to the first pair (what `modelapp rollback` writes): still 3.
    kube.apply(_app("iris", namespace, autoscaling=AUTOSCALING, resources=RESOURCES))
    wait_for("1.0.0 Ready with 3", lambda: _ready_with(namespace, 3, "localhost:5000/iris-app:1.0.0"), timeout=120)
    assert _replicas(namespace) == 3
    assert op.process.poll() is None and "Traceback" not in op.text()

    # Autoscaling off: the HPA goes, spec.replicas counts again, and `kubectl scale ma` moves it.
    kube.apply(_app("iris", namespace, replicas=2, resources=RESOURCES))
    wait_for("HPA deleted", lambda: kube.get("HorizontalPodAutoscaler", "iris", namespace) is None, timeout=60)
    wait_for("2 ready", lambda: _ready_with(namespace, 2), timeout=90)
    _scale("/apis/modelapp.io/v1alpha1", namespace, "modelapps/iris", 4, "kubectl")
    wait_for("kubectl scale ma: 4 ready", lambda: _ready_with(namespace, 4), timeout=90)
    assert (kube.get("ModelApp", "iris", namespace) or {})["spec"]["replicas"] == 4


def test_min_above_max_is_refused_by_the_api_server(modelapp_crds: Any, namespace: str) -> None:
    body = _app("bad", namespace, autoscaling={"minReplicas": 4, "maxReplicas": 2})
    with pytest.raises(kube.ApiError) as refused:
        kube._call("POST", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps", body=body,
                   content_type="application/json")  # fmt: skip
    assert refused.value.status == 422
    assert "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas" in str(refused.value)
