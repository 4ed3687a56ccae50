"""spec.ingress against the real API server: the Ingress child, refusals, and a host kept with its tenant.

Design notes: the real API server (its Ingress validation and the CRD's pattern and CEL rule), kwok for
pods, the operator as a subprocess watching two namespaces (two tenants). No Ingress controller runs here,
so IngressReady says NoAddress until an address is written into the Ingress's status the way a controller
does (a status patch): then it says Admitted. The controller itself answering by host name is proven on the
real node (tests/e2e/test_ingress.py). What is proven: the Ingress routes the host to the Service's http port
and is owned by the ModelApp; status.url uses the host; a bad host is refused by the CRD in the spec's own
words; a second tenant naming a host the first already routes gets no Ingress and a HostTaken condition
while its app still goes Ready (the Deployment and Service are untouched), and the first tenant's Ingress
is unchanged; the allow-list setting refuses a host outside the namespace's suffixes; removing
spec.ingress deletes the Ingress.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.spec import HOST_NOT_DNS
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]


@pytest.fixture
def other_namespace(namespace: str) -> Iterator[str]:
    """A second tenant's namespace, deleted (not waited for) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube._call("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
               content_type="application/json")  # fmt: skip
    try:
        yield name
    finally:
        kube._call("DELETE", f"/api/v1/namespaces/{name}")


def _condition(app: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((app or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def _ingress_ready(name: str, namespace: str, status: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", name, namespace)
    return app if _condition(app, "IngressReady").get("status") == status else None


def test_the_host_routes_to_the_service_and_stays_with_its_tenant(run_operator: RunOperator, namespace: str,
                                                                  other_namespace: str) -> None:  # fmt: skip
    op = run_operator(namespace, "--namespace", other_namespace)
    host = f"iris-{namespace}.example.com"
    # The TLS Secret exists (a missing one is TLSSecretMissing: tests/integration/test_tenancy_ingress.py).
    kube.create("Secret", namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "iris-tls"},
                                      "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    kube.apply(_app("iris", namespace, ingress={"host": host, "className": "traefik", "tlsSecret": "iris-tls"}))
    app = wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    assert (app["status"]["url"], app["status"]["urlSource"]) == (f"https://{host}/v2/models/iris", "Ingress")
    ingress = kube.get("Ingress", "iris", namespace)
    assert ingress is not None and ingress["metadata"]["ownerReferences"][0]["uid"] == app["metadata"]["uid"]
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "iris-tls"}]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {
        "service": {"name": "iris", "port": {"name": "http"}}}
    assert _condition(app, "IngressReady")["reason"] == "NoAddress"

    # A controller publishes its address: Admitted.
    kube._call("PATCH", f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/iris/status",
               body={"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
               content_type="application/merge-patch+json")  # fmt: skip
    admitted = wait_for("Admitted", lambda: _ingress_ready("iris", namespace, "True"), timeout=60)
    assert "127.0.0.1" in _condition(admitted, "IngressReady")["message"]

    # Another tenant names the same host (another path too): no Ingress, HostTaken; its app still serves.
    kube.apply(_app("thief", other_namespace, ingress={"host": host, "path": "/v2/models/iris"}))
    thief = wait_for("thief Ready", lambda: _ready("thief", other_namespace), timeout=90)
    refused = _condition(thief, "IngressReady")
    assert (refused["status"], refused["reason"]) == ("False", "HostTaken"), refused
    assert f"{namespace}/iris" in refused["message"]
    assert kube.get("Ingress", "thief", other_namespace) is None
    assert thief["status"]["urlSource"] == "ClusterDNS"
    assert kube.get("Ingress", "iris", namespace)["spec"] == ingress["spec"]  # type: ignore[index]

    # Removing spec.ingress deletes the Ingress and turns the condition off.
    kube._call("PATCH", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps/iris",
               body={"spec": {"ingress": None}}, content_type="application/merge-patch+json")  # fmt: skip
    wait_for("Ingress deleted", lambda: kube.get("Ingress", "iris", namespace) is None, timeout=60)
    gone = wait_for("IngressReady off", lambda: _ingress_ready("iris", namespace, "False"), timeout=60)
    assert _condition(gone, "IngressReady")["reason"] == "NotRequested"
    assert op.process.poll() is None and "Traceback" not in op.text()


def test_the_allow_list_keeps_a_namespace_to_its_suffixes(run_operator: RunOperator, namespace: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("MODELAPP_INGRESS_HOSTS", f'{{"{namespace}": ["{namespace}.example.com"]}}')
    op = run_operator(namespace)  # the operator's environment is this process's
    kube.apply(_app("good", namespace, ingress={"host": f"good.{namespace}.example.com"}))
    kube.apply(_app("bad", namespace, ingress={"host": "bank.example.com"}))
    wait_for("good routed", lambda: kube.get("Ingress", "good", namespace), timeout=90)
    bad = wait_for("bad refused", lambda: _ingress_ready("bad", namespace, "False"), timeout=90)
    refused = _condition(bad, "IngressReady")
    assert refused["reason"] == "HostNotAllowed" and f"{namespace}.example.com" in refused["message"]
    assert kube.get("Ingress", "bad", namespace) is None
    wait_for("bad still Ready", lambda: _ready("bad", namespace), timeout=90)
    assert op.process.poll() is None


@pytest.mark.parametrize("host", ["*.example.com", "10.1.2.3", "Iris.example.com", "iris.example.com:443"])
def test_a_host_that_is_not_a_dns_name_is_refused_in_the_spec_words(modelapp_crds: Any, namespace: str,
                                                                      host: str) -> None:  # fmt: skip
    body = _app("bad", namespace, ingress={"host": host})
    with pytest.raises(kube.ApiError) as refused:
        kube._call("POST", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps", body=body,
                   content_type="application/json")  # fmt: skip
    assert refused.value.status == 422
    assert HOST_NOT_DNS.split(":")[0] in str(refused.value)
    assert "not an IP address" in str(refused.value)
