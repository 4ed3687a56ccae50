"""The whole recipe, as a platform team installs it and as the app team and data scientist use it.

Design notes: one cluster with real nodes for the module (either backend, tests/fixtures/e2e.py), with
the chart installed by `helm upgrade --install` (operator running, bump CronJob suspended so that the
only runs are the test's), the images built from the Dockerfiles, Azurite on the bridge behind each
namespace's `blob-credentials` Secret, and an htpasswd registry (Debian's docker-registry) that the
cluster reaches on the bridge (tests/fixtures/bridge_registry.py says why it also has a loopback door for
Docker's engine). The people in the recipe act through their own tools only:

- the app team runs hack/app-ci.sh on a copy of examples/app (test -> build FROM the serving image ->
  push with credentials -> optionally bake the newest verified model); v2 of the app differs in its
  post-processing: its answer carries an `app_version` output;
- the data scientist runs `modelapp-serving publish` on the example's own exported model;
- the platform's nightly run is `kubectl create job --from=cronjob/...` of the chart's CronJob;
- app users POST to `status.url` (a LoadBalancer address: 127.0.10.x, or 10.247.0.x on kind) and read
  the answer.

What is asserted is what those people see: the answer (labels, `model_version`, `app_version`), the
pods running exactly the digest CI printed, the Job's plan table and the ModelApp's spec, and zero
failed requests from a bounded load loop running across the bump's rollout. Figures (the whole
journey, CI runs, bump -> Ready, failures) are printed with the `[journey]` prefix and reported in
benchmarks/README.md. Traffic goes only to 127.0.0.1, the LoadBalancer pool and the bridge pods reach.

The last test is the attacker's view of the same registry: another namespace naming a private image
that a pod of its owner has already put on the node, without any pull Secret. It found a gap, since
closed: the builders set `imagePullPolicy: Always` on every container that runs the app image, so the
kubelet asks the registry, with the pod's own pull Secrets, at every start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from tests.e2e.test_cronjob import kubectl, run_job
from tests.fixtures.bridge_registry import BridgeRegistry, running_bridge_registry
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
from tests.fixtures.images import Image
from tests.fixtures.registry import PUSHER, READER

# The first test also waits for the module's fixtures: two image builds, a real node, the chart.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

SCRIPT = REPO / "hack" / "app-ci.sh"
EXAMPLE = REPO / "examples" / "app"
CRONJOB = f"{RELEASE}-modelapp-bump"
PLATFORM_SECRET = "registry-credentials"  # the bump's, in the operator's namespace
PULL_SECRET = "registry-pull"  # the tenant's, named by spec.pod.imagePullSecrets
# One flower of each species, in centimetres (the app's pre-processing refuses anything else).
FLOWERS = {"setosa": [5.1, 3.5, 1.4, 0.2], "versicolor": [7.0, 3.2, 4.7, 1.4], "virginica": [6.3, 3.3, 6.0, 2.5]}
V2 = "1.1.0"


# --- module setup: the registry, the chart ---------------------------------------------------------


@pytest.fixture(scope="module")
def registry(e2e_cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeRegistry]:
    with running_bridge_registry(tmp_path_factory.mktemp("journey-registry"), bridge_ip=e2e_cluster.host_ip,
                                 plain_http=e2e_cluster.plain_http_registry,
                                 users=(READER, PUSHER)) as running:  # fmt: skip
        for host in (running.push_host, running.pull_host):
            assert requests.get(f"http://{host}/v2/", timeout=5).status_code == 401  # anonymous is refused
        yield running


@pytest.fixture(scope="module")
def platform(e2e_cluster: E2ECluster, flow_images: FlowImages, registry: BridgeRegistry, helm_bin: Path) -> str:
    """The chart as a platform team installs it: the operator running, the bump CronJob with registry
    credentials (suspended: the test starts its runs); returns the CronJob's name."""
    kubectl(e2e_cluster, "create", "namespace", OPERATOR_NS)
    kubectl(e2e_cluster, "create", "secret", "docker-registry", PLATFORM_SECRET, "--namespace", OPERATOR_NS,
            f"--docker-server={registry.pull_host}", f"--docker-username={READER[0]}",
            f"--docker-password={READER[1]}")  # fmt: skip
    operator_repo, operator_tag = flow_images.operator.rsplit(":", 1)
    serving_repo, serving_tag = flow_images.serving.rsplit(":", 1)
    values: dict[str, Any] = {
        "image.repository": operator_repo, "image.tag": operator_tag,
        "servingImage.repository": serving_repo, "servingImage.tag": serving_tag,
        "bump.enabled": True, "bump.suspend": True,
        "bump.registryCredentialsSecret": PLATFORM_SECRET,
        # The registry's cluster door speaks plain HTTP, as one behind a cluster-internal address may.
        "bump.extraArgs": [f"--insecure-registry={registry.pull_host}"],
    }  # fmt: skip
    sets = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    done = subprocess.run(
        [str(helm_bin), "upgrade", "--install", RELEASE, str(REPO / "charts" / "modelapp"), "--namespace", OPERATOR_NS,
         "--kubeconfig", str(e2e_cluster.kubeconfig), *sets, "--wait", "--timeout", "5m"],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"helm install failed:\n{done.stderr[-3000:]}"
    return CRONJOB


@pytest.fixture(scope="module", autouse=True)
def _module_time() -> Iterator[None]:
    """The time this module adds to a run: its fixtures (node, images, chart) and its tests."""
    started = time.monotonic()
    yield
    print(f"\n[journey] the module took {time.monotonic() - started:.0f}s in all (fixtures included)", flush=True)


@pytest.fixture
def local_tags() -> Iterator[list[str]]:
    """Image references CI left in the shared Docker engine; removed afterwards (disk is shared)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, timeout=120, check=False)


@pytest.fixture
def tenant(e2e_cluster: E2ECluster, bridge_azurite: BridgeAzurite, flow_images: FlowImages,
           registry: BridgeRegistry, platform: str) -> Iterator[FlowNamespace]:  # fmt: skip
    """A fresh namespace: `blob-credentials` (from fresh_namespace) and the pull Secret for the registry."""
    with fresh_namespace(e2e_cluster, bridge_azurite, flow_images) as namespace:
        client.CoreV1Api(e2e_cluster.api()).create_namespaced_secret(namespace.name, client.V1Secret(
            metadata=client.V1ObjectMeta(name=PULL_SECRET), type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": registry.docker_config(READER)}))  # fmt: skip
        yield namespace


# --- the people's tools --------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    outputs: dict[str, str]
    seconds: float

    def image(self, registry: BridgeRegistry) -> tuple[str, str]:
        """(the image as the cluster names it, by tag; the digest CI printed)."""
        ref, digest = self.outputs["image"].split("@")
        return registry.for_cluster(ref), digest


def app_ci(app: Path, registry: BridgeRegistry, serving: Image, *, tag: str, repository: str,
           local_tags: list[str], **env: str) -> Release:  # fmt: skip
    """hack/app-ci.sh as the app team's CI runs it; the key=value lines it printed."""
    environment = {**os.environ, "APP_DIR": str(app), "SERVING_IMAGE": serving.name,
                   "IMAGE": f"{registry.push_host}/{repository}", "TAG": tag,
                   "REGISTRY_USERNAME": PUSHER[0], "REGISTRY_PASSWORD": PUSHER[1], **env}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=1200,
                          check=False)  # fmt: skip
    local_tags.append(f"{registry.push_host}/{repository}:{tag}")
    assert done.returncode == 0, f"app-ci.sh ({tag}) exited {done.returncode}:\n{done.stderr[-4000:]}"
    assert "\nOK" in done.stderr, done.stderr[-2000:]  # the app's own tests ran, in the image
    outputs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    local_tags += [outputs[key].split("@")[0] for key in ("image", "baked_image") if key in outputs]
    return Release(outputs, time.monotonic() - started)


def app_repo(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def make_v2(app: Path) -> None:
    """The app team's next release: its post-processing adds the app's version to every answer."""
    model = app / "src" / "iris_app" / "model.py"
    source = model.read_text()
    probability = '        {"name": "probability", "datatype": "FP32", "shape": [-1]},\n'
    predict = "        return label(softmax(rows @ self.coef.T + self.intercept), self.classes)\n"
    assert probability in source and predict in source, "examples/app/src/iris_app/model.py changed: update make_v2"
    source = source.replace(probability, probability + '        {"name": "app_version", "datatype": "BYTES", '
                            '"shape": [-1]},\n')  # fmt: skip
    source = source.replace(predict, "        answer = label(softmax(rows @ self.coef.T + self.intercept), "
                            f"self.classes)\n        answer['app_version'] = np.asarray(['{V2}'] * len(rows), "
                            "dtype=object)\n        return answer\n")  # fmt: skip
    model.write_text(source)
    # ... and its tests say so (CI runs them in the image before anything is pushed).
    tests = app / "tests" / "test_model.py"
    checked = 'self.assertEqual(sorted(out), ["label", "probability"])'
    assert checked in tests.read_text(), "examples/app/tests/test_model.py changed: update make_v2"
    tests.write_text(tests.read_text().replace(checked, checked.replace('["label"', '["app_version", "label"')))


def export_model(tmp_path: Path) -> Path:
    """The data scientist's model: the example's tools/export_model.py; returns model.json."""
    out = tmp_path / "model"
    subprocess.run([sys.executable, str(EXAMPLE / "tools" / "export_model.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)  # fmt: skip
    return out / "model.json"


def publish(ns: FlowNamespace, model: Path, version: str) -> str:
    """`modelapp-serving publish --format custom`; returns the version digest (its last line)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "modelapp-serving"), "publish", "--uri", ns.uri("iris"), "--version",
         version, "--format", "custom", str(model)],
        env=ns.azurite.env(), cwd=model.parent, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# --- what the platform applies and app users see ---------------------------------------------------


def modelapp(name: str, image: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": {"name": name},
        "spec": {"image": image, "modelClass": "iris_app.model:IrisModel", "model": model,
                 "service": {"type": "LoadBalancer", "port": 80}, "pod": {"imagePullSecrets": [{"name": PULL_SECRET}]},
                 **spec},
    }  # fmt: skip


def get(ns: FlowNamespace, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(ns.cluster.api()).get_namespaced_custom_object(
        GROUP, VERSION, ns.name, PLURAL, name
    )
    return obj


def ready(ns: FlowNamespace, name: str, image: str, version: str) -> str | None:
    """status.url once Ready is True for this (image, model version) pair."""
    status = get(ns, name).get("status", {})
    is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    serves = status.get("image", {}).get("ref") == image and status.get("model", {}).get("version") == version
    return str(status["url"]) if is_ready and serves and status.get("url") else None


def ask(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """One inference as an app user sends it; {labels, model_version, app_version (or None)}."""
    body = {"inputs": [{"name": "measurements", "datatype": "FP32", "shape": [len(FLOWERS), 4],
                        "data": list(FLOWERS.values())}]}  # fmt: skip
    reply = requests.post(f"{url}/infer", json=body, timeout=timeout)
    reply.raise_for_status()
    answer = reply.json()
    outputs = {item["name"]: item["data"] for item in answer["outputs"]}
    return {"labels": outputs["label"], "model_version": answer["model_version"],
            "app_version": (outputs.get("app_version") or [None])[0]}  # fmt: skip


def answers(url: str) -> bool:
    try:
        ask(url, timeout=2)
        return True
    except (requests.RequestException, KeyError, ValueError):
        return False


@dataclass
class Load:
    """Sequential inferences until stopped; every failure counted, every (app, model) pair seen kept."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seen: list[tuple[str | None, str]] = field(default_factory=list)  # (app_version, model_version), in order
    streak: int = 0  # answers in a row with the last pair seen

    def run(self, stop: threading.Event, deadline: float) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answer = ask(self.url)
                assert answer["labels"] == list(FLOWERS), answer
                pair = (answer["app_version"], answer["model_version"])
                if not self.seen or self.seen[-1] != pair:
                    self.seen.append(pair)
                    self.streak = 0
                self.streak += 1
                self.ok += 1
            except (requests.RequestException, KeyError, ValueError, AssertionError) as err:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(err).__name__}: {err}"[:200])
            time.sleep(0.02)


@contextmanager
def steady_load(url: str, *, limit_s: float = 420) -> Iterator[Load]:
    load = Load(url)
    stop = threading.Event()
    thread = threading.Thread(target=load.run, args=(stop, time.monotonic() + limit_s), daemon=True)
    thread.start()
    try:
        yield load
    finally:
        stop.set()
        thread.join(timeout=30)


def pod_digests(ns: FlowNamespace, name: str, *, terminating: bool = False) -> set[str]:
    """The image digests the app containers of `name`'s pods were started from (kubelet's word); pods being
    deleted count only with `terminating` (they keep answering through their preStop pause)."""
    pods = client.CoreV1Api(ns.cluster.api()).list_namespaced_pod(
        ns.name, label_selector=f"app.kubernetes.io/instance={name}").items  # fmt: skip
    return {status.image_id.rsplit("@", 1)[-1] for pod in pods if terminating or pod.metadata.deletion_timestamp is None
            for status in pod.status.container_statuses or [] if status.name == "app"}  # fmt: skip


# --- the journey ---------------------------------------------------------------------------------


def test_ci_push_then_a_nightly_job_rolls_new_code_and_model_with_no_failed_request(  # noqa: PLR0917 -- one fixture per real component
    platform: str,
    registry: BridgeRegistry,
    serving_image: Image,
    tenant: FlowNamespace,
    tmp_path: Path,
    local_tags: list[str],
) -> None:
    started = time.monotonic()
    repository = f"team/iris-{tenant.name}"
    # The app team releases v1; the data scientist publishes model 1.
    v1 = app_ci(
        app_repo(tmp_path, "app-v1"), registry, serving_image, tag="1.0.0", repository=repository, local_tags=local_tags
    )
    image_v1, digest_v1 = v1.image(registry)
    model = export_model(tmp_path)
    digest_m1 = publish(tenant, model, "1")
    # The platform team applies the ModelApp: private image, model behind the namespace's Secret.
    applied = time.monotonic()
    client.CustomObjectsApi(tenant.cluster.api()).create_namespaced_custom_object(GROUP, VERSION, tenant.name, PLURAL,
        modelapp("iris", image_v1, {"uri": tenant.uri("iris"), "version": "1", "sha256": digest_m1,
                                    "credentialsSecret": "blob-credentials"},
                 replicas=2, updates={"image": {"policy": "semver:^1.0"}, "model": {"policy": "numeric"}}))  # fmt: skip
    url = poll(lambda: ready(tenant, "iris", image_v1, "1"), timeout=300, what="iris Ready on app 1.0.0, model 1")
    poll(lambda: answers(url), timeout=30, what=f"a first answer from {url}")
    first_answer = time.monotonic() - applied
    assert ask(url) == {"labels": list(FLOWERS), "model_version": "1", "app_version": None}
    assert pod_digests(tenant, "iris") == {digest_v1}  # the pods run exactly what CI tested and pushed

    # Model 2 from the data scientist, app 1.1.0 from the app team: nothing changes until the nightly run.
    digest_m2 = publish(tenant, model, "2")
    app_v2 = app_repo(tmp_path, "app-v2")
    make_v2(app_v2)
    v2 = app_ci(app_v2, registry, serving_image, tag=V2, repository=repository, local_tags=local_tags)
    image_v2, digest_v2 = v2.image(registry)
    assert ask(url)["model_version"] == "1"

    with steady_load(url) as load:
        poll(lambda: load.ok >= 5, timeout=30, what="the load loop's first answers")
        bump_started = time.monotonic()
        job = run_job(tenant.cluster, platform)
        logs = "\n".join(pod.log for pod in job.pods)
        assert job.outcome == "Complete" and [pod.exit_code for pod in job.pods] == [0], logs
        rows = job.pods[0].rows(tenant.name)
        assert rows[("iris", "image")][:3] == (image_v1, image_v2, "patched"), logs
        assert rows[("iris", "model")][:3] == ("1", "2", "patched"), logs
        poll(lambda: ready(tenant, "iris", image_v2, "2"), timeout=300, what=f"iris Ready on app {V2}, model 2")
        rolled = time.monotonic() - bump_started
        # The old pods answer through their preStop pause: done when they are gone and 10 answers in a row are new.
        poll(lambda: pod_digests(tenant, "iris", terminating=True) == {digest_v2}, timeout=90,
             what="the old pods gone")  # fmt: skip
        poll(lambda: load.seen[-1] == (V2, "2") and load.streak >= 10, timeout=30, what="answers after the rollout")
    journey = time.monotonic() - started
    print(
        f"[journey] CI v1 {v1.seconds:.0f}s, apply -> first answer {first_answer:.0f}s, "
        f"CI v2 {v2.seconds:.0f}s; Job -> new pair Ready {rolled:.0f}s; under load {load.ok} answered, "
        f"{len(load.failures)} failed, pairs {sorted(set(load.seen), key=str)} "
        f"({len(load.seen) - 1} switches while both served); whole journey {journey:.0f}s",
        flush=True,
    )
    assert load.failures == [], load.failures[:5]
    # Old pair, then the new one (each new pod serves both changes at once: one rollout, not two).
    assert load.seen[0] == (None, "1") and load.seen[-1] == (V2, "2"), load.seen
    assert set(load.seen) <= {(None, "1"), (V2, "2")}, load.seen
    spec = get(tenant, "iris")["spec"]
    assert (spec["image"], spec["model"]["version"], spec["model"]["sha256"]) == (image_v2, "2", digest_m2)
    assert ask(url) == {"labels": list(FLOWERS), "model_version": "2", "app_version": V2}


def test_the_baked_image_from_the_same_ci_script_serves_on_real_pods(
    registry: BridgeRegistry, serving_image: Image, tenant: FlowNamespace, tmp_path: Path, local_tags: list[str]
) -> None:
    """MODEL_URI set: CI bakes the newest verified version into IMAGE:TAG-model.V; the pods fetch it from
    the image itself (file://), with no store credentials in the cluster."""
    model = export_model(tmp_path)
    publish(tenant, model, "6")
    digest = publish(tenant, model, "7")
    release = app_ci(
        app_repo(tmp_path, "app"),
        registry,
        serving_image,
        tag="1.0.0",
        repository=f"team/baked-{tenant.name}",
        local_tags=local_tags,
        MODEL_URI=tenant.uri("iris"),
        AZURE_STORAGE_CONNECTION_STRING=tenant.azurite.connection_string,
    )
    out = release.outputs
    assert (out["model_uri"], out["model_version"], out["model_sha256"]) == ("file:///opt/models/iris", "7", digest)
    baked_ref, baked_digest = out["baked_image"].split("@")
    baked = registry.for_cluster(baked_ref)
    assert baked.endswith(":1.0.0-model.7")
    started = time.monotonic()
    client.CustomObjectsApi(tenant.cluster.api()).create_namespaced_custom_object(GROUP, VERSION, tenant.name, PLURAL,
        modelapp("baked", baked, {"uri": out["model_uri"], "version": "7", "sha256": digest}, replicas=1,
                 updates={"image": {"policy": "pinned"}, "model": {"policy": "pinned"}}))  # fmt: skip
    url = poll(lambda: ready(tenant, "baked", baked, "7"), timeout=300, what="baked Ready on model 7")
    poll(lambda: answers(url), timeout=30, what=f"a first answer from {url}")
    print(
        f"[journey] baked: CI with bake {release.seconds:.0f}s, apply -> first answer "
        f"{time.monotonic() - started:.0f}s",
        flush=True,
    )
    assert ask(url) == {"labels": list(FLOWERS), "model_version": "7", "app_version": None}
    assert pod_digests(tenant, "baked") == {baked_digest}
    (pod,) = [
        p
        for p in client.CoreV1Api(tenant.cluster.api())
        .list_namespaced_pod(tenant.name, label_selector="app.kubernetes.io/instance=baked")
        .items
        if p.metadata.deletion_timestamp is None
    ]
    (fetch,) = pod.spec.init_containers
    # The init container runs the baked image itself and no Secret reaches any container.
    assert fetch.image == baked and not fetch.env_from
    assert not any(
        env.value_from and env.value_from.secret_key_ref for c in [*pod.spec.containers, fetch] for env in c.env or []
    )


def test_another_tenant_cannot_run_a_private_image_already_on_the_node(  # noqa: PLR0917 -- one fixture per real component
    registry: BridgeRegistry,
    serving_image: Image,
    tenant: FlowNamespace,
    bridge_azurite: BridgeAzurite,
    flow_images: FlowImages,
    tmp_path: Path,
    local_tags: list[str],
) -> None:
    """The attacker's move: name another tenant's private image, baked model and all, with no pull Secret,
    once a pod of the owner has put it on the node. The pull must be refused, not served from the cache."""
    model = export_model(tmp_path)
    digest = publish(tenant, model, "3")
    release = app_ci(app_repo(tmp_path, "app"), registry, serving_image, tag="1.0.0",
                     repository=f"team/private-{tenant.name}", local_tags=local_tags, MODEL_URI=tenant.uri("iris"),
                     AZURE_STORAGE_CONNECTION_STRING=tenant.azurite.connection_string)  # fmt: skip
    baked = registry.for_cluster(release.outputs["baked_image"].split("@")[0])
    model_ref = {"uri": release.outputs["model_uri"], "version": "3", "sha256": digest}
    custom = client.CustomObjectsApi(tenant.cluster.api())
    custom.create_namespaced_custom_object(GROUP, VERSION, tenant.name, PLURAL,
                                           modelapp("owner", baked, model_ref, replicas=1))  # fmt: skip
    poll(lambda: ready(tenant, "owner", baked, "3"), timeout=300, what="the owner's app Ready (image on the node)")

    with fresh_namespace(tenant.cluster, bridge_azurite, flow_images) as intruder:
        body = modelapp("copycat", baked, model_ref, replicas=1)
        del body["spec"]["pod"]  # no imagePullSecrets: the intruder has no credentials for the registry
        custom.create_namespaced_custom_object(GROUP, VERSION, intruder.name, PLURAL, body)
        core = client.CoreV1Api(tenant.cluster.api())

        def pull_outcome() -> str:
            for pod in core.list_namespaced_pod(
                intruder.name, label_selector="app.kubernetes.io/instance=copycat"
            ).items:
                for status in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
                    if status.state.waiting and status.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                        return "refused"
                    if status.state.running or status.state.terminated:
                        return f"ran without credentials ({status.name} {status.image_id})"
            return ""

        outcome = poll(pull_outcome, timeout=120, what="the intruder's pod to pull or be refused")
        print(f"[journey] another tenant naming the private image without a pull Secret: {outcome}", flush=True)
        assert outcome == "refused"

        # ... on the very node that holds the image (with several nodes, another node would refuse for want of it).
        def nodes(namespace: str, name: str) -> set[str]:
            pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
            return {pod.spec.node_name for pod in pods if pod.spec.node_name}

        assert nodes(intruder.name, "copycat") and nodes(intruder.name, "copycat") <= nodes(tenant.name, "owner")
        assert ready(intruder, "copycat", baked, "3") is None
