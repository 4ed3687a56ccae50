"""The add-ons' manifests (Traefik, metrics-server): pure, checked without a cluster.

Design notes: what matters is what a wrong manifest would break silently on the real node: Traefik must
publish its Service's address into the Ingresses (so IngressReady can say Admitted), watch the Ingress
class the ModelApps name, and read Secrets only for itself; metrics-server's APIService must point at its
Service, and it must be allowed to read the API server's requestheader CA (else aggregated calls fail 401).
The real behaviour is proven on the real node (tests/e2e/test_ingress.py, tests/e2e/test_hpa.py).
"""

from __future__ import annotations

import re
from typing import Any

from modelapp_devcluster import addons, versions


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m)
    return out


def test_traefik_serves_its_class_and_publishes_its_address() -> None:
    kinds = _by_kind(addons.traefik_manifests(namespace="ingress", image="modelapp/traefik:x",
                                              placement={"nodeSelector": {"a": "b"}}))  # fmt: skip
    assert kinds["IngressClass"][0]["metadata"]["name"] == "traefik"
    assert kinds["IngressClass"][0]["spec"]["controller"] == "traefik.io/ingress-controller"
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--providers.kubernetesingress.ingressendpoint.publishedservice=ingress/traefik" in args
    assert pod["nodeSelector"] == {"a": "b"} and pod["serviceAccountName"] == "traefik"
    assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert kinds["Service"][0]["spec"]["type"] == "LoadBalancer"
    rules = kinds["ClusterRole"][0]["rules"]
    assert {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]} in rules


def test_metrics_server_is_an_aggregated_api_with_delegated_auth() -> None:
    manifests = addons.metrics_server_manifests(namespace="kube-system", image="modelapp/metrics-server:x")
    kinds = _by_kind(manifests)
    api = kinds["APIService"][0]
    assert manifests[-1] is api  # applied last, once the Deployment is available (see the docstring)
    assert api["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    reader = kinds["RoleBinding"][0]
    assert (reader["metadata"]["namespace"], reader["roleRef"]["name"]) == (
        "kube-system", "extension-apiserver-authentication-reader")
    assert kinds["ClusterRoleBinding"][-1]["roleRef"]["name"] == "system:auth-delegator"
    label_value = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")  # the API server's rule
    for manifest in addons.metrics_server_manifests(namespace="kube-system", image="x") + addons.traefik_manifests(
            namespace="ingress", image="x"):
        assert all(label_value.fullmatch(v) for v in manifest["metadata"]["labels"].values()), manifest["metadata"]


def test_images_are_from_the_base_image_and_named_by_version() -> None:
    assert addons.image_name("traefik") == f"modelapp/traefik:{versions.TRAEFIK_VERSION}"
    text = addons.dockerfile("traefik")
    assert text.startswith("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n") and "USER 65532:65532" in text
