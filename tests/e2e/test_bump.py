"""`modelapp bump` end to end: the real command against the local API server, registry and store.

Design notes: the CRD is installed from `crds/` (the one source), ModelApps are created
directly (no operator needed: bump only edits specs), and the command runs as a subprocess
exactly as the CronJob runs it, so exit codes and output are the real ones. The API server is the
local control plane's (no node needed), or with `--e2e-cluster kind` the session's kind cluster's. Images live in
Debian's docker-registry (fixture), model versions in a `file://` store published with
`modelapp-serving`'s own code. Two bumps at once must patch every change exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.fixtures.net import free_port
from tests.fixtures.registry import Registry
from tests.integration.test_bump_plan import publish

pytestmark = pytest.mark.e2e
CRD = Path(__file__).resolve().parents[2] / "crds" / "modelapp.io_modelapps.yaml"


@dataclass(frozen=True)
class Target:
    """The API server the bump runs against; `shared`: the e2e tier's kind cluster, left as found."""

    kubeconfig: Path
    shared: bool = False


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest, e2e_backend: str) -> Target:
    """The local control plane (kwok: the bump needs no node), or on kind the session's kind cluster."""
    if e2e_backend == "kind":
        return Target(Path(request.getfixturevalue("shared_kind_cluster").kubeconfig), shared=True)
    return Target(Path(request.getfixturevalue("kube_cluster").kubeconfig))


@pytest.fixture(scope="module")
def kube(target: Target) -> Iterator[client.ApiClient]:
    """An API client with the CRD installed and Established. On the shared kind cluster a CRD this module
    created is deleted at its end: the chart (later modules) cannot adopt a CRD Helm did not make."""
    api = config.new_client_from_config(config_file=str(target.kubeconfig))
    extensions = client.ApiextensionsV1Api(api)
    crd = yaml.safe_load(CRD.read_text())
    name = crd["metadata"]["name"]
    created = True
    try:
        extensions.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        created = False
    deadline = time.monotonic() + 60
    while not any(c.type == "Established" and c.status == "True"
                  for c in extensions.read_custom_resource_definition(name).status.conditions or []):  # fmt: skip
        if time.monotonic() > deadline:
            raise TimeoutError("the ModelApp CRD was not Established within 60s")
        time.sleep(0.2)
    yield api
    if created and target.shared:
        extensions.delete_custom_resource_definition(name)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                extensions.read_custom_resource_definition(name)
            except client.ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.5)
        raise TimeoutError(f"the CRD {name} was not deleted within 120s")


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace on the target for one test; deleted (not waited for) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def create_app(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": name}, "spec": spec}
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "modelapp.io", "v1alpha1", namespace, "modelapps", body
    )


def spec_of(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "modelapp.io", "v1alpha1", namespace, "modelapps", name
    )
    result: dict[str, Any] = obj["spec"]
    return result


def bump(cluster: Target, *args: str) -> subprocess.Popen[str]:
    # The models of these apps are folders on this host: the platform trusts the bump to read them.
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(cluster.kubeconfig),
               "--trusted-store", "file:///", *args]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any] | str, str]:
    out, err = process.communicate(timeout=120)
    try:
        return process.returncode, json.loads(out), err
    except json.JSONDecodeError:
        return process.returncode, out, err


def spec(image: str, uri: str, version: str, image_policy: str = "semver:^1.4") -> dict[str, Any]:
    return {
        "image": image,
        "model": {"uri": uri, "version": version},
        "updates": {"image": {"policy": image_policy}, "model": {"policy": "numeric"}},
    }


def test_bump_patches_followers_and_leaves_pinned(
    kube: client.ApiClient, target: Target, namespace: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    repository = registry_anonymous.fresh_repository()
    digests = {tag: registry_anonymous.push(repository, tag) for tag in ("1.4.0", "1.4.3", "2.0.0")}
    models = tmp_path / "models"
    versions = publish(models, "1", "2")
    name = f"{registry_anonymous.host}/{repository}"
    create_app(kube, namespace, "follower", spec(f"{name}:1.4.0", f"file://{models}", "1"))
    create_app(kube, namespace, "pinned", spec(f"{name}:1.4.0", f"file://{models}", "1", image_policy="pinned"))

    code, plan, err = finish(bump(target, "--namespace", namespace, "--dry-run", "-o", "json"))
    assert code == 0, err
    assert isinstance(plan, dict)
    assert {row["result"] for row in plan["rows"]} == {"planned", "unchanged"}
    assert spec_of(kube, namespace, "follower")["image"] == f"{name}:1.4.0"  # dry run patched nothing

    code, result, err = finish(bump(target, "--namespace", namespace, "-o", "json"))
    assert code == 0, err
    assert isinstance(result, dict)
    # One tag listing and one digest for two apps, then the signature labels (issue 14.2): the manifest and
    # config of the proposed 1.4.3, and the digest, manifest and config of 1.4.0, which the pinned app keeps
    # beside its new model. Each read once per run, however many apps share it.
    assert result["requests"]["registry"] == 7
    follower = spec_of(kube, namespace, "follower")
    assert follower["image"] == f"{name}:1.4.3"
    assert follower["model"] == {"uri": f"file://{models}", "version": "2", "sha256": versions["2"]}
    pinned = spec_of(kube, namespace, "pinned")
    assert pinned["image"] == f"{name}:1.4.0"
    assert pinned["model"]["version"] == "2"  # the model still follows `numeric`
    assert digests["1.4.3"].startswith("sha256:")

    code, table, err = finish(bump(target, "--namespace", namespace))
    assert code == 0, err
    assert isinstance(table, str)
    assert "0 change(s), 0 failure(s)" in table


def test_two_bumps_at_once_patch_each_change_once(
    kube: client.ApiClient, target: Target, namespace: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.4.0", "1.9.9"):
        registry_anonymous.push(repository, tag)
    models = tmp_path / "models"
    publish(models, "1", "5")
    apps = [f"app-{index}" for index in range(10)]
    for app in apps:
        create_app(kube, namespace, app, spec(f"{registry_anonymous.host}/{repository}:1.4.0", f"file://{models}", "1"))
    first, second = bump(target, "-n", namespace, "-o", "json"), bump(target, "-n", namespace, "-o", "json")
    results = [finish(first), finish(second)]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    patched = [
        (row["name"], row["field"])
        for _, body, _ in results
        if isinstance(body, dict)
        for row in body["rows"]
        if row["result"] == "patched"
    ]
    assert sorted(patched) == sorted((app, field) for app in apps for field in ("image", "model"))
    for app in apps:
        assert spec_of(kube, namespace, app)["image"].endswith(":1.9.9")
        assert spec_of(kube, namespace, app)["model"]["version"] == "5"


def test_registry_down_is_a_partial_failure(
    kube: client.ApiClient, target: Target, namespace: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.4.0", "1.4.1"):
        registry_anonymous.push(repository, tag)
    models = tmp_path / "models"
    publish(models, "1")
    create_app(kube, namespace, "up", spec(f"{registry_anonymous.host}/{repository}:1.4.0", f"file://{models}", "1"))
    create_app(kube, namespace, "down", spec(f"127.0.0.1:{free_port()}/gone/app:1.4.0", f"file://{models}", "1"))
    code, result, err = finish(bump(target, "-n", namespace, "-o", "json", "--registry-timeout", "2"))
    assert code == 2, err
    assert isinstance(result, dict)
    failed = [row for row in result["rows"] if row["result"] == "failed"]
    assert [(row["name"], row["field"]) for row in failed] == [("down", "image")]
    assert spec_of(kube, namespace, "up")["image"].endswith(":1.4.1")


def test_no_api_server_is_fatal(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(kubeconfig), "-A"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "cannot list ModelApps" in done.stderr


def set_status(api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Write a status as the operator would, through the status subresource."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        "modelapp.io", "v1alpha1", namespace, "modelapps", name, {"status": status}
    )


def test_a_bump_leaves_an_event_and_annotations_on_the_app(
    kube: client.ApiClient, target: Target, namespace: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.4.0", "1.4.3"):
        registry_anonymous.push(repository, tag)
    models = tmp_path / "models"
    publish(models, "7", "8")
    image = f"{registry_anonymous.host}/{repository}"
    create_app(kube, namespace, "iris", spec(f"{image}:1.4.0", f"file://{models}", "7"))

    code, table, err = finish(bump(target, "--namespace", namespace))
    assert code == 0, err
    assert isinstance(table, str)
    assert table.strip().splitlines()[-1] == "planned 0, patched 2, failed 0, skipped 0, held 0"
    message = f"image {image}:1.4.0 -> {image}:1.4.3 (policy semver:^1.4); model 7 -> 8 (policy numeric)"
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "modelapp.io", "v1alpha1", namespace, "modelapps", "iris"
    )
    annotations = obj["metadata"]["annotations"]
    assert annotations["modelapp.io/bump-reason"] == message
    assert annotations["modelapp.io/bumped-at"].endswith("Z")
    assert obj["spec"]["image"] == f"{image}:1.4.3"
    events = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ModelApp,involvedObject.name=iris"
    )
    bumped = [event for event in events.items if event.reason == "Bumped"]
    assert [(e.type, e.message, e.reporting_component) for e in bumped] == [("Normal", message, "modelapp-bump")]
    assert bumped[0].involved_object.uid == obj["metadata"]["uid"]

    code, table, err = finish(bump(target, "--namespace", namespace))  # nothing new: no second Event
    assert code == 0, err
    events = client.CoreV1Api(kube).list_namespaced_event(namespace, field_selector="involvedObject.name=iris")
    assert sum(1 for event in events.items if event.reason == "Bumped") == 1


def test_a_rollout_in_progress_is_skipped_and_left_for_the_next_run(
    kube: client.ApiClient, target: Target, namespace: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.4.0", "1.4.3"):
        registry_anonymous.push(repository, tag)
    models = tmp_path / "models"
    publish(models, "1", "2")
    image, uri = f"{registry_anonymous.host}/{repository}:1.4.0", f"file://{models}"
    effective = {"image": image, "uri": uri, "model": "1", "source": "Spec"}
    done = {"type": "Progressing", "status": "False", "reason": "Complete"}
    rolling = {"type": "Progressing", "status": "True", "reason": "RollingOut", "message": "1/2 ready"}
    statuses = {
        "rolling": {"observedGeneration": 1, "conditions": [rolling], "effective": effective},
        "unobserved": {"observedGeneration": 0, "conditions": [done], "effective": effective},
        "settled": {"observedGeneration": 1, "conditions": [done], "effective": effective},
    }
    for name, status in statuses.items():
        create_app(kube, namespace, name, spec(image, uri, "1"))
        set_status(kube, namespace, name, status)

    code, result, err = finish(bump(target, "-n", namespace, "-o", "json"))
    assert code == 0, err
    assert isinstance(result, dict)
    rows = {(row["name"], row["field"]): row for row in result["rows"]}
    for name in ("rolling", "unobserved"):
        unchanged = spec_of(kube, namespace, name)  # nothing stacked on the unfinished rollout
        assert (unchanged["image"], unchanged["model"]) == (image, {"uri": uri, "version": "1"})
        for field in ("image", "model"):
            assert rows[(name, field)]["result"] == "skipped"
            assert rows[(name, field)]["reason"].startswith("rollout in progress")
    assert "Progressing=True, RollingOut" in rows[("rolling", "image")]["reason"]
    assert "observedGeneration 0 < generation 1" in rows[("unobserved", "image")]["reason"]
    assert spec_of(kube, namespace, "settled")["model"]["version"] == "2"
    assert result["counts"] == {"planned": 0, "patched": 2, "failed": 0, "skipped": 4, "unchanged": 0, "held": 0}

    set_status(kube, namespace, "rolling", statuses["settled"])  # the rollout settled: the next run moves it
    code, result, err = finish(bump(target, "-n", namespace, "-o", "json"))
    assert code == 0, err
    assert spec_of(kube, namespace, "rolling")["image"].endswith(":1.4.3")
