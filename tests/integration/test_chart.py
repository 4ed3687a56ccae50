"""The Helm chart, rendered by the real helm and checked as objects.

Design notes: `helm lint --strict` and `helm template` run on the default values and on each RBAC
mode; the rendered YAML is parsed and the tests assert on what a cluster would receive: the
verbs each identity gets (least privilege, no wildcards, the operator nothing on Secrets, the bump
only `get` on the credential Secrets ModelApps name, narrowable by name or off), the pod's security
settings, the serving image handed to the operator, the bump CronJob's own narrow identity. The
values schema and the `fail` checks in `_helpers.tpl` must refuse unknown keys and bad combinations.
Whether this RBAC is *enough* is proven elsewhere, by running the operator under the chart's
identity against the real API server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.helm import CHART, Rendered

pytestmark = pytest.mark.integration

NAMESPACED = {"rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]}
Render = Callable[..., Rendered]


def verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    """Every verb the rules grant on group/resource."""
    granted: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            granted |= set(rule["verbs"])
    return granted


def container(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else spec["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("values", [{}, NAMESPACED, {**NAMESPACED, "bump.enabled": True}, {"bump.enabled": True}])
def test_lint_strict(helm_bin: Path, values: dict[str, Any]) -> None:
    import json

    sets = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), *sets], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_install_is_cluster_wide_with_crds(render_chart: Render) -> None:
    rendered = render_chart()
    assert not rendered.error
    kinds = sorted(obj["kind"] for obj in rendered.objects)
    assert kinds == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
        + ["Role", "RoleBinding"]  # the smoke-test key Secret, in the release namespace (test_chart_smoke_key.py)
        + ["CustomResourceDefinition"] * 3
    )
    crds = {crd["metadata"]["name"]: crd for crd in rendered.all("CustomResourceDefinition")}
    assert set(crds) == {"modelapps.modelapp.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    for crd in crds.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert "--all-namespaces" in container(rendered.only("Deployment"))["args"]


def test_cluster_rbac_is_least_privilege(render_chart: Render) -> None:
    rendered = render_chart()
    role = rendered.only("ClusterRole")
    rules = role["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    # Framework: what kopf itself needs to watch everywhere and to peer.
    assert verbs(rules, "apiextensions.k8s.io", "customresourcedefinitions") == {"get", "list", "watch"}
    assert verbs(rules, "", "namespaces") == {"get", "list", "watch"}
    assert verbs(rules, "kopf.dev", "clusterkopfpeerings") == {"get", "list", "watch", "patch", "create"}
    assert verbs(rules, "kopf.dev", "kopfpeerings") == set()
    assert verbs(rules, "", "events") == {"create", "patch"}
    # Application: our resource and its children; deletion is the garbage collector's job except PDBs.
    assert verbs(rules, "modelapp.io", "modelapps") == {"get", "list", "watch", "patch"}
    assert verbs(rules, "modelapp.io", "modelapps/status") == {"get", "patch", "update"}
    assert verbs(rules, "apps", "deployments") == {"get", "list", "watch", "create", "patch"}
    assert verbs(rules, "", "services") == {"get", "list", "watch", "create", "patch"}
    assert "delete" in verbs(rules, "policy", "poddisruptionbudgets")
    assert verbs(rules, "networking.k8s.io", "ingresses") == {"get", "list", "watch", "create", "patch", "delete"}
    # Only the dry-run create that tells whether a spec.ingress TLS Secret exists: never get, list or watch.
    assert verbs(rules, "", "secrets") == {"create"}
    # Application: the smoke test lists pods and posts to their IPs (smokeTransport=direct); nothing else on pods.
    assert verbs(rules, "", "pods") == {"list"}
    assert verbs(rules, "", "pods/proxy") == set()
    assert verbs(rules, "", "pods/exec") == set()
    # blockOwnerDeletion on the children's owner references (OwnerReferencesPermissionEnforcement).
    assert verbs(rules, "modelapp.io", "modelapps/finalizers") == {"update"}
    binding = rendered.only("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ma-modelapp", "namespace": "modelapp-system"}]


def test_namespaced_rbac_grants_only_the_listed_namespaces(render_chart: Render) -> None:
    rendered = render_chart(NAMESPACED)
    assert not rendered.error
    roles = [role for role in rendered.all("Role") if not role["metadata"]["name"].endswith("-smoke-key")]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        rules = role["rules"]
        assert verbs(rules, "kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch", "create"}
        assert verbs(rules, "modelapp.io", "modelapps") == {"get", "list", "watch", "patch"}
        assert verbs(rules, "apps", "deployments") == {"get", "list", "watch", "create", "patch"}
        assert verbs(rules, "", "pods") == {"list"}
        assert verbs(rules, "", "pods/proxy") == set()
        assert verbs(rules, "modelapp.io", "modelapps/finalizers") == {"update"}
    for binding in rendered.all("RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "modelapp-system"
    # What stays cluster-wide is reading CRDs and namespaces (kopf's observers list both even for exact
    # namespace names): no cluster peering, no workloads.
    cluster_rules = rendered.only("ClusterRole")["rules"]
    assert [(rule["apiGroups"], rule["resources"], rule["verbs"]) for rule in cluster_rules] == [
        (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
        ([""], ["namespaces"], ["get", "list", "watch"]),
    ]
    args = container(rendered.only("Deployment"))["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_operator_pod_is_non_root_read_only_and_probed(render_chart: Render) -> None:
    deployment = render_chart({"servingImage.digest": "sha256:" + "a" * 64}).only("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(deployment)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in main["args"]
    assert main["args"][0] == "run"
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]
    assert main["image"] == "modelapp/operator:0.1.0"
    env = {item["name"]: item.get("value") for item in main["env"]}
    assert env["MODELAPP_SERVING_IMAGE"] == "modelapp/serving@sha256:" + "a" * 64
    # Pod labels are a superset of the selector, or the Deployment would never own its pods.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def is_bump(obj: dict[str, Any]) -> bool:
    return str(obj["metadata"]["name"]).endswith("-bump")


@pytest.mark.parametrize("values", [{}, NAMESPACED])
def test_bump_cronjob_has_its_own_narrow_identity(render_chart: Render, values: dict[str, Any]) -> None:
    rendered = render_chart({**values, "bump.enabled": True, "bump.schedule": "30 3 * * *"})
    assert not rendered.error
    cronjobs = rendered.all("CronJob")
    # One CronJob for all namespaces, or one per watched namespace (`bump` takes one namespace or all).
    scopes = sorted(container(cronjob)["args"][1] for cronjob in cronjobs)
    assert scopes == (["--all-namespaces"] if values == {} else ["--namespace=team-a", "--namespace=team-b"])
    operator_sa = rendered.only("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    for cronjob in cronjobs:
        assert cronjob["spec"]["schedule"] == "30 3 * * *"
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "ma-modelapp-bump" != operator_sa
        assert container(cronjob)["args"][0] == "bump"
        assert container(cronjob)["securityContext"]["readOnlyRootFilesystem"] is True
    bump_roles = [role for role in rendered.all("ClusterRole") + rendered.all("Role") if is_bump(role)]
    assert bump_roles
    # ModelApps, `create` on core Events (the `Bumped` Event), plus `get` (never list/watch) on the credential
    # Secrets apps name (bump.readModelCredentials).
    narrow = [{"apiGroups": ["modelapp.io"], "resources": ["modelapps"], "verbs": ["get", "list", "patch"]},
              {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
              {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]  # fmt: skip
    for role in bump_roles:
        assert role["rules"] == narrow
    bindings = [b for b in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding") if is_bump(b)]
    assert len(bindings) == len(bump_roles)
    assert all(b["subjects"][0]["name"] == "ma-modelapp-bump" for b in bindings)


@pytest.mark.parametrize("values", [{}, NAMESPACED])
def test_bump_secret_access_can_be_narrowed_or_dropped(render_chart: Render, values: dict[str, Any]) -> None:
    """`modelCredentialsSecretNames` becomes resourceNames; `readModelCredentials: false` leaves ModelApps only."""
    named = render_chart({**values, "bump.enabled": True, "bump.modelCredentialsSecretNames": ["blob-credentials"]})
    off = render_chart({**values, "bump.enabled": True, "bump.readModelCredentials": False})
    assert not named.error and not off.error
    for role in [r for r in named.all("ClusterRole") + named.all("Role") if is_bump(r)]:
        assert role["rules"][2] == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                                    "resourceNames": ["blob-credentials"]}  # fmt: skip
    off_roles = [r for r in off.all("ClusterRole") + off.all("Role") if is_bump(r)]
    assert off_roles
    for role in off_roles:
        assert verbs(role["rules"], "", "secrets") == set()
        assert verbs(role["rules"], "modelapp.io", "modelapps") == {"get", "list", "patch"}
        assert verbs(role["rules"], "", "events") == {"create"}
        assert verbs(role["rules"], "events.k8s.io", "events") == set()


@pytest.mark.parametrize("values", [{}, NAMESPACED])
def test_arguments_are_what_the_command_line_accepts(render_chart: Render, values: dict[str, Any]) -> None:
    """The chart's `run` and `bump` arguments parse with the operator's own argument parser."""
    from modelapp_operator.cli import build_parser

    rendered = render_chart({**values, "bump.enabled": True})
    run = build_parser().parse_args(container(rendered.only("Deployment"))["args"])
    assert run.command == "run"
    assert (run.peering, run.liveness) == ("modelapp", "http://0.0.0.0:8080/healthz")
    expected = (True, []) if values == {} else (False, ["team-a", "team-b"])
    assert (run.all_namespaces, sorted(run.namespace)) == expected
    bumped: set[str] = set()
    for cronjob in rendered.all("CronJob"):
        bump = build_parser().parse_args(container(cronjob)["args"])
        assert bump.command == "bump"
        bumped.add("*" if bump.all_namespaces else bump.namespace)
    assert bumped == ({"*"} if values == {} else {"team-a", "team-b"})


def test_bump_is_off_by_default(render_chart: Render) -> None:
    assert render_chart().all("CronJob") == []


def test_toggles_leave_out_rbac_serviceaccount_and_crds(render_chart: Render) -> None:
    rendered = render_chart(
        {"rbac.create": False, "serviceAccount.create": False, "serviceAccount.name": "existing", "crds.install": False}
    )
    assert not rendered.error
    assert sorted(obj["kind"] for obj in rendered.objects) == ["Deployment", "Service"]  # the metrics Service
    assert rendered.only("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_crds_without_keep_policy(render_chart: Render) -> None:
    for crd in render_chart({"crds.keep": False}).all("CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
        ({"image.tagg": "1"}, "additional properties 'tagg' not allowed"),
        ({"rbac.scope": "everywhere"}, "/rbac/scope"),
        ({"image.digest": "md5:abc"}, "/image/digest"),
        ({"operator.replicas": -1}, "/operator/replicas"),
        ({"rbac.scope": "namespaced"}, "rbac.scope=namespaced needs watchNamespaces"),
        ({"watchNamespaces": ["team-a"]}, "watchNamespaces is only for rbac.scope=namespaced"),
        ({"rbac.scope": "namespaced", "watchNamespaces": ["a", "a"]}, "lists a namespace twice"),
        ({"rbac.scope": "namespaced", "watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"serviceAccount.create": False}, "serviceAccount.name is required"),
        ({"bump.modelCredentialsSecretNames": ["Bad_Name"]}, "/bump/modelCredentialsSecretNames/0"),
        ({"bump.readModelCredentials": "yes"}, "/bump/readModelCredentials"),
    ],
)
def test_bad_values_are_refused(render_chart: Render, values: dict[str, Any], message: str) -> None:
    rendered = render_chart(values)
    assert rendered.objects == []
    assert message in rendered.error, rendered.error


@pytest.mark.parametrize("values", [{}, NAMESPACED])
def test_the_pod_proxy_is_granted_only_when_the_smoke_test_uses_it(render_chart: Render,
                                                                   values: dict[str, Any]) -> None:  # fmt: skip
    """smokeTransport=proxy: create and get on pods/proxy (the golden request, the version card); direct: neither."""
    for transport, expected in (("direct", set()), ("proxy", {"create", "get"})):
        rendered = render_chart({**values, "operator.smokeTransport": transport})
        assert not rendered.error, rendered.error
        for role in rendered.all("ClusterRole" if not values else "Role"):
            if verbs(role["rules"], "", "pods"):
                assert verbs(role["rules"], "", "pods/proxy") == expected, transport
        env = {e["name"]: e.get("value") for e in container(rendered.only("Deployment"))["env"]}
        assert env["MODELAPP_SMOKE_TRANSPORT"] == transport
    assert render_chart({"operator.smokeTransport": "tunnel"}).error, "the schema refuses other transports"


def test_trusted_realms_become_bump_arguments(render_chart: Render) -> None:
    rendered = render_chart({"bump.enabled": True, "bump.trustedRealms": ["registry.gitlab.com=gitlab.com"]})
    assert not rendered.error, rendered.error
    assert "--trusted-realm=registry.gitlab.com=gitlab.com" in container(rendered.only("CronJob"))["args"]
    assert render_chart({"bump.enabled": True, "bump.trustedRealms": ["not a realm"]}).error
