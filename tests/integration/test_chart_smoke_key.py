"""The chart's RBAC for the operator's smoke-test key (spec.auth, issue 12.4; docs/security.md).

Design notes: rendered by the real helm and checked as objects, in both RBAC modes. What matters is what the
operator may do with Secrets: `get` on its own key Secret by name and `create`, both only in the release's
namespace; in a watched (tenant) namespace only `create`, for the dry-run that tells whether a spec.ingress TLS
Secret exists (never get, list or watch; nothing with operator.checkTlsSecrets=false); the operator's pods are
told where the key lives. Whether the rules are enough is proven against the real API server in
tests/integration/test_auth_operator.py (the operator creates and reads the key under exactly these rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.helm import Rendered
from tests.integration.test_chart import NAMESPACED, container, verbs

pytestmark = pytest.mark.integration

Render = Callable[..., Rendered]


@pytest.mark.parametrize("values", [{}, NAMESPACED, {**NAMESPACED, "watchNamespaces": ["modelapp-system"]}])
def test_the_operator_may_read_and_create_only_its_own_key_secret(render_chart: Render,
                                                                   values: dict[str, Any]) -> None:  # fmt: skip
    rendered = render_chart(values)
    assert not rendered.error, rendered.error
    role = rendered.only("Role", "ma-modelapp-smoke-key", "modelapp-system")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["ma-modelapp-smoke-key"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    binding = rendered.only("RoleBinding", "ma-modelapp-smoke-key", "modelapp-system")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "ma-modelapp-smoke-key"}  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ma-modelapp", "namespace": "modelapp-system"}]
    # Nothing else anywhere grants the operator more than `create` on Secrets (tenants' namespaces included):
    # the dry-run create that tells whether a spec.ingress TLS Secret exists (operator.checkTlsSecrets); and
    # with that check off, nothing at all.
    others = [r for r in rendered.all("Role") + rendered.all("ClusterRole")
              if r is not role and not r["metadata"]["name"].endswith("-bump")]  # fmt: skip
    assert others and all(verbs(r["rules"], "", "secrets") <= {"create"} for r in others)
    unchecked = render_chart({**values, "operator.checkTlsSecrets": False})
    assert not unchecked.error, unchecked.error
    others = [r for r in unchecked.all("Role") + unchecked.all("ClusterRole")
              if r["metadata"]["name"] != "ma-modelapp-smoke-key" and not r["metadata"]["name"].endswith("-bump")]
    assert others and all(verbs(r["rules"], "", "secrets") == set() for r in others)


def test_the_operator_is_told_where_the_key_lives(render_chart: Render) -> None:
    env = {e["name"]: e for e in container(render_chart().only("Deployment"))["env"]}
    assert env["MODELAPP_OPERATOR_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MODELAPP_SMOKE_KEY_SECRET"]["value"] == "ma-modelapp-smoke-key"


def test_every_shard_shares_the_one_key(render_chart: Render) -> None:
    rendered = render_chart({"operator.shards": [{"name": "a", "default": True}, {"name": "b"}]})
    assert not rendered.error, rendered.error
    deployments = rendered.all("Deployment")
    assert len(deployments) == 2
    for deployment in deployments:
        env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        assert env["MODELAPP_SMOKE_KEY_SECRET"] == "ma-modelapp-smoke-key"
    assert len(rendered.all("Role", "ma-modelapp-smoke-key")) == 1


def test_without_rbac_create_no_role_is_rendered(render_chart: Render) -> None:
    rendered = render_chart({"rbac.create": False, "serviceAccount.create": False, "serviceAccount.name": "mine"})
    assert not rendered.error, rendered.error
    assert rendered.all("Role") == [] and rendered.all("RoleBinding") == []
