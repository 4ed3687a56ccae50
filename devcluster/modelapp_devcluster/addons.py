"""Add-ons the real node runs as pods: an Ingress controller (Traefik) and metrics-server.

Why these: both are pure Go, built here from the Go module proxy like the control plane (`binaries`,
`versions.TRAEFIK`, `versions.METRICS_SERVER`, cached in `~/.cache/modelapp/bin/<name>-<version>/`), so
nothing is pulled from a public registry. ingress-nginx needs an nginx build and Contour an Envoy build,
neither of which a Go build gives; Traefik is one binary that watches Ingresses and serves them.

The images are `FROM` the locally made base image (hack/base-image.sh) with the binary copied in, run as a
non-root user. The manifests are pure functions (objects in, dicts out), applied by the caller (a test, or
a user with kubectl):
- Traefik: a ServiceAccount with read access to what its Ingress provider watches (Ingresses, IngressClasses,
  Services, EndpointSlices, and Secrets for TLS: the controller reads them, the ModelApp operator never
  does), an IngressClass `traefik`, a Deployment listening on 8000 (http) and 8443 (https), and a
  LoadBalancer Service (ports 80, 443) whose address, a 127.0.10.x loopback address from the dev cluster's
  allocator, Traefik publishes into every Ingress's status (`publishedService`).
- metrics-server: its Deployment (kubelet Summary API, the kubelet's own serving certificate not verified:
  the dev node's certificate is self-signed) and the APIService `v1beta1.metrics.k8s.io` that the API
  server's aggregation layer routes to it (needs the front-proxy certificates, see pki.py).

Contract: `ensure_addon_binaries()` returns the two binaries' paths, building what is missing;
`build_image(name, base)` returns the image name; the manifest functions never do I/O.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from modelapp_devcluster import binaries, versions
from modelapp_devcluster.binaries import Report
from modelapp_devcluster.errors import ClusterError

RECIPES = {"traefik": versions.TRAEFIK, "metrics-server": versions.METRICS_SERVER}
UID = 65532
INGRESS_CLASS = "traefik"
#: Traefik's ports in the pod (unprivileged) and on its Service.
WEB, WEBSECURE, PING = 8000, 8443, 9000
Manifest = dict[str, Any]


METRICS_APISERVICE = "v1beta1.metrics.k8s.io"  # the aggregated API metrics-server serves

def ensure_addon_binaries(*, env: dict[str, str] | None = None, report: Report = print) -> dict[str, Path]:
    """Traefik and metrics-server from the cache, built once when missing (minutes: Traefik is large)."""
    found: dict[str, Path] = {}
    for recipe in RECIPES.values():
        found.update(binaries.ensure_recipe(recipe, env=env, report=report))
    return found


def image_name(name: str) -> str:
    """The local image of an add-on, tagged with its version (`modelapp/traefik:v3.6.12`)."""
    return f"modelapp/{name}:{RECIPES[name].version}"


def dockerfile(name: str) -> str:
    """The add-on's image: the base image, the binary, a non-root user."""
    return (f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY {name} /usr/local/bin/{name}\nUSER {UID}:{UID}\n"
            f'ENTRYPOINT ["/usr/local/bin/{name}"]\n')  # fmt: skip


def build_image(name: str, base: str, *, env: dict[str, str] | None = None, report: Report = print) -> str:
    """`docker build` of the add-on's image on `base` (skipped when it exists); returns its name."""
    tag = image_name(name)
    docker = shutil.which("docker")
    if docker is None:
        raise ClusterError("docker is needed to build the add-on images; run hack/install-docker.sh")
    if subprocess.run([docker, "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
        return tag
    binary = ensure_addon_binaries(env=env, report=report)[name]
    with tempfile.TemporaryDirectory(prefix=f"modelapp-{name}-") as context:
        shutil.copy2(binary, Path(context) / name)
        (Path(context) / "Dockerfile").write_text(dockerfile(name))
        result = subprocess.run([docker, "build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, context],
                                capture_output=True, text=True, check=False, timeout=600,
                                env={**(env or os.environ), "DOCKER_BUILDKIT": "0"})  # fmt: skip
    if result.returncode != 0:
        raise ClusterError(f"docker build of {tag} failed: {result.stderr.strip()[-500:]}")
    return tag


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    label = name.replace(":", "-")  # `metrics-server:system:auth-delegator` is a name, not a label value
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": label,
                                                     "app.kubernetes.io/part-of": "modelapp-devcluster"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}  # fmt: skip


def _account(name: str, namespace: str, rules: list[dict[str, Any]]) -> list[Manifest]:
    """A ServiceAccount bound to a ClusterRole of `rules`."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(f"modelapp-{name}"),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(f"modelapp-{name}"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"modelapp-{name}"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]  # fmt: skip


def traefik_manifests(*, namespace: str, image: str, placement: dict[str, Any] | None = None) -> list[Manifest]:
    """Traefik as the cluster's Ingress controller for IngressClass `traefik` (see the module docstring).

    `placement`: extra pod-spec fields (nodeSelector, tolerations) to put it on the real node."""
    name = "traefik"
    rules = [
        {"apiGroups": [""], "resources": ["services", "secrets", "nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
    ]  # fmt: skip
    selector = {"app.kubernetes.io/name": name}
    args = [
        # websecure terminates TLS for every router: an Ingress's `tls` section only adds its Secret's certificate
        # to Traefik's store (picked by SNI), it does not turn TLS on; a host without one gets the default cert.
        f"--entryPoints.web.address=:{WEB}", f"--entryPoints.websecure.address=:{WEBSECURE}",
        "--entryPoints.websecure.http.tls=true",
        f"--entryPoints.traefik.address=:{PING}", "--ping=true", "--log.level=INFO", "--accesslog=true",
        "--providers.kubernetesingress=true",
        f"--providers.kubernetesingress.ingressendpoint.publishedservice={namespace}/{name}",
        "--global.checknewversion=false", "--global.sendanonymoususage=false",
    ]  # fmt: skip
    container = {
        "name": name, "image": image, "args": args,
        "ports": [{"name": "web", "containerPort": WEB}, {"name": "websecure", "containerPort": WEBSECURE},
                  {"name": "ping", "containerPort": PING}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": PING}, "periodSeconds": 2},
        "securityContext": _security(),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }  # fmt: skip
    return [
        *_account(name, namespace, rules),
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": _meta(INGRESS_CLASS),
         "spec": {"controller": "traefik.io/ingress-controller"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace),
         "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": selector},
                               "spec": {"serviceAccountName": name, "containers": [container],
                                        **(placement or {})}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
         "spec": {"type": "LoadBalancer", "selector": selector,
                  "ports": [{"name": "web", "port": 80, "targetPort": WEB},
                            {"name": "websecure", "port": 443, "targetPort": WEBSECURE}]}},
    ]  # fmt: skip


def metrics_server_manifests(*, namespace: str, image: str, placement: dict[str, Any] | None = None) -> list[Manifest]:
    """metrics-server and its APIService (v1beta1.metrics.k8s.io), scraping kubelets every 15 s.

    Apply the APIService (the last item) only once the Deployment is available. Its first discovery
    check is made at once, and where the API server dials the Service's ClusterIP (kind; the real node
    uses the endpoints, `--enable-aggregator-routing`) a check made before kube-proxy has the Service's
    rule left the node by its default route. On these machines something out there answered 404, and
    the aggregator kept that connection: `FailedDiscoveryCheck ... 404` for good, seen on kind in two
    runs of 2026-12-03 while metrics-server itself answered the same request (200) from the node. kind
    nodes now refuse such packets (`kind_cluster.keep_service_range_in`); applied in this order, the
    first check does not even meet a refusal.
    """
    name = "metrics-server"
    rules = [
        {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
    ]
    selector = {"app.kubernetes.io/name": name}
    args = ["--secure-port=10250", "--cert-dir=/tmp", "--metric-resolution=15s",
            "--kubelet-preferred-address-types=InternalIP", "--kubelet-insecure-tls", "--kubelet-use-node-status-port"]
    container = {
        "name": name, "image": image, "args": args,
        "ports": [{"name": "https", "containerPort": 10250}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"}, "periodSeconds": 5},
        "securityContext": _security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (its own emptyDir)
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }  # fmt: skip
    # The aggregated API's own delegation: read the requestheader CA (extension-apiserver-authentication),
    # and ask the API server who a caller is and what it may do.
    delegation = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(f"{name}-auth-reader", "kube-system"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(f"{name}:system:auth-delegator"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]  # fmt: skip
    return [
        *_account(name, namespace, rules),
        *delegation,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace),
         "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": selector},
                               "spec": {"serviceAccountName": name, "containers": [container],
                                        "volumes": [{"name": "tmp", "emptyDir": {}}], **(placement or {})}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
         "spec": {"selector": selector, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": _meta(METRICS_APISERVICE),
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100,
                  "service": {"name": name, "namespace": namespace, "port": 443}}},
    ]  # fmt: skip
