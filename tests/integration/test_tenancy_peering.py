"""kopf's peering object in a tenant's namespace: one tenant must not pause the operator for every tenant.

Design notes: in namespaced mode (`modelapp run --namespace A --namespace B`, the chart's rbac.scope=namespaced)
kopf keeps a KopfPeering object in every watched namespace, and an operator that sees a live peer with a
higher priority in any of them pauses, for every namespace at once (kopf's `operator_paused` is one toggle
set: any conflict pauses every watch). A tenant whose Role reaches kopf.dev objects in its namespace (a
namespace-admin Role written with wildcards does) can write such a peer into its own namespace's object:
tried as the admin, the operator stopped serving the other namespace (docs/security.md). The chart's
ValidatingAdmissionPolicy (templates/peering-guard.yaml) lets only the operator's ServiceAccount (and
system:masters) write the release's peering objects. Here the policy is rendered by the real helm and
installed into the real API server; the tenant is a real user (impersonated by the admin) bound to a
wildcard Role in its namespace; the operator runs with peering, watching both namespaces.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelapp_operator import kube
from tests.fixtures.cluster import LocalCluster, fresh_namespace
from tests.fixtures.helm import CHART
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
TENANT = "mallory"
VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
VAPB = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@pytest.fixture
def attacker(kube_cluster: LocalCluster) -> Iterator[str]:
    with fresh_namespace(kube_cluster, prefix="evil") as name:
        yield name


def _as(user: str, method: str, path: str, body: Any) -> tuple[int, str]:
    """One request as `user` (the admin impersonates it): (HTTP status, body)."""
    api = kube.api_client()
    headers = {"Accept": "application/json", "Content-Type": "application/merge-patch+json" if method == "PATCH"
               else "application/json", "Impersonate-User": user}  # fmt: skip
    params = api.param_serialize(method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()  # type: ignore[no-untyped-call]
    return int(response.status), bytes(response.data or b"").decode()


def _guard(helm_bin: Path, release: str, namespace: str, watched: list[str]) -> list[dict[str, Any]]:
    """The chart's peering guard as `helm template` renders it for a cluster that serves the policy API."""
    command = [str(helm_bin), "template", release, str(CHART), "--namespace", namespace,
               "--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
               "--show-only", "templates/peering-guard.yaml", "--set", "rbac.scope=namespaced",
               "--set-json", f"watchNamespaces={json.dumps(watched)}"]  # fmt: skip
    rendered = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _role(namespace: str, name: str, rules: list[dict[str, Any]], subject: dict[str, Any]) -> None:
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    kube._call("POST", f"{rbac}/roles", body={"metadata": {"name": name}, "rules": rules},
               content_type="application/json")  # fmt: skip
    kube._call("POST", f"{rbac}/rolebindings", body={
        "metadata": {"name": name}, "subjects": [subject],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
        content_type="application/json")  # fmt: skip


def test_a_tenant_cannot_write_a_peer_that_pauses_the_operator_for_everyone(
        run_operator: RunOperator, helm_bin: Path, namespace: str, attacker: str) -> None:  # fmt: skip
    release = f"r{uuid.uuid4().hex[:8]}"
    operator_sa = f"system:serviceaccount:{namespace}:{release}-modelapp"
    policy, binding = _guard(helm_bin, release, namespace, [namespace, attacker])
    assert (policy["kind"], binding["kind"]) == ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    kube._call("POST", VAP, body=policy, content_type="application/json")
    kube._call("POST", VAPB, body=binding, content_type="application/json")
    try:
        # The tenant may do anything in its namespace (a wildcard Role), kopf.dev objects included.
        _role(attacker, "tenant-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
              {"kind": "User", "name": TENANT, "apiGroup": "rbac.authorization.k8s.io"})  # fmt: skip
        _role(attacker, "operator-peering", [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                                              "verbs": ["get", "patch"]}],
              {"kind": "ServiceAccount", "name": f"{release}-modelapp", "namespace": namespace})  # fmt: skip
        op = run_operator(namespace, "--namespace", attacker)
        kube.apply(_app("before", namespace))
        wait_for("before Ready", lambda: _ready("before", namespace), timeout=90)
        wait_for("peering made", lambda: kube.get("KopfPeering", "modelapp", attacker), timeout=30)

        peer = {"status": {"tenant-made-peer": {"priority": 2**62, "lifetime": 3600,
                                                "lastseen": dt.datetime.now(dt.UTC).isoformat()}}}  # fmt: skip
        path = f"/apis/kopf.dev/v1/namespaces/{attacker}/kopfpeerings/modelapp"
        # A new policy is enforced once the API server's admission plugin has loaded it, which can take seconds
        # on a busy machine (a CI run saw the tenant's PATCH pass, 200): wait for a dry run to be refused.
        wait_for("the peering guard enforced",
                 lambda: _as(TENANT, "PATCH", f"{path}?dryRun=All", peer)[0] in (403, 422), timeout=60)  # fmt: skip
        code, text = _as(TENANT, "PATCH", path, peer)
        assert code in (403, 422) and "only the ModelApp operator's ServiceAccount" in text, (code, text)
        gone, text = _as(TENANT, "DELETE", path, None)
        assert gone in (403, 422), (gone, text)
        # Its own kopf objects of other names are not ours to police; the operator's own identity may write.
        made, text = _as(TENANT, "POST", f"/apis/kopf.dev/v1/namespaces/{attacker}/kopfpeerings",
                         {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "theirs"}})
        assert made == 201, (made, text)
        touched, text = _as(operator_sa, "PATCH", path, {"status": {}})
        assert touched == 200, (touched, text)

        kube.apply(_app("after", namespace))
        wait_for("after Ready in the other namespace", lambda: _ready("after", namespace), timeout=90)
        assert op.process.poll() is None and "Traceback" not in op.text()
    finally:
        kube._call("DELETE", f"{VAPB}/{binding['metadata']['name']}")
        kube._call("DELETE", f"{VAP}/{policy['metadata']['name']}")
