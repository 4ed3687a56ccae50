"""The operator and the bump run with the chart's identities, not as admin, and nothing they need is denied.

Design notes: the chart is installed by the real helm into a cluster of its own (`private_cluster`: the
cluster-wide mode acts on every namespace, which must not touch other tests' ModelApps), in both RBAC
modes. A token for each of the chart's ServiceAccounts comes from the TokenRequest API and goes into a
kubeconfig; the API server's SelfSubjectReview confirms who that token is. The operator is started with
the command line and environment of the Deployment the chart installed (only the liveness address moves
from 0.0.0.0 to 127.0.0.1), with kopf's posting level at INFO so that Event creation is exercised too.
It must create, roll out, drop a PodDisruptionBudget, repair a deleted Service, keep its peering object
and post Events, and its log must hold no 403/Forbidden. The bump runs the installed CronJob's arguments
against a private Azurite container whose credentials only a Secret named by the ModelApp holds; with
`bump.readModelCredentials=false` the same run is refused (403) for that app, which shows the rule is
both needed and enough.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelapp_devcluster import LocalCluster
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.helm import CHART
from tests.fixtures.net import free_port
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "modelapp.io", "v1alpha1", "modelapps"
#: A denial in a log line or a bump row; not the milliseconds of a log timestamp ("14:33:51,403").
DENIED = re.compile(r"(?<![,.])\b403\b|forbidden", re.IGNORECASE)


@dataclass(frozen=True)
class Release:
    """One helm release of the chart: where it lives and the namespace its ModelApps are in."""

    name: str
    namespace: str
    apps: str
    mode: str
    helm: list[str]

    @property
    def operator_sa(self) -> str:
        return f"{self.name}-modelapp"

    @property
    def bump_sa(self) -> str:
        return f"{self.name}-modelapp-bump"

    def upgrade(self, **values: Any) -> None:
        _helm([*self.helm, "upgrade", self.name, str(CHART), "--reuse-values", *_sets(values)])


def _helm(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr


def _sets(values: dict[str, Any]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def _values(mode: str, apps: str) -> dict[str, Any]:
    scope = {"rbac.scope": "namespaced", "watchNamespaces": [apps]} if mode == "namespaced" else {}
    return {**scope, "crds.install": False, "bump.enabled": True}


@pytest.fixture(scope="module")
def admin(private_cluster: LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(private_cluster.kubeconfig))


@pytest.fixture(params=["namespaced", "cluster"])
def release(request: pytest.FixtureRequest, helm_bin: Path, private_cluster: LocalCluster,
            admin: client.ApiClient) -> Iterator[Release]:  # fmt: skip
    """The chart installed in mode `param` into a fresh namespace, watching another fresh namespace."""
    suffix = uuid.uuid4().hex[:8]
    system, apps = f"modelapp-{suffix}", f"apps-{suffix}"
    core = client.CoreV1Api(admin)
    for name in (system, apps):
        core.create_namespace({"metadata": {"name": name}})
    helm = [str(helm_bin), "--kubeconfig", str(private_cluster.kubeconfig), "--namespace", system]
    name = f"r{suffix}"
    _helm([*helm, "install", name, str(CHART), *_sets(_values(request.param, apps))])
    try:
        yield Release(name, system, apps, request.param, helm)
    finally:
        subprocess.run([*helm, "uninstall", name], capture_output=True, timeout=180, check=False)
        for ns in (apps, system):
            core.delete_namespace(ns)
        # Gone before the next test: a cluster-wide operator or bump would otherwise meet its leftovers.
        for ns in (apps, system):
            wait_for(f"namespace {ns} deleted", lambda n=ns: not _exists(lambda: core.read_namespace(n)), timeout=120)


def _identity(kubeconfig: Path) -> str:
    """Who the API server says this kubeconfig is (SelfSubjectReview)."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    review = client.AuthenticationV1Api(api).create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                                         "kind": "SelfSubjectReview"})  # fmt: skip
    return str(review.status.user_info.username)


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else spec["template"]["spec"]
    found: dict[str, Any] = pod["containers"][0]
    return found


def _installed(admin: client.ApiClient, obj: Any) -> dict[str, Any]:
    """An object the chart installed, as the API server stores it, as a plain camelCase dict."""
    result: dict[str, Any] = admin.sanitize_for_serialization(obj)
    return result


def _start_operator(
    release: Release, kubeconfig: Path, admin: client.ApiClient, log: Path
) -> tuple[OperatorProcess, int]:
    """`modelapp <the Deployment's args>` with its env; liveness on a free loopback port instead of 0.0.0.0."""
    deployment = _installed(
        admin, client.AppsV1Api(admin).read_namespaced_deployment(release.operator_sa, release.namespace)
    )
    container = _container(deployment)
    port = free_port()
    args = [
        f"--liveness=http://127.0.0.1:{port}/healthz" if a.startswith("--liveness=") else a for a in container["args"]
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "MODELAPP_"))}
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env |= {"KUBECONFIG": str(kubeconfig), "MODELAPP_POSTING_LEVEL": "INFO"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "modelapp_operator.cli", *args], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, cwd=log.parent)  # fmt: skip
    return OperatorProcess(process, log), port


def _app(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": {"name": name}, "spec": spec}


def _ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    app: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = app.get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return app if ready and status.get("observedGeneration") == app["metadata"]["generation"] else None


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_operator_with_the_chart_identity_reconciles_and_is_never_denied(
    release: Release, private_cluster: LocalCluster, admin: client.ApiClient, tmp_path: Path
) -> None:
    kubeconfig = private_cluster.service_account_kubeconfig(release.namespace, release.operator_sa,
                                                            path=tmp_path / "operator.kubeconfig")  # fmt: skip
    assert _identity(kubeconfig) == f"system:serviceaccount:{release.namespace}:{release.operator_sa}"
    operator, port = _start_operator(release, kubeconfig, admin, tmp_path / "operator.log")
    custom, apps_v1, core = client.CustomObjectsApi(admin), client.AppsV1Api(admin), client.CoreV1Api(admin)
    policy = client.PolicyV1Api(admin)
    ns = release.apps
    try:
        spec = {"image": "localhost:5000/iris-app:1.0.0", "model": {"uri": "file:///opt/models/iris", "version": "1"},
                "replicas": 2, "service": {"type": "ClusterIP"}}  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _app("iris", spec))
        app = wait_for("iris Ready", lambda: _ready(custom, ns, "iris"), timeout=120)
        uid = app["metadata"]["uid"]
        for read in (apps_v1.read_namespaced_deployment, core.read_namespaced_service,
                     policy.read_namespaced_pod_disruption_budget):  # fmt: skip
            refs = read("iris", ns).metadata.owner_references
            assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [("ModelApp", "iris", uid, True)]
        assert app["status"]["readyReplicas"] == 2
        # A rollout that also drops the PDB (replicas 1): patch on Deployments, delete on PDBs.
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "iris",
                                              {"spec": {"replicas": 1, "model": {"version": "2"}}})  # fmt: skip
        rolled = lambda: (a := _ready(custom, ns, "iris")) and a["status"]["model"]["version"] == "2"  # noqa: E731
        wait_for("version 2 Ready", rolled, timeout=120)
        wait_for("PDB deleted", lambda: not _exists(lambda: policy.read_namespaced_pod_disruption_budget("iris", ns)))
        # Drift repair: a deleted Service comes back (watch + create).
        core.delete_namespaced_service("iris", ns)
        wait_for("Service restored", lambda: _exists(lambda: core.read_namespaced_service("iris", ns)), timeout=60)
        # kopf's own needs: its peering object, its Events, its liveness endpoint.
        if release.mode == "namespaced":
            peering = lambda: custom.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", "modelapp")  # noqa: E731
        else:
            peering = lambda: custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "modelapp")  # noqa: E731
        assert _exists(peering)
        events = wait_for("a kopf Event on iris", lambda: [
            e for e in core.list_namespaced_event(ns, field_selector="involvedObject.name=iris").items
            if e.involved_object.kind == "ModelApp" and e.source.component == "kopf"
        ])  # fmt: skip
        assert events
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        operator.stop()
    log = operator.text()
    assert "Traceback" not in log, log[-4000:]
    assert not DENIED.findall(log), [line for line in log.splitlines() if DENIED.search(line)][:10]


def _publish(container: AzureContainer, tmp_path: Path, *versions: str) -> dict[str, str]:
    store = open_store(container.uri("iris"), env=container.env)
    digests = {}
    for version in versions:
        source = tmp_path / f"v{version}" / "model.onnx"
        source.parent.mkdir()
        source.write_bytes(f"model {version}".encode())
        digests[version] = publish_version(store, version=version, sources=[source], model_format="onnx",
                                           entrypoint=None)  # fmt: skip
    return digests


def _bump(release: Release, kubeconfig: Path, admin: client.ApiClient) -> tuple[int, dict[str, Any], str]:
    """The installed CronJob's arguments, run as its ServiceAccount, with no storage credentials of its own."""
    cronjobs = client.BatchV1Api(admin).list_namespaced_cron_job(release.namespace).items
    assert len(cronjobs) == 1, [c.metadata.name for c in cronjobs]
    cronjob = _installed(admin, cronjobs[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AWS_", "KUBECONFIG"))}
    command = [sys.executable, "-m", "modelapp_operator.cli", *_container(cronjob)["args"], "--output", "json",
               "--kubeconfig", str(kubeconfig)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


def test_bump_with_the_chart_identity_reads_only_the_named_credentials(
    release: Release, private_cluster: LocalCluster, admin: client.ApiClient, azure_container: AzureContainer,
    tmp_path: Path,
) -> None:  # fmt: skip
    digests = _publish(azure_container, tmp_path, "1", "2")
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    core.create_namespaced_secret(
        release.apps, {"metadata": {"name": "model-creds"}, "stringData": azure_container.env}
    )
    spec = {"image": "localhost:5000/iris-app:1.0.0",
            "model": {"uri": azure_container.uri("iris"), "version": "1", "credentialsSecret": "model-creds"},
            "updates": {"model": {"policy": "numeric"}}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, release.apps, PLURAL, _app("iris", spec))
    kubeconfig = private_cluster.service_account_kubeconfig(release.namespace, release.bump_sa,
                                                            path=tmp_path / "bump.kubeconfig")  # fmt: skip
    assert _identity(kubeconfig) == f"system:serviceaccount:{release.namespace}:{release.bump_sa}"

    code, out, err = _bump(release, kubeconfig, admin)
    assert code == 0, (out, err)
    model = custom.get_namespaced_custom_object(GROUP, VERSION, release.apps, PLURAL, "iris")["spec"]["model"]
    assert (model["version"], model["sha256"]) == ("2", digests["2"])
    assert [row["result"] for row in out["rows"] if row["field"].startswith("model")] == ["patched"]

    # Without the Secret rule the private store cannot be opened: that app's row fails, with the 403.
    digests |= _publish(azure_container, tmp_path, "3")
    release.upgrade(**{"bump.readModelCredentials": False})
    code, out, err = _bump(release, kubeconfig, admin)
    assert code == 2, (out, err)
    failed = [row for row in out["rows"] if row["result"] == "failed"]
    assert failed and all(DENIED.search(row["reason"]) for row in failed), failed
    model = custom.get_namespaced_custom_object(GROUP, VERSION, release.apps, PLURAL, "iris")["spec"]["model"]
    assert model["version"] == "2"
