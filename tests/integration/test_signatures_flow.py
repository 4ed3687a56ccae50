"""The whole signature flow: publish, push with labels, `modelapp bump`, the operator (issue 14.2, 14.4).

Design notes: every component is real: versions published into Azurite (read by the bump with the tenant's
own Secret), app images in Debian's docker-registry with the label `io.modelapp.signatures`, the dev cluster
(kwok pods) with the operator as a subprocess, and `modelapp bump` as the CronJob runs it (the command line,
JSON report). The app team pushes an image that needs a model the data scientists have not published yet:
the bump holds it back, naming the field, and nothing rolls out; once a fitting version is published, one run
moves both halves together, the operator rolls the pair out and its revision carries the version's provenance.
Acceptance examples are left out here: kwok pods answer no HTTP (test_version_examples.py runs them).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.signatures import ANN_PAIR_FACTS, LABEL, parse_facts
from modelapp_serving.card import Provenance
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.fixtures.registry import Registry
from tests.integration.test_operator import _ready, _replicasets
from tests.integration.test_signatures import accepts, onnx_model

pytestmark = pytest.mark.integration


def _bump(kubeconfig: Path, namespace: str) -> tuple[int, dict[str, Any]]:
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(kubeconfig),
               "--namespace", namespace, "-o", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


@dataclass(frozen=True)
class World:
    kubeconfig: Path
    container: AzureContainer
    registry: Registry


@pytest.fixture
def world(kube_cluster: Any, azure_container: AzureContainer, registry_anonymous: Registry) -> World:
    return World(kube_cluster.kubeconfig, azure_container, registry_anonymous)


def test_the_bump_holds_an_image_no_version_fits_then_moves_the_fitting_pair(
    run_operator: Callable[..., OperatorProcess], namespace: str, world: World, tmp_path: Path
) -> None:
    azure_container, registry_anonymous = world.container, world.registry
    run_operator(namespace)
    store = open_store(azure_container.uri("iris"), env=azure_container.env)
    v1 = publish_version(store, version="1", sources=[onnx_model(tmp_path / "m1", 4).path], model_format="onnx",
                         entrypoint=None)  # fmt: skip
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0", labels={LABEL: accepts(4)})
    registry_anonymous.push(repository, "1.1.0", labels={LABEL: accepts(5)})
    name = f"{registry_anonymous.host}/{repository}"
    secret = {k: base64.b64encode(v.encode()).decode() for k, v in azure_container.env.items()}
    kube.create("Secret", namespace, {"apiVersion": "v1", "kind": "Secret", "data": secret,
                                      "metadata": {"name": "store", "namespace": namespace}})  # fmt: skip
    kube.apply({
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": "iris", "namespace": namespace},
        "spec": {"image": f"{name}:1.0.0", "service": {"type": "ClusterIP"},
                 "model": {"uri": azure_container.uri("iris"), "version": "1", "sha256": v1,
                           "credentialsSecret": "store"},
                 "updates": {"image": {"policy": "semver:^1"}, "model": {"policy": "numeric"}}},
    })  # fmt: skip
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)

    code, report = _bump(world.kubeconfig, namespace)
    rows = {row["field"]: row for row in report["rows"]}
    assert code == 0 and rows["image"]["result"] == "held" and rows["model"]["result"] == "unchanged"
    assert rows["image"]["reason"] == (f"held: signatures do not fit: image {name}:1.1.0 with model version 1: input "
                                       "'input' shape: the model takes [-1, 4], the image expects [-1, 5]")  # fmt: skip
    assert (kube.get("ModelApp", "iris", namespace) or {})["spec"]["image"] == f"{name}:1.0.0"

    where = Provenance(training_run="mlflow:run-2", source_commit="5eed")
    v2 = publish_version(store, version="2", sources=[onnx_model(tmp_path / "m2", 5).path], model_format="onnx",
                         entrypoint=None, provenance=where)  # fmt: skip
    code, report = _bump(world.kubeconfig, namespace)
    assert code == 0 and [(row["field"], row["result"]) for row in report["rows"]] == [
        ("image", "patched"), ("model", "patched")]  # fmt: skip
    app = kube.get("ModelApp", "iris", namespace) or {}
    assert (app["spec"]["image"], app["spec"]["model"]["version"], app["spec"]["model"]["sha256"]) == (
        f"{name}:1.1.0", "2", v2)  # fmt: skip
    facts = parse_facts(app["metadata"]["annotations"][ANN_PAIR_FACTS])
    assert facts.model is not None and facts.model.sha256 == v2
    ready = wait_for("the new pair Ready", lambda: (a := _ready("iris", namespace)) and
                     a["status"]["revisions"][-1]["model"] == "2" and a, timeout=120)  # fmt: skip
    newest = ready["status"]["revisions"][-1]
    assert newest["image"] == f"{name}:1.1.0" and newest["outcome"] == "Available"
    assert newest["provenance"] == {"trainingRun": "mlflow:run-2", "sourceCommit": "5eed"}
    images = {c["image"] for rs in _replicasets(namespace) for c in rs["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{name}:1.0.0", f"{name}:1.1.0"}  # 1.1.0 only ever with version 2
