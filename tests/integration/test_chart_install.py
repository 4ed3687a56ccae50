"""The chart installed with the real helm into the real local API server, and its RBAC asked there.

Design notes: `helm install` proves the API server accepts every object the chart renders; the
RBAC is then checked by the API server's own authorizer (SubjectAccessReview for the chart's
ServiceAccounts), so "least privilege" is a fact of the cluster, not of our reading of YAML. Each
test installs its own release (unique name: ClusterRoles are cluster-wide) into a fresh namespace and
uninstalls it afterwards. The CRDs are cluster-wide and shared with the other tests of the session,
so the release leaves them out (`crds.install=false`) and the chart's CRDs are checked by a
server-side dry-run create instead: 201 (valid, absent) or 409 (valid, present) and never a 4xx
for a schema the API server refuses.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster
from tests.fixtures.helm import CHART, Rendered

pytestmark = pytest.mark.integration

Install = Callable[..., str]


@pytest.fixture
def install(helm_bin: Path, kube_cluster: LocalCluster, namespace: str) -> Iterator[Install]:
    """`helm install --wait=false` a uniquely named release into the test's namespace; uninstalled after."""
    releases: list[str] = []
    base = [str(helm_bin), "--kubeconfig", str(kube_cluster.kubeconfig), "--namespace", namespace]

    def run(values: dict[str, Any]) -> str:
        release = f"r{uuid.uuid4().hex[:8]}"
        sets = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
        result = subprocess.run(
            [*base, "install", release, str(CHART), "--set", "crds.install=false", *sets],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        releases.append(release)
        return release

    yield run
    for release in releases:
        subprocess.run([*base, "uninstall", release], capture_output=True, timeout=180, check=False)


def allowed(
    cluster: LocalCluster, user: str, verb: str, resource: str, *, group: str = "", namespace: str = ""
) -> bool:
    """Ask the API server's authorizer whether `user` may do `verb` on `resource`."""
    attributes = {"verb": verb, "resource": resource, "group": group}
    if "/" in resource:
        attributes["resource"], attributes["subresource"] = resource.split("/", 1)
    if namespace:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": attributes},
    }  # fmt: skip
    response = cluster.admin_client().request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert response.status == 201, response.body
    return bool(response.json()["status"]["allowed"])


def test_crds_are_accepted_by_the_api_server(kube_cluster: LocalCluster, render_chart: Callable[..., Rendered]) -> None:
    client = kube_cluster.admin_client()
    crds = render_chart().all("CustomResourceDefinition")
    assert len(crds) == 3
    for crd in crds:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All"
        response = client.request("POST", path, crd)
        assert response.status in (201, 409), f"{crd['metadata']['name']}: {response.status} {response.body[:500]!r}"


def test_namespaced_install_grants_only_the_watched_namespace(
    install: Install, kube_cluster: LocalCluster, namespace: str
) -> None:
    release = install({"rbac.scope": "namespaced", "watchNamespaces": [namespace], "bump.enabled": True})
    operator = f"system:serviceaccount:{namespace}:{release}-modelapp"
    bump = f"system:serviceaccount:{namespace}:{release}-modelapp-bump"

    def can(user: str, verb: str, resource: str, group: str = "", ns: str = namespace) -> bool:
        return allowed(kube_cluster, user, verb, resource, group=group, namespace=ns)

    # The operator: its resources and kopf's needs in the watched namespace...
    assert can(operator, "watch", "modelapps", "modelapp.io")
    assert can(operator, "patch", "modelapps/status", "modelapp.io")
    assert can(operator, "patch", "deployments", "apps")
    assert can(operator, "create", "services")
    assert can(operator, "delete", "poddisruptionbudgets", "policy")
    assert can(operator, "patch", "kopfpeerings", "kopf.dev")
    assert can(operator, "create", "events")
    assert can(operator, "list", "customresourcedefinitions", "apiextensions.k8s.io", ns="")
    # ...and nothing else: no Secrets, no deletes of what the garbage collector removes, no other namespace.
    assert not can(operator, "get", "secrets")
    assert not can(operator, "delete", "deployments", "apps")
    assert not can(operator, "patch", "modelapps", "modelapp.io", ns="default")
    assert can(operator, "list", "namespaces", ns="")  # kopf's namespace observer, even for exact names
    assert not can(operator, "delete", "namespaces", ns="")
    assert not can(operator, "patch", "clusterkopfpeerings", "kopf.dev", ns="")
    # The bump: get, list and patch ModelApps here, and that is all.
    assert can(bump, "patch", "modelapps", "modelapp.io")
    assert can(bump, "list", "modelapps", "modelapp.io")
    assert not can(bump, "watch", "modelapps", "modelapp.io")
    assert not can(bump, "patch", "modelapps/status", "modelapp.io")
    assert not can(bump, "patch", "deployments", "apps")
    assert not can(bump, "patch", "modelapps", "modelapp.io", ns="default")


def test_cluster_install_watches_every_namespace(install: Install, kube_cluster: LocalCluster, namespace: str) -> None:
    release = install({})
    operator = f"system:serviceaccount:{namespace}:{release}-modelapp"
    assert allowed(kube_cluster, operator, "patch", "modelapps", group="modelapp.io", namespace="default")
    assert allowed(kube_cluster, operator, "watch", "namespaces")
    assert allowed(kube_cluster, operator, "patch", "clusterkopfpeerings", group="kopf.dev")
    assert not allowed(kube_cluster, operator, "get", "secrets", namespace="default")
    assert not allowed(kube_cluster, operator, "create", "pods", namespace="default")
    deployment = kube_cluster.admin_client().get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{release}-modelapp")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == f"{release}-modelapp"
