"""A mismatched pair never starts a pod; a fitting one rolls out with its provenance (issue 14.2, 14.4).

Design notes: against the real API server (the dev cluster, kwok for pods) with the operator as a subprocess.
The ModelApp is changed as `modelapp bump` changes it: the spec's pair and the annotation `modelapp.io/pair-facts`
in one patch, the facts built with the same models the bump uses (`signatures.PairFacts`). "Never starts" is
checked on what the cluster keeps: the Deployment's generation and pod template, every ReplicaSet (one per
template ever applied) and every pod, none of which ever names the refused image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.bump import unsettled
from modelapp_operator.signatures import ANN_PAIR_FACTS, ImageFacts, ModelFacts, PairFacts
from modelapp_serving.card import Provenance, Signature
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready, _replicasets

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
URI = "file:///opt/models/iris"


def signature(features: int) -> Signature:
    return Signature.model_validate({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, features]}],
                                     "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]})  # fmt: skip


def bumped(image: str, version: str, *, accepts: int, takes: int,
           provenance: Provenance | None = None) -> dict[str, Any]:  # fmt: skip
    """The merge patch the bump writes: the pair, and what it read about it."""
    sha = version * 64
    facts = PairFacts(image=ImageFacts(image=image, digest="sha256:" + "e" * 64, accepts=(signature(accepts),)),
                      model=ModelFacts(uri=URI, version=version, sha256=sha, card="c" * 64, signature=signature(takes),
                                       provenance=provenance))  # fmt: skip
    return {"metadata": {"annotations": {ANN_PAIR_FACTS: facts.to_annotation()}},
            "spec": {"image": image, "model": {"version": version, "sha256": sha}}}  # fmt: skip


def _condition(name: str, namespace: str) -> dict[str, Any] | None:
    status = (kube.get("ModelApp", name, namespace) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def _images_ever_applied(namespace: str) -> set[str]:
    """Every app image of every pod template the Deployment ever had, and of every pod."""
    templates = [rs["spec"]["template"] for rs in _replicasets(namespace)]
    pods = kube.list_objects("Pod", namespace)
    return {c["image"] for t in [*templates, *pods] for c in t["spec"]["containers"]}


def test_a_mismatched_pair_never_starts_and_the_running_revision_keeps_serving(run_operator: RunOperator,
                                                                               namespace: str) -> None:  # fmt: skip
    op = run_operator(namespace)
    kube.apply(_app("iris", namespace, image="r.example/iris-app:1.0.0"))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    before = kube.get("Deployment", "iris", namespace) or {}
    kube.patch("ModelApp", "iris", namespace, bumped("r.example/iris-app:1.1.0", "2", accepts=5, takes=4))
    refused = wait_for("SignatureMismatch", lambda: (c := _condition("iris", namespace)) and
                       c["reason"] == "SignatureMismatch" and c, timeout=60)  # fmt: skip
    assert refused["status"] == "False"
    assert refused["message"].startswith(
        "image r.example/iris-app:1.1.0 does not accept model version 2: input 'input' shape: the model takes "
        "[-1, 4], the image expects [-1, 5]")  # fmt: skip
    after = kube.get("Deployment", "iris", namespace) or {}
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["status"].get("availableReplicas") == 1, "the running revision keeps serving"
    assert "r.example/iris-app:1.1.0" not in _images_ever_applied(namespace)
    assert unsettled(kube.get("ModelApp", "iris", namespace) or {}) == "", "the next bump may propose a fitting pair"
    # The next bump proposes a pair that fits: it rolls out, and its revision says where the model came from.
    where = Provenance(training_run="mlflow:run-3", source_commit="3f2a9c1", meta={"team": "fraud"})
    kube.patch("ModelApp", "iris", namespace,
               bumped("r.example/iris-app:1.1.0", "3", accepts=5, takes=5, provenance=where))  # fmt: skip
    app = wait_for("the fitting pair Ready", lambda: (a := _ready("iris", namespace)) and
                   a["status"]["revisions"][-1]["model"] == "3" and a, timeout=90)  # fmt: skip
    newest = app["status"]["revisions"][-1]
    assert newest["image"] == "r.example/iris-app:1.1.0" and newest["outcome"] == "Available"
    assert newest["provenance"] == {"trainingRun": "mlflow:run-3", "sourceCommit": "3f2a9c1", "meta": {"team": "fraud"}}
    assert "Traceback" not in op.text()


def test_a_new_modelapp_with_a_mismatched_pair_gets_no_deployment(run_operator: RunOperator, namespace: str) -> None:
    run_operator(namespace)
    body = _app("fresh", namespace)
    patch = bumped("r.example/iris-app:2.0.0", "7", accepts=4, takes=5)
    body["metadata"]["annotations"] = patch["metadata"]["annotations"]
    body["spec"].update(image=patch["spec"]["image"], model={"uri": URI, **patch["spec"]["model"]})
    kube.apply(body)
    wait_for("SignatureMismatch", lambda: (c := _condition("fresh", namespace)) and
             c["reason"] == "SignatureMismatch", timeout=60)  # fmt: skip
    assert kube.get("Deployment", "fresh", namespace) is None
    assert kube.list_objects("Pod", namespace) == []
