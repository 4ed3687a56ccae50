"""The nightly bump as a platform team runs it: the chart's CronJob, in a cluster with real nodes.

Design notes: everything the Job touches is real and reached the way it is in production. The chart
is installed by `helm upgrade --install` with `bump.enabled`, the operator image built from
Dockerfile.operator and pushed to the node's registry, and `bump.registryCredentialsSecret` naming a
Secret made by `kubectl create secret docker-registry`. The app images live in Debian's
docker-registry with htpasswd auth, bound to the bridge pods reach (the real node's 10.244.0.1, or the
kind network's gateway); the models live in Azurite on the bridge, in a blob container per namespace,
behind each namespace's `blob-credentials` Secret (the bump reads it: `bump.readModelCredentials`). A
run is started the way an operator on call does, `kubectl create job --from=cronjob/...`, and the test reads what they
would: the Job's conditions, the pod's exit code and its log (the plan table), the ModelApps' specs
and their `Bumped` Events.

Two deliberate choices: the CronJob is installed suspended, so that the only runs are the ones the
test starts (the Job is made from the same template either way); and the operator runs no replicas
(`operator.replicas: 0`), because the app images are tiny stand-ins that no pod could run and an
operator would keep them rolling out, which the bump rightly skips. That the operator rolls out what
the bump wrote is tests/e2e/test_real_flow.py's subject.

The pod log is read through the API (`kubectl logs`) when the API server can reach kubelet (always on
kind), else from the file kubelet writes under the real node's state folder (the development cluster's
API server has no kubelet client certificate); it is the same text either way.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from modelapp_operator import deepjson
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.e2e import (
    GROUP,
    OPERATOR_NS,
    PLURAL,
    RELEASE,
    REPO,
    VERSION,
    BridgeAzurite,
    E2ECluster,
    FlowImages,
    FlowNamespace,
    fresh_namespace,
    poll,
)
from tests.fixtures.registry import READER, Registry, running_registry

# The first test also waits for the module's fixtures: two image builds, a real node, the chart.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

CRONJOB = f"{RELEASE}-modelapp-bump"
REGISTRY_SECRET = "registry-credentials"
PARTIAL = 2  # `modelapp bump`: some rows failed, the others were done


def kubectl(cluster: E2ECluster, *args: str, timeout: float = 120) -> str:
    """kubectl as a user types it; fails the test with its output."""
    done = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def bridge_registry(e2e_cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An htpasswd registry on the bridge address: reachable from pods, and only with credentials."""
    with running_registry("basic", tmp_path_factory.mktemp("registry-bridge"), host=e2e_cluster.host_ip) as registry:
        assert requests.get(f"{registry.url}/v2/", timeout=5).status_code == 401  # anonymous is refused
        yield registry


@pytest.fixture(scope="module")
def bump_cronjob(e2e_cluster: E2ECluster, flow_images: FlowImages, bridge_registry: Registry,
                 helm_bin: Path) -> str:  # fmt: skip
    """The chart installed with the bump CronJob and registry credentials; returns the CronJob's name."""
    kubectl(e2e_cluster, "create", "namespace", OPERATOR_NS)
    kubectl(e2e_cluster, "create", "secret", "docker-registry", REGISTRY_SECRET, "--namespace", OPERATOR_NS,
            f"--docker-server={bridge_registry.host}", f"--docker-username={READER[0]}",
            f"--docker-password={READER[1]}")  # fmt: skip
    operator_repo, operator_tag = flow_images.operator.rsplit(":", 1)
    serving_repo, serving_tag = flow_images.serving.rsplit(":", 1)
    values: dict[str, Any] = {
        "image.repository": operator_repo, "image.tag": operator_tag,
        "servingImage.repository": serving_repo, "servingImage.tag": serving_tag,
        "operator.replicas": 0,
        "bump.enabled": True, "bump.suspend": True,
        "bump.registryCredentialsSecret": REGISTRY_SECRET,
        # The stand-in registry speaks plain HTTP, as a registry behind a cluster-internal address may.
        "bump.extraArgs": [f"--insecure-registry={bridge_registry.host}"],
    }  # fmt: skip
    sets = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    done = subprocess.run(
        [str(helm_bin), "upgrade", "--install", RELEASE, str(REPO / "charts" / "modelapp"), "--namespace", OPERATOR_NS,
         "--kubeconfig", str(e2e_cluster.kubeconfig), *sets, "--wait", "--timeout", "5m"],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"helm install failed:\n{done.stderr[-3000:]}"
    return CRONJOB


@dataclass(frozen=True)
class PodRun:
    name: str
    exit_code: int
    log: str

    def rows(self, namespace: str) -> dict[tuple[str, str], tuple[str, str, str, str]]:
        """The plan table's rows of one namespace: (app, field) -> (from, to, result, why)."""
        found: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        for line in self.log.splitlines():
            cells = line.split(maxsplit=5)
            if len(cells) >= 5 and cells[0].startswith(f"{namespace}/"):
                why = cells[5] if len(cells) > 5 else ""
                found[(cells[0].split("/", 1)[1], cells[1])] = (cells[2], cells[3], cells[4], why)
        return found


@dataclass(frozen=True)
class JobRun:
    name: str
    outcome: str  # Complete or Failed
    pods: list[PodRun]


def pod_log(cluster: E2ECluster, pod: client.V1Pod) -> str:
    """The bump container's log: through the API when it reaches kubelet, else kubelet's own file."""
    core = client.CoreV1Api(cluster.api())
    try:
        return str(core.read_namespaced_pod_log(pod.metadata.name, OPERATOR_NS, container="bump"))
    except client.ApiException:
        if cluster.state_dir is None:  # kind: the API server reaches kubelet, so this is a real failure
            raise
        folder = cluster.state_dir / "node" / "pod-logs" / f"{OPERATOR_NS}_{pod.metadata.name}_{pod.metadata.uid}"
        lines = (folder / "bump" / "0.log").read_text().splitlines()
        # CRI log lines: "<time> <stream> <F|P> <text>"; P is a partial line continued on the next.
        text = ""
        for line in lines:
            _, _, tag, rest = [*line.split(" ", 3), "", ""][:4]
            text += rest + ("\n" if tag == "F" else "")
        return text


def run_job(cluster: E2ECluster, cronjob: str, *, timeout: float = 420) -> JobRun:
    """`kubectl create job --from=cronjob/...`, then wait for it to finish; its pods' exit codes and logs."""
    name = f"bump-manual-{uuid.uuid4().hex[:6]}"
    kubectl(cluster, "create", "job", name, f"--from=cronjob/{cronjob}", "--namespace", OPERATOR_NS)
    batch = client.BatchV1Api(cluster.api())

    def finished() -> str:
        job = batch.read_namespaced_job(name, OPERATOR_NS)
        done = [c.type for c in job.status.conditions or [] if c.type in ("Complete", "Failed") and c.status == "True"]
        return done[0] if done else ""

    outcome = poll(finished, timeout=timeout, interval=1.0, what=f"Job {name} to complete or fail")
    core = client.CoreV1Api(cluster.api())
    pods = sorted(core.list_namespaced_pod(OPERATOR_NS, label_selector=f"job-name={name}").items,
                  key=lambda pod: pod.metadata.creation_timestamp)  # fmt: skip
    runs = []
    for pod in pods:
        (status,) = pod.status.container_statuses
        runs.append(PodRun(pod.metadata.name, status.state.terminated.exit_code, pod_log(cluster, pod)))
    return JobRun(name, outcome, runs)


def publish(ns: FlowNamespace, tmp_path: Path, *versions: str) -> dict[str, str]:
    """Model versions in the namespace's blob container (Azurite on the bridge); version -> digest."""
    store = open_store(ns.uri(), env={"AZURE_STORAGE_CONNECTION_STRING": ns.azurite.connection_string})
    digests = {}
    for version in versions:
        source = tmp_path / f"{ns.name}-{version}" / "model.onnx"
        source.parent.mkdir(parents=True)
        source.write_bytes(f"model {version} of {ns.name}".encode())
        digests[version] = publish_version(store, version=version, sources=[source], model_format="onnx",
                                           entrypoint=None)  # fmt: skip
    return digests


def create_app(ns: FlowNamespace, name: str, image: str, version: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": {"name": name},
        "spec": {
            "image": image,
            "model": {"uri": ns.uri(), "version": version, "credentialsSecret": "blob-credentials"},
            "updates": {"image": {"policy": "semver:^1.4"}, "model": {"policy": "numeric"}},
        },
    }  # fmt: skip
    client.CustomObjectsApi(ns.cluster.api()).create_namespaced_custom_object(GROUP, VERSION, ns.name, PLURAL, body)


def app(ns: FlowNamespace, name: str) -> dict[str, Any]:
    """The ModelApp as stored, read with kubectl and decoded as the operator decodes (any depth)."""
    text = kubectl(ns.cluster, "get", "modelapp", name, "-n", ns.name, "-o", "json", "--show-managed-fields")
    obj: dict[str, Any] = deepjson.loads(text)
    return obj


def plant_deep_managed_fields(ns: FlowNamespace, name: str, tmp_path: Path, levels: int = 1500) -> None:
    """What any editor of a ModelApp may do: PUT it back with a managedFields entry nested `levels` deep,
    which the API server keeps (`kubectl replace --raw`, the file as it is)."""
    obj = app(ns, name)
    obj["metadata"]["managedFields"] = [{"manager": "tenant", "operation": "Update", "apiVersion": f"{GROUP}/{VERSION}",
                                         "fieldsType": "FieldsV1", "fieldsV1": "DEEP"}]  # fmt: skip
    path = tmp_path / f"{ns.name}-{name}-deep.json"
    path.write_text(json.dumps(obj).replace('"DEEP"', '{"f:a": ' * levels + "{}" + "}" * levels))
    kubectl(ns.cluster, "replace", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{ns.name}/{PLURAL}/{name}",
            "-f", str(path))  # fmt: skip
    assert deepjson.CLIPPED in json.dumps(app(ns, name)["metadata"]["managedFields"]), "stored deeper than Python reads"


def bumped_events(ns: FlowNamespace, name: str) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(ns.cluster.api()).list_namespaced_event(
        ns.name, field_selector=f"involvedObject.kind=ModelApp,involvedObject.name={name}"
    )
    return [event for event in events.items if event.reason == "Bumped"]


def images(registry: Registry, *tags: str) -> str:
    """A fresh repository with tiny images under `tags`; returns its name (host/repository)."""
    repository = registry.fresh_repository()
    for tag in tags:
        registry.push(repository, tag)
    return f"{registry.host}/{repository}"


@pytest.fixture
def tenant(e2e_cluster: E2ECluster, bridge_azurite: BridgeAzurite, flow_images: FlowImages,
           bump_cronjob: str) -> Iterator[FlowNamespace]:  # fmt: skip
    with fresh_namespace(e2e_cluster, bridge_azurite, flow_images) as namespace:
        yield namespace


@pytest.fixture
def other_tenant(e2e_cluster: E2ECluster, bridge_azurite: BridgeAzurite, flow_images: FlowImages,
                 bump_cronjob: str) -> Iterator[FlowNamespace]:  # fmt: skip
    with fresh_namespace(e2e_cluster, bridge_azurite, flow_images) as namespace:
        yield namespace


def test_a_job_from_the_cronjob_bumps_through_private_registry_and_store(
    e2e_cluster: E2ECluster, bump_cronjob: str, bridge_registry: Registry, tenant: FlowNamespace, tmp_path: Path
) -> None:
    image = images(bridge_registry, "1.4.0", "1.4.3", "2.0.0")
    digests = publish(tenant, tmp_path, "1", "2")
    create_app(tenant, "iris", f"{image}:1.4.0", "1")

    job = run_job(e2e_cluster, bump_cronjob)
    logs = "\n".join(pod.log for pod in job.pods)
    assert job.outcome == "Complete", logs
    assert [pod.exit_code for pod in job.pods] == [0], logs
    (pod,) = job.pods
    rows = pod.rows(tenant.name)
    assert rows[("iris", "image")][:3] == (f"{image}:1.4.0", f"{image}:1.4.3", "patched"), pod.log
    assert rows[("iris", "model")][:3] == ("1", "2", "patched"), pod.log
    assert "0 failure(s)" in pod.log

    spec = app(tenant, "iris")["spec"]
    assert spec["image"] == f"{image}:1.4.3"  # 2.0.0 is outside semver:^1.4
    assert spec["model"] == {"uri": tenant.uri(), "version": "2", "sha256": digests["2"],
                             "credentialsSecret": "blob-credentials"}  # fmt: skip
    message = f"image {image}:1.4.0 -> {image}:1.4.3 (policy semver:^1.4); model 1 -> 2 (policy numeric)"
    assert [(e.type, e.message, e.reporting_component) for e in bumped_events(tenant, "iris")] == [
        ("Normal", message, "modelapp-bump")
    ]


def test_a_hostile_tenant_fails_only_its_own_rows(
    bump_cronjob: str, bridge_registry: Registry, tenant: FlowNamespace, other_tenant: FlowNamespace, tmp_path: Path
) -> None:
    image = images(bridge_registry, "1.4.0", "1.4.1")
    digests = publish(tenant, tmp_path, "4", "5")
    publish(other_tenant, tmp_path, "4", "5")
    create_app(tenant, "iris", f"{image}:1.4.0", "4")
    # The other tenant's Secret holds a key the store refuses (right shape, wrong bytes).
    wrong_key = base64.b64encode(b"not the account key" * 3).decode()
    broken = tenant.azurite.connection_string.replace(
        tenant.azurite.connection_string.split("AccountKey=")[1].split(";")[0], wrong_key
    )
    client.CoreV1Api(other_tenant.cluster.api()).patch_namespaced_secret(
        "blob-credentials", other_tenant.name, {"stringData": {"AZURE_STORAGE_CONNECTION_STRING": broken}}
    )
    create_app(other_tenant, "broken", f"{image}:1.4.0", "4")
    # ... and its ModelApp is nested deeper than Python decodes (the bump's list once failed on it, for all).
    plant_deep_managed_fields(other_tenant, "broken", tmp_path)

    job = run_job(tenant.cluster, bump_cronjob)
    logs = "\n".join(pod.log for pod in job.pods)
    # Exit code 2 (partial) on every attempt; the Job retries up to backoffLimit, then fails.
    assert job.outcome == "Failed", logs
    assert job.pods and {pod.exit_code for pod in job.pods} == {PARTIAL}, logs
    first = job.pods[0]
    good, bad = first.rows(tenant.name), first.rows(other_tenant.name)
    assert good[("iris", "image")][2] == "patched" and good[("iris", "model")][2] == "patched", first.log
    assert bad[("broken", "image")][2] == "patched", first.log  # its image row does not depend on its Secret
    _, _, result, why = bad[("broken", "model")]
    assert result == "failed", first.log
    assert other_tenant.uri() in why and "refused the credentials" in why, why
    assert wrong_key not in logs

    assert app(tenant, "iris")["spec"]["model"]["version"] == "5"
    assert app(tenant, "iris")["spec"]["model"]["sha256"] == digests["5"]
    broken_spec = app(other_tenant, "broken")["spec"]
    assert (broken_spec["image"], broken_spec["model"]["version"]) == (f"{image}:1.4.1", "4")
    # Retries change nothing more: one Bumped Event per app, and later attempts find iris unchanged.
    assert len(bumped_events(tenant, "iris")) == 1
    for retry in job.pods[1:]:
        assert {row[2] for row in retry.rows(tenant.name).values()} == {"unchanged"}, retry.log
