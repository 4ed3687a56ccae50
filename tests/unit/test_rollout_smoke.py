"""The smoke test's pure parts: the golden request per protocol, and the verdict on an answer.

Design notes: answers are the exact bytes a serving pod returns (JSON), fed to `judge`; `run` is driven
through an in-memory transport only to check its retry and error paths (the HTTP path against a real
`modelapp-serving serve` is in tests/integration/test_rollback_smoke.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from modelapp_operator import smoke
from modelapp_operator.spec import SmokeTest

TEST = SmokeTest.model_validate({
    "inputs": [{"name": "input", "shape": [2, 2], "data": [1, 2, 3, 4]}],
    "expected": [{"name": "label", "data": [0, 1]}],
    "tolerance": 0.01,
})  # fmt: skip


def _v2(outputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"model_name": "iris", "outputs": outputs}).encode()


@pytest.mark.parametrize(
    ("protocol", "path", "body"),
    [
        ("v2", "/v2/models/iris/infer",
         {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}]}),
        ("v1", "/v1/models/iris:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}),
        ("score", "/score", {"input": [[1.0, 2.0], [3.0, 4.0]]}),
    ],
)  # fmt: skip
def test_request_per_protocol(protocol: str, path: str, body: dict[str, Any]) -> None:
    test = TEST.model_copy(update={"protocol": protocol})
    assert smoke.request_for(test, "iris") == (path, body)


@pytest.mark.parametrize(
    ("answer", "passed", "message"),
    [
        (_v2([{"name": "label", "data": [0, 1]}]), True, "every expected output matched"),
        (_v2([{"name": "label", "data": [0.005, 0.995]}]), True, "every expected output matched"),
        (_v2([{"name": "label", "data": [0, 2]}]), False, "label: element 1 is 2, expected 1.0 (tolerance 0.01)"),
        (_v2([{"name": "label", "data": [0]}]), False, "label: 1 elements, expected 2"),
        (_v2([{"name": "probabilities", "data": [0.5]}]), False, "label is missing from the answer"),
        (_v2([{"name": "label", "data": ["a", "b"]}]), False, "label: element 0 is 'a', expected 0.0 (tolerance 0.01)"),
        (b"{}", False, "unreadable answer: the answer has no outputs"),
        (b"<html>", False, "unreadable answer: Expecting value: line 1 column 1 (char 0)"),
        (b'{"outputs": [{"name": "label", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", False,
         "unreadable answer: maximum recursion depth exceeded while decoding a JSON array from a unicode string"),
        (_v2([{"name": "label", "data": "DEEP"}]).replace(b'"DEEP"', b"[" * 600 + b"1" + b"]" * 600), False,
         "unreadable answer: maximum recursion depth exceeded"),
    ],
)
def test_judge(answer: bytes, passed: bool, message: str) -> None:
    assert smoke.judge(TEST, 200, answer) == smoke.SmokeVerdict(passed, message)


def test_http_errors_fail_with_the_start_of_the_body() -> None:
    verdict = smoke.judge(TEST, 503, b'{"error": "model not ready"}')
    assert verdict == smoke.SmokeVerdict(False, 'HTTP 503: {"error": "model not ready"}')


def test_unnamed_expectation_takes_the_first_output_and_score_reads_output() -> None:
    unnamed = [TEST.expected[0].model_copy(update={"name": None})]
    test = TEST.model_copy(update={"protocol": "score", "expected": unnamed})
    assert smoke.judge(test, 200, b'{"output": [0, 1]}').passed
    assert not smoke.judge(test, 200, b'{"predictions": [0, 1]}').passed


def test_run_retries_transport_errors_then_fails() -> None:
    calls: list[str] = []

    def flaky(path: str, body: Mapping[str, Any], timeout: float) -> tuple[int, bytes]:
        calls.append(path)
        if len(calls) < 3:
            raise smoke.TransportError("connection refused")
        return 200, _v2([{"name": "label", "data": [0, 1]}])

    assert smoke.run(TEST, "iris", flaky).passed and len(calls) == 3

    def down(path: str, body: Mapping[str, Any], timeout: float) -> tuple[int, bytes]:
        raise smoke.TransportError("connection refused")

    assert smoke.run(TEST, "iris", down) == smoke.SmokeVerdict(False, "no answer after 3 attempts: connection refused")


def test_schema_rejects_bad_tests() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SmokeTest.model_validate({"protocol": "grpc", "inputs": [], "expected": []})
    with pytest.raises(ValidationError):
        SmokeTest.model_validate({"inputs": [{"shape": [1], "data": ["x"]}], "expected": []})
