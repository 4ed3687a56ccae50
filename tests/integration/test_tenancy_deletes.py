"""The operator never deletes an object it does not own, whatever a ModelApp is named (a confused deputy).

Design notes: a ModelApp's optional children (a PodDisruptionBudget with more than one replica, an HPA with
`autoscaling`, an Ingress with `ingress`) are named after it, and the operator deletes them when they must
not exist. Whoever may create ModelApps in a namespace but not delete PDBs, HPAs or Ingresses there (another
team's, the platform's) could name a ModelApp like one of them and have the operator's identity delete it.
Against the real API server: the three objects exist first, owned by nobody; a ModelApp of that name that
wants none of them goes Ready; the operator is restarted (a resume pass, which deletes unwanted children it
has not seen yet), and every object is still there: the same uid and spec, no owner, no label of ours.
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


def _others(namespace: str) -> dict[str, dict[str, Any]]:
    """A PDB, an HPA and an Ingress named `web` that belong to another team (no owner)."""
    bodies = {
        "PodDisruptionBudget": ("policy/v1", {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "platform"}}}),
        "HorizontalPodAutoscaler": ("autoscaling/v2", {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "platform"},
            "minReplicas": 1, "maxReplicas": 2}),
        "Ingress": ("networking.k8s.io/v1", {"rules": [{"host": f"platform.{namespace}.example.com", "http": {
            "paths": [{"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "platform", "port": {"number": 80}}}}]}}]}),
    }  # fmt: skip
    return {kind: kube.create(kind, namespace, {"apiVersion": api, "kind": kind, "metadata": {"name": "web"},
                                                "spec": spec})
            for kind, (api, spec) in bodies.items()}  # fmt: skip


def test_a_modelapp_named_like_another_teams_objects_never_deletes_them(run_operator: RunOperator,
                                                                       namespace: str) -> None:  # fmt: skip
    before = _others(namespace)
    first = run_operator(namespace)
    kube.apply(_app("web", namespace))  # one replica, no autoscaling, no ingress: none of the three is wanted
    wait_for("web Ready", lambda: _ready("web", namespace), timeout=90)
    first.stop()

    second = run_operator(namespace)  # resumes "web": the pass that deletes unwanted children it has not seen
    wait_for("the resume pass", lambda: "Handler 'reconcile' succeeded" in second.text(), timeout=90)
    wait_for("web Ready again", lambda: _ready("web", namespace), timeout=60)
    for kind, made in before.items():
        now = kube.get(kind, "web", namespace)
        assert now is not None, f"the operator deleted {kind} web, which it does not own"
        # The same object (its controllers write its status, so its resourceVersion moves), untouched by us.
        assert now["metadata"]["uid"] == made["metadata"]["uid"] and now["spec"] == made["spec"], kind
        assert not now["metadata"].get("ownerReferences") and not (now["metadata"].get("labels") or {}), kind
    assert "Traceback" not in second.text()
