"""A version's own acceptance examples as its smoke test, against Azurite and a real model server.

Design notes: kwok pods run no server, so, as in test_rollback_smoke.py, the HTTP half runs against a real
`modelapp-serving serve` on 127.0.0.1 through `smoke.http_transport`, the transport the operator uses for a
pod's IP. The version is published into Azurite with its card and fetched back with the real `fetch` (what
the init container does), so the server serves exactly what a pod would: `/v2/models/<name>/card` and the
provenance in `/version`. The verdict is then fed to `rollout.decide` with a spec that names no smoke test,
as the engine does when the bump recorded that the version has examples.

The failing version is a user class (format custom: publish cannot load it, so it cannot refuse examples the
class fails, unlike ONNX and scikit-learn models, which publish runs them against first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from modelapp_operator import builders, rollout, smoke
from modelapp_operator.revisions import Pair, Revision
from modelapp_operator.spec import ModelAppSpec, parse_spec
from modelapp_serving.card import CARD_NAME, Examples, Provenance
from modelapp_serving.fetch import fetch_version
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.models import ModelDir, ServeProcess

pytestmark = pytest.mark.integration

DOUBLING = "tests.fixtures.models:DoublingModel"


def examples(expected: list[float]) -> Examples:
    return Examples.model_validate({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.5]}],
                                    "expected": [{"name": "scaled", "data": expected}]})  # fmt: skip


def publish_and_fetch(container: AzureContainer, tmp_path: Path, version: str, factor: str,
                      expected: list[float]) -> ModelDir:  # fmt: skip
    """A custom-class version (a factor file) with examples, published to Azurite and fetched as a pod would."""
    source = tmp_path / f"src-{version}" / "factor.txt"
    source.parent.mkdir(parents=True)
    source.write_text(factor)
    store = open_store(container.uri("doubling"), env=container.env)
    digest = publish_version(store, version=version, sources=[source], model_format="custom", entrypoint=None,
                             examples=examples(expected),
                             provenance=Provenance(training_run=f"run-{version}", source_commit="9c0ffee"))  # fmt: skip
    dest = tmp_path / f"fetched-{version}"
    fetch_version(open_store(container.uri("doubling"), env=container.env), version=version, dest=dest, pinned=digest)
    return ModelDir(dest, digest, version)


def card_sha256(model: ModelDir) -> str:
    return hashlib.sha256((model.path / CARD_NAME).read_bytes()).hexdigest()


def test_a_version_passing_its_own_examples_passes_and_says_where_it_came_from(
    azure_container: AzureContainer, serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    model = publish_and_fetch(azure_container, tmp_path, "1", "2", [2.0, 5.0])
    server = serve_process(model, "doubling", ["--model-class", DOUBLING])
    server.wait_ready()
    version = requests.get(f"{server.url}/version", timeout=10).json()
    assert version["provenance"] == {"trainingRun": "run-1", "sourceCommit": "9c0ffee"}
    assert version["sha256"] == model.digest
    card = requests.get(f"{server.url}/v2/models/doubling/card", timeout=10)
    assert card.status_code == 200 and card.content == (model.path / CARD_NAME).read_bytes()
    verdict = smoke.check_one(smoke.VersionExamples(card_sha256(model)), "doubling", smoke.http_transport(server.url))
    assert verdict == rollout.SmokeVerdict(True, "every expected output matched")


def test_a_card_that_is_not_the_versions_fails(
    azure_container: AzureContainer, serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    model = publish_and_fetch(azure_container, tmp_path, "1", "2", [2.0, 5.0])
    server = serve_process(model, "doubling", ["--model-class", DOUBLING])
    server.wait_ready()
    verdict = smoke.check_one(smoke.VersionExamples("0" * 64), "doubling", smoke.http_transport(server.url))
    assert not verdict.passed
    assert verdict.message.startswith("the version's acceptance examples: the card the pod serves has sha256 ")


def test_a_version_failing_its_own_examples_is_rolled_back_without_a_smoke_test_in_the_spec(
    azure_container: AzureContainer, serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    model = publish_and_fetch(azure_container, tmp_path, "2", "3", [2.0, 5.0])  # triples, its examples say doubles
    server = serve_process(model, "doubling", ["--model-class", DOUBLING])
    server.wait_ready()

    def spec(version: str) -> ModelAppSpec:
        return parse_spec(
            {
                "image": "example.com/app:1",
                "model": {"uri": azure_container.uri("doubling"), "version": version, "sha256": model.digest},
            }
        )

    good, new = spec("1"), spec("2")
    assert new.rollout.smoke_test is None
    history = [Revision.new(1, Pair.from_spec(good), at="t", outcome="Available", reason="", message="")]
    history[0].available_at = "t"
    deployment = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": builders.template_annotations(new)}}},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }

    def seen(revisions: list[Revision]) -> rollout.Observation:
        return rollout.Observation(spec=new, revisions=revisions, deployment=deployment, annotations={}, now="t",
                                   version_examples=True)  # fmt: skip

    started = rollout.decide(seen(history))
    first = rollout.decide(seen(started.revisions))
    assert first.smoke_due  # the version's examples are its smoke test
    verdict = smoke.check_one(smoke.VersionExamples(card_sha256(model)), "doubling", smoke.http_transport(server.url))
    assert verdict == rollout.SmokeVerdict(False, "version examples: scaled: element 0 is 3.0, expected 2.0 "
                                                  "(tolerance 0.0001)")  # fmt: skip
    decided = rollout.decide(seen(first.revisions).with_smoke(verdict))
    assert decided.source == "LastGood" and decided.effective.version == "1" and decided.rolled_back
    failed = decided.revisions[-1]
    assert (failed.model, failed.outcome, failed.reason, failed.smoke_test) == ("2", "Failed", "SmokeTestFailed",
                                                                                 "Failed")  # fmt: skip
    assert json.loads((model.path / CARD_NAME).read_bytes())["examples"]["expected"][0]["data"] == [2.0, 5.0]
