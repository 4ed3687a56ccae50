"""The engine rolls back a version that fails its own examples, with no smoke test in the ModelApp (issue 14.1).

Design notes: the real engine (`Engine.converge`, in this process) against the real API server of the dev
cluster, whose kwok pods run no server; so the engine's transport is pointed at a real `modelapp-serving serve`
on 127.0.0.1 that loaded the version from Azurite, as a pod's init container would have fetched it. Everything
else is the operator's own path: the bump's annotation says the version has examples (and its card's sha256),
the rollout makes the smoke test due, `smoke.check_pods` lists the kwok pods of the new pair, reads the card
from "the pod", runs its examples, and the verdict rolls the pair back and quarantines it. kopf's Events are
not posted (no kopf loop runs here); passes are driven by hand, each reading fresh state from the API server.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest

from modelapp_operator import cache, kube, smoke
from modelapp_operator.engine import Engine
from modelapp_operator.settings import OperatorConfig
from modelapp_operator.signatures import ANN_PAIR_FACTS, ModelFacts, PairFacts
from modelapp_serving.card import CARD_NAME
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.models import ServeProcess
from tests.integration.test_version_examples import DOUBLING, publish_and_fetch

pytestmark = pytest.mark.integration

LOG = logging.getLogger("test-engine")


def _pass(engine: Engine, name: str, namespace: str) -> Mapping[str, Any]:
    """One pass from fresh state (the engine's store otherwise learns of kwok's progress from watches)."""
    # What the watches would have told it: the engine's and its children's (children.py) view, both fresh.
    engine.store = engine.children.store = cache.Store()
    engine.names = engine.children.names = cache.Names()
    with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
        engine.converge(name=name, namespace=namespace, logger=LOG, everything=True)
    return kube.get("ModelApp", name, namespace) or {}


def _until(what: str, engine: Engine, app: tuple[str, str], check: Callable[[Mapping[str, Any]], bool], *,
           timeout: float = 120) -> Mapping[str, Any]:  # fmt: skip
    name, namespace = app
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = _pass(engine, name, namespace)
        if check(seen):
            return seen
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout}s: {seen.get('status')}")


@pytest.fixture
def cluster_namespace(modelapp_crds: Path, namespace: str) -> str:
    """A fresh namespace of the dev cluster, with the CRDs installed and `kube` pointed at it."""
    return namespace


def test_the_engine_rolls_back_a_version_failing_its_own_examples(
    cluster_namespace: str, azure_container: AzureContainer, serve_process: Callable[..., ServeProcess],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    namespace = cluster_namespace
    good = publish_and_fetch(azure_container, tmp_path, "1", "2", [2.0, 5.0])
    bad = publish_and_fetch(azure_container, tmp_path, "2", "3", [2.0, 5.0])  # triples; its examples say doubles
    server = serve_process(bad, "doubling", ["--model-class", DOUBLING])
    server.wait_ready()
    monkeypatch.setattr(kopf, "event", lambda *args, **kwargs: None)
    engine = Engine(OperatorConfig(serving_image="localhost:5000/modelapp-serving:test"))
    engine.smokes.transport = lambda namespace, pod, token=None: smoke.http_transport(server.url)  # type: ignore[assignment]
    uri = azure_container.uri("doubling")
    kube.apply({"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp",
                "metadata": {"name": "doubling", "namespace": namespace},
                "spec": {"image": "r.example/doubling:1", "service": {"type": "ClusterIP"},
                         "model": {"uri": uri, "version": "1", "sha256": good.digest}}})  # fmt: skip
    _until("version 1 Available", engine, ("doubling", namespace),
           lambda a: any(r.get("outcome") == "Available" for r in (a.get("status") or {}).get("revisions") or []))

    card = hashlib.sha256((bad.path / CARD_NAME).read_bytes()).hexdigest()
    facts = PairFacts(model=ModelFacts(uri=uri, version="2", sha256=bad.digest, card=card, examples=True))
    kube.patch("ModelApp", "doubling", namespace, {
        "metadata": {"annotations": {ANN_PAIR_FACTS: facts.to_annotation()}},
        "spec": {"model": {"version": "2", "sha256": bad.digest}}})  # fmt: skip
    app = _until("version 2 rolled back", engine, ("doubling", namespace),
                 lambda a: (a.get("status") or {}).get("effective", {}).get("model") == "1" and
                 any(r.get("outcome") == "Failed" for r in a["status"].get("revisions") or []))  # fmt: skip
    failed = next(r for r in app["status"]["revisions"] if r["model"] == "2")
    assert (failed["outcome"], failed["reason"], failed["smokeTest"]) == ("Failed", "SmokeTestFailed", "Failed")
    assert "version examples: scaled: element 0 is 3.0, expected 2.0" in failed["message"]
    assert "smokeTest" not in app["spec"].get("rollout", {}), "the ModelApp names no smoke test of its own"
    rolled = next(c for c in app["status"]["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "SmokeTestFailed"
    template = (kube.get("Deployment", "doubling", namespace) or {})["spec"]["template"]
    assert template["metadata"]["annotations"]["modelapp.io/model-version"] == "1"
