"""Host claims and TLS Secrets across the tenancy line, against the real API server and the operator.

Design notes: the attacker is a tenant who may create ModelApps *and* Ingresses in its own namespace (the
common `edit` role grants both). The operator decides who routes a host from the Ingresses it manages
(`operator/hosts.py`), and it recognises those by their label and controller reference, which a tenant can
write on a hand-made Ingress too. So each test makes the hand-made Ingress for real, owned by a real ModelApp
of the attacker's namespace (an owner that does not exist would let the garbage collector delete it), and
checks what the victim's ModelApp in another namespace gets. No Ingress controller runs here: what a
controller would route is not the question, only whether the operator lets a forgery refuse another tenant's
host (`HostTaken`).

A TLS Secret named in `spec.ingress.tlsSecret` that does not exist: the operator may not read Secrets in a
tenant's namespace; it asks the API server whether the name is taken with a dry-run create (nothing is
stored, no value is read or sent), and says `IngressReady=False, TLSSecretMissing` naming the Secret until the
tenant creates it, then the condition leaves that reason by itself (no event tells: the operator does not
watch Secrets, it looks again while the Secret is missing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelapp_operator import kube
from tests.fixtures.cluster import LocalCluster, fresh_namespace
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]


@pytest.fixture
def attacker(kube_cluster: LocalCluster) -> Iterator[str]:
    """The other tenant's namespace."""
    with fresh_namespace(kube_cluster, prefix="evil") as name:
        yield name


def _condition(app: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((app or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def _forged_ingress(name: str, namespace: str, owner: dict[str, Any], host: str) -> dict[str, Any]:
    """An Ingress made by hand that looks like one of the operator's: its labels and a controller reference
    to a real ModelApp of the attacker's namespace."""
    meta = owner["metadata"]
    return kube.create("Ingress", namespace, {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "modelapp-operator", "app.kubernetes.io/instance": meta["name"]},
            "ownerReferences": [{"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True}],
        },
        "spec": {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": meta["name"], "port": {"name": "http"}}}}]}}]},
    })  # fmt: skip


def _routed_or_refused(name: str, namespace: str) -> dict[str, Any] | None:
    """The ModelApp once its host is decided: an Ingress exists, or IngressReady says it was refused."""
    app = kube.get("ModelApp", name, namespace)
    if _condition(app, "IngressReady").get("reason") in ("HostTaken", "HostNotAllowed"):
        return app
    return app if kube.get("Ingress", name, namespace) is not None else None


def test_a_hand_made_ingress_of_a_namespace_not_allowed_the_host_takes_nothing(
        run_operator: RunOperator, namespace: str, attacker: str, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """With the allow-list, the attacker may route only its own suffix; a forged claim on the victim's host
    (older than the victim's Ingress) must not make the victim's ModelApp HostTaken."""
    victim_suffix, own_suffix = f"{namespace}.example.com", f"{attacker}.example.com"
    monkeypatch.setenv("MODELAPP_INGRESS_HOSTS", json.dumps({namespace: [victim_suffix], attacker: [own_suffix]}))
    op = run_operator(namespace, "--namespace", attacker)
    # A ModelApp of its own that routes an allowed host: the operator keeps that Ingress and the forgery beside it.
    kube.apply(_app("decoy", attacker, ingress={"host": f"decoy.{own_suffix}"}))
    decoy = wait_for("decoy routed", lambda: _routed_or_refused("decoy", attacker), timeout=90)
    _forged_ingress("grab", attacker, decoy, f"shop.{victim_suffix}")

    kube.apply(_app("shop", namespace, ingress={"host": f"shop.{victim_suffix}"}))
    shop = wait_for("shop decided", lambda: _routed_or_refused("shop", namespace), timeout=90)
    assert _condition(shop, "IngressReady").get("reason") != "HostTaken", _condition(shop, "IngressReady")
    ingress = kube.get("Ingress", "shop", namespace)
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == f"shop.{victim_suffix}"
    assert op.process.poll() is None and "Traceback" not in op.text()


def test_a_hand_made_ingress_not_named_as_its_owner_claims_no_host(run_operator: RunOperator, namespace: str,
                                                                   attacker: str) -> None:  # fmt: skip
    """Without an allow-list first claim wins, but only claims the operator made count: its Ingresses are
    always named as their ModelApp, so a forgery under another name (which the owner's own passes keep beside
    its real Ingress) claims nothing."""
    op = run_operator(namespace, "--namespace", attacker)
    kube.apply(_app("decoy", attacker, ingress={"host": f"decoy.{attacker}.example.com"}))
    decoy = wait_for("decoy routed", lambda: _routed_or_refused("decoy", attacker), timeout=90)
    host = f"shop.{namespace}.example.com"
    _forged_ingress("grab", attacker, decoy, host)

    kube.apply(_app("shop", namespace, ingress={"host": host}))
    shop = wait_for("shop decided", lambda: _routed_or_refused("shop", namespace), timeout=90)
    assert _condition(shop, "IngressReady").get("reason") != "HostTaken", _condition(shop, "IngressReady")
    assert kube.get("Ingress", "shop", namespace) is not None
    assert op.process.poll() is None and "Traceback" not in op.text()


def _reason(name: str, namespace: str, reason: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", name, namespace)
    return app if _condition(app, "IngressReady").get("reason") == reason else None


def test_a_missing_tls_secret_is_named_in_the_condition_until_it_exists(run_operator: RunOperator,
                                                                        namespace: str) -> None:  # fmt: skip
    op = run_operator(namespace)
    host = f"iris.{namespace}.example.com"
    kube.apply(_app("iris", namespace, ingress={"host": host, "tlsSecret": "iris-tls"}))
    missing = wait_for("TLSSecretMissing", lambda: _reason("iris", namespace, "TLSSecretMissing"), timeout=90)
    condition = _condition(missing, "IngressReady")
    assert condition["status"] == "False"
    assert f"{namespace}/iris-tls" in condition["message"] and "kubernetes.io/tls" in condition["message"]
    # The app itself is not held back: its Deployment and Ingress are there, and it goes Ready.
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    assert kube.get("Ingress", "iris", namespace) is not None
    assert kube.get("Secret", "iris-tls", namespace) is None  # the check stored nothing

    kube.create("Secret", namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "iris-tls"},
                                      "type": "kubernetes.io/tls",
                                      "data": {"tls.crt": "", "tls.key": ""}})  # fmt: skip
    found = wait_for("the Secret seen", lambda: _reason("iris", namespace, "NoAddress"), timeout=90)
    assert "iris-tls" not in _condition(found, "IngressReady")["message"]
    assert op.process.poll() is None and "Traceback" not in op.text()


@pytest.mark.parametrize("secret", ["other-namespace/iris-tls", "../iris-tls", "IRIS"])
def test_a_tls_secret_of_another_namespace_cannot_be_named(modelapp_crds: Any, namespace: str, secret: str) -> None:
    body = _app("iris", namespace, ingress={"host": f"iris.{namespace}.example.com", "tlsSecret": secret})
    with pytest.raises(kube.ApiError) as refused:
        kube.create("ModelApp", namespace, body)
    assert refused.value.status == 422 and "tlsSecret" in str(refused.value)


def _foreign(kind: str, name: str, namespace: str) -> dict[str, Any]:
    """An object of `kind` named `name` that no ModelApp controls (another team's, in the same namespace)."""
    if kind == "Ingress":
        spec: dict[str, Any] = {"rules": [{"host": f"other.{namespace}.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]}
        api = "networking.k8s.io/v1"
    else:
        spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"},
                "minReplicas": 1, "maxReplicas": 2}
        api = "autoscaling/v2"
    return kube.create(kind, namespace, {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec})


@pytest.mark.parametrize("kind", ["Ingress", "HorizontalPodAutoscaler"])
def test_an_ingress_or_hpa_of_the_same_name_is_never_adopted(run_operator: RunOperator, namespace: str,
                                                             kind: str) -> None:  # fmt: skip
    before = _foreign(kind, "web", namespace)
    op = run_operator(namespace)
    extra = ({"ingress": {"host": f"web.{namespace}.example.com"}} if kind == "Ingress"
             else {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}})  # fmt: skip
    kube.apply(_app("web", namespace, **extra))

    def taken() -> dict[str, Any] | None:
        app = kube.get("ModelApp", "web", namespace)
        return app if _condition(app, "Ready").get("reason") == "NameTaken" else None

    app = wait_for("NameTaken", taken, timeout=90)
    assert kind in _condition(app, "Ready")["message"]
    after = kube.get(kind, "web", namespace)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    assert op.process.poll() is None and "Traceback" not in op.text()
