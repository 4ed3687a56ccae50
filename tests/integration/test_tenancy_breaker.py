"""The fleet circuit breaker across the tenancy line: a tenant must not quarantine another tenant's image.

Design notes: the real operator (`modelapp run --standalone`), the real Deployment controller and scheduler,
kwok for pods (Ready, except images ending in `-broken`). With `quarantine.scope=cluster` a failure travels to
every namespace only when it is attributable to the digest: the rollout missed its progress deadline, only
one component of the pair changed, and the app had been fully available just before, so "its settings were
proven to work" (operator/fleet.py). The attacker changes the image *and*, in the same edit, a pod setting
that keeps every pod Pending (a nodeSelector no node has) and turns automatic rollback off: the deadline
passes, the pair is quarantined, and, unless the operator records which settings each pair ran with, the
victim's image reads as attributable and blocks the nightly bump in every namespace. The fleet's verdict is
computed by the same code the bump runs (`fleet.Fleet.of` over the ModelApps as the API server returns them).
The control case: the same app failing on a really broken image with its settings unchanged still travels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import fleet, kube
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
OWN = "localhost:5000/attacker-app:1.0.0"
VICTIM = "localhost:5000/victim-app:2.0.0"
BROKEN = "localhost:5000/attacker-app:1.0.1-broken"


def _app(name: str, namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": image, "model": {"uri": "file:///opt/models/iris", "version": "1"}, "replicas": 1,
                 "service": {"type": "ClusterIP"}, "rollout": {"progressDeadlineSeconds": 10}},
    }  # fmt: skip


def _entry(name: str, namespace: str, image: str, outcome: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", name, namespace) or {}
    entry = next((e for e in (app.get("status") or {}).get("revisions") or [] if e["image"] == image), {})
    return app if entry.get("outcome") == outcome else None


def _patch(name: str, namespace: str, spec: dict[str, Any]) -> None:
    kube._call("PATCH", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps/{name}", body={"spec": spec},
               content_type="application/merge-patch+json")  # fmt: skip


def test_a_tenant_cannot_quarantine_another_tenants_image_by_breaking_its_own_settings(
        run_operator: RunOperator, namespace: str) -> None:  # fmt: skip
    op = run_operator(namespace)
    kube.apply(_app("evil", namespace, OWN))
    kube.apply(_app("control", namespace, OWN))
    wait_for("evil Available", lambda: _entry("evil", namespace, OWN, "Available"), timeout=90)
    wait_for("control Available", lambda: _entry("control", namespace, OWN, "Available"), timeout=90)

    # One edit: the victim's image, a node selector that no node matches (every pod stays Pending), and no
    # automatic rollback (which would roll the good pair out with the same selector and fail it too, leaving no
    # good pair before the failure: then nothing would travel anyway).
    _patch("evil", namespace, {"image": VICTIM, "pod": {"nodeSelector": {"example.com/nowhere": "true"}},
                               "rollout": {"progressDeadlineSeconds": 10, "autoRollback": False}})
    evil = wait_for("evil's pair failed", lambda: _entry("evil", namespace, VICTIM, "Failed"), timeout=120)
    failed = next(e for e in evil["status"]["revisions"] if e["image"] == VICTIM)
    assert failed["reason"] == "ProgressDeadlineExceeded", failed
    # A genuinely broken image, settings unchanged: the evidence still travels.
    _patch("control", namespace, {"image": BROKEN})
    wait_for("control's pair failed", lambda: _entry("control", namespace, BROKEN, "Failed"), timeout=120)

    apps = kube.list_objects("ModelApp", namespace)
    cluster = fleet.Fleet.of(apps, scope="cluster")
    assert cluster.image_block("another-tenant", BROKEN) is not None, "a real failure must still travel"
    blocked = cluster.image_block("another-tenant", VICTIM)
    assert blocked is None, f"the attacker's own settings quarantined {VICTIM} fleet-wide: {blocked}"
    # In its own namespace the pair stays quarantined: the attacker only blocks itself.
    assert cluster.image_block(namespace, VICTIM) is not None
    assert op.process.poll() is None and "Traceback" not in op.text()
