"""A ModelApp never adopts, changes or reports as its own an object it does not control (issue: tenancy).

Design notes: a tenant may name a ModelApp like an existing Service or Deployment of another app in the
namespace. Against the real API server and the operator as a subprocess: the other object is left exactly
as it was (spec, labels, owner references, resourceVersion), the ModelApp says why in its status
(Ready False, reason NameTaken, naming the object) and gets no url of someone else's Service, a good app
beside it goes Ready undisturbed, and once the other object is gone the ModelApp converges by itself.
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


def _condition(name: str, namespace: str, kind: str) -> dict[str, Any] | None:
    status = (kube.get("ModelApp", name, namespace) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def _foreign_service(name: str, namespace: str) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "other"}},
        "spec": {"type": "ClusterIP", "selector": {"app": "other"}, "ports": [{"port": 80, "targetPort": 9000}]},
    }
    return kube.create("Service", namespace, body)


def test_a_modelapp_named_like_another_apps_service_leaves_it_alone(run_operator: RunOperator,
                                                                     namespace: str) -> None:  # fmt: skip
    op = run_operator(namespace)
    before = _foreign_service("payments", namespace)
    kube.apply(_app("payments", namespace))
    kube.apply(_app("good", namespace))
    blocked = wait_for("payments says NameTaken", lambda: (c := _condition("payments", namespace, "Ready"))
                       and c["reason"] == "NameTaken" and c, timeout=90)  # fmt: skip
    assert blocked["status"] == "False" and f"Service {namespace}/payments already exists" in blocked["message"]
    assert "Rename the ModelApp" in blocked["message"]
    wait_for("good Ready", lambda: _ready("good", namespace), timeout=90)
    after = kube.get("Service", "payments", namespace)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "never written"
    assert after["spec"]["selector"] == {"app": "other"} and "ownerReferences" not in after["metadata"]
    app = kube.get("ModelApp", "payments", namespace) or {}
    assert "url" not in (app.get("status") or {}), "no url of a Service it does not own"
    assert "Traceback" not in op.text()
    # The other app's Service goes away: the ModelApp takes the name by itself (its retry, no edit needed).
    kube.delete("Service", "payments", namespace)
    wait_for("payments Ready once the name is free", lambda: _ready("payments", namespace), timeout=120)
    service = kube.get("Service", "payments", namespace) or {}
    assert [r["kind"] for r in service["metadata"].get("ownerReferences", [])] == ["ModelApp"]
