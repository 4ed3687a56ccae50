"""The smoke test against a real model server, and its verdict driving the rollout decision.

Design notes: kwok pods run no server, so the golden request cannot reach a pod on the local cluster.
The HTTP half runs here against a real `modelapp-serving serve` on 127.0.0.1 (the serving fixture), with
the real ONNX iris model, through `smoke.http_transport` — the same `smoke.run` the operator drives
through `smoke.pod_transport` (the API server's pod proxy, exercised later with real pods). The verdict
is then fed to `rollout.decide` exactly as the handler does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import builders, rollout, smoke
from modelapp_operator.revisions import Pair, Revision
from modelapp_operator.spec import SmokeTest, parse_spec
from tests.fixtures.models import Iris, ModelDir, ServeProcess

pytestmark = pytest.mark.integration


def _test(iris: Iris, *, protocol: str = "v2", shift: float = 0.0) -> SmokeTest:
    rows = iris.features[:3]
    labels = [float(x) + shift for x in iris.estimator.predict(rows)]
    return SmokeTest.model_validate({
        "protocol": protocol,
        "inputs": [{"name": "input", "shape": [3, 4], "data": [float(x) for x in rows.flatten()]}],
        "expected": [{"name": "label", "data": labels}] if protocol == "v2" else [{"data": labels}],
    })  # fmt: skip


@pytest.fixture
def server(serve_process: Callable[..., ServeProcess], onnx_model_dir: ModelDir) -> ServeProcess:
    started = serve_process(onnx_model_dir, "iris")
    started.wait_ready()
    return started


@pytest.mark.parametrize("protocol", ["v2", "v1", "score"])
def test_golden_request_passes_against_the_real_model(server: ServeProcess, iris: Iris, protocol: str) -> None:
    verdict = smoke.run(_test(iris, protocol=protocol), "iris", smoke.http_transport(server.url))
    assert verdict == rollout.SmokeVerdict(True, "every expected output matched")


def test_wrong_answers_and_wrong_names_fail_with_the_reason(server: ServeProcess, iris: Iris) -> None:
    wrong = smoke.run(_test(iris, shift=1.0), "iris", smoke.http_transport(server.url))
    assert not wrong.passed and wrong.message.startswith("label: element 0 is ")
    unknown = smoke.run(_test(iris), "other-model", smoke.http_transport(server.url))
    assert not unknown.passed and unknown.message.startswith("HTTP 404")


def test_no_server_is_a_failure_after_retries(iris: Iris) -> None:
    from tests.fixtures.net import free_port

    verdict = smoke.run(_test(iris), "iris", smoke.http_transport(f"http://127.0.0.1:{free_port()}"))
    assert not verdict.passed and verdict.message.startswith("no answer after 3 attempts: ConnectionError")


def test_a_failed_verdict_rolls_the_pair_back(server: ServeProcess, iris: Iris) -> None:
    golden = _test(iris, shift=1.0).model_dump(by_alias=True, exclude_none=True)

    def spec(image: str) -> Any:
        return parse_spec({"image": image, "model": {"uri": "file:///m", "version": "1"},
                           "rollout": {"smokeTest": golden}})  # fmt: skip

    good, new = spec("example.com/app:1"), spec("example.com/app:2")
    history = [Revision.new(1, Pair.from_spec(good), at="t", outcome="Available", reason="", message="")]
    history[0].available_at = "t"
    deployment = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": builders.template_annotations(new)}}},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    def seen(revisions: list[Revision]) -> rollout.Observation:
        return rollout.Observation(spec=new, revisions=revisions, deployment=deployment, annotations={}, now="t")

    started = rollout.decide(seen(history))  # the spec change: the new pair is recorded
    first = rollout.decide(seen(started.revisions))  # its pods are ready: the smoke test is due
    assert first.smoke_due and new.rollout.smoke_test is not None
    verdict = smoke.run(new.rollout.smoke_test, "iris", smoke.http_transport(server.url))
    decided = rollout.decide(seen(first.revisions).with_smoke(verdict))
    assert decided.source == "LastGood" and decided.effective.image == "example.com/app:1" and decided.rolled_back
    assert decided.revisions[-1].reason == "SmokeTestFailed" and decided.revisions[-1].smoke_test == "Failed"
